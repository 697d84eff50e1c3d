"""The ``fusedsnn`` command line: ``fusedsnn bench`` (the main job) and ``fusedsnn train``.

A wrong invocation (a bad value, a missing file, a device that is not there) ends with one line
on stderr, ``fusedsnn <command>: error: <what was wrong>``, and exit status 2; never a traceback.
Argument types below check values where argparse reads them; checks that need more than one
argument or the machine (files on disk, CUDA) raise :class:`UsageError`, which :func:`main`
turns into the same one-line error.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional

import torch


class UsageError(Exception):
    """A wrong invocation found after parsing (files, devices, combinations of arguments)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse's default prints the whole usage
    first, which for ``fusedsnn train`` is a dozen lines above the message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows every default that is a value; flags and defaults that depend on the
    machine (None, explained in the help text itself) are left out."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.nargs == 0 or action.default is None or action.default is argparse.SUPPRESS \
                or "%(default)" in help_text:  # nargs == 0: a flag (store_true/false), no value
            return help_text
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def device_name(text: str) -> str:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N`` naming a device this machine has."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}") from None
    if device.type == "cpu":
        return text
    if device.type != "cuda":
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} asked for, but CUDA is not available on this machine "
                                         "(this PyTorch build or driver sees no GPU); use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise argparse.ArgumentTypeError(f"{text!r} asked for, but this machine has {count} CUDA device(s)")
    return text


def writable_file(text: str) -> str:
    """argparse type: a file path whose folder exists (checked now, not after a long run)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; expected a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    return text


def build_parser() -> Parser:
    parser = Parser(prog="fusedsnn", description="Fused spiking neurons: benchmarks and training.",
                    formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{bench,train}")
    from . import train
    from .bench import study

    parser.commands = {}  # name -> its parser, so main() can report errors as that command's
    parser.commands["bench"] = sub.add_parser(
        "bench", help="reproduce the study's experiments, fused vs snnTorch", formatter_class=HelpFormatter,
        description=study.__doc__.split("\n\n")[0].replace("``", ""))
    study.add_arguments(parser.commands["bench"])
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
    from . import train
    from .bench import study

    command = study if args.command == "bench" else train
    try:
        return command.run(args)
    except UsageError as err:
        print(f"fusedsnn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Through the package, not this __main__ copy: train and study raise fusedsnn.cli.UsageError,
    # which a second class of the same name defined here would not catch.
    from fusedsnn.cli import main as package_main

    sys.exit(package_main())
