"""The ``fusedsnn`` command line: ``fusedsnn bench`` (the main job) and ``fusedsnn train``.

A wrong invocation (a bad value, a missing file, a device that is not there) ends with one line
on stderr, ``fusedsnn <command>: error: <what was wrong>``, and exit status 2; never a traceback.
Argument types below check values where argparse reads them; checks that need more than one
argument or the machine (files on disk, CUDA) raise :class:`UsageError`, which :func:`main`
turns into the same one-line error.
"""

from __future__ import annotations

import sys
from typing import Optional

from . import bench, train
from .args import HelpFormatter, Parser, UsageError

def build_parser() -> Parser:
    parser = Parser(prog="fusedsnn", description="Fused spiking neurons: benchmarks and training.",
                    formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{bench,train}")
    parser.commands = {}  # name -> its parser, so main() can report errors as that command's
    parser.commands["bench"] = sub.add_parser(
        "bench", help="reproduce the study's experiments, fused vs snnTorch", formatter_class=HelpFormatter,
        description=bench.__doc__.split("\n\n")[0].replace("``", ""))
    bench.add_arguments(parser.commands["bench"])
    parser.commands["train"] = sub.add_parser(
        "train", help="train DSNN or CSNN (no download by default)", formatter_class=HelpFormatter,
        description=train.__doc__.split("\n\n")[0].replace("``", ""))
    train.add_arguments(parser.commands["train"])
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    command = bench if args.command == "bench" else train
    try:
        return command.run(args)
    except UsageError as err:
        print(f"fusedsnn {args.command}: error: {err}", file=sys.stderr)
        return 2
