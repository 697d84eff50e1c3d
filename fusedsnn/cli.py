"""The ``fusedsnn`` command line: ``fusedsnn bench`` (the main job) and ``fusedsnn train``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusedsnn", description="Fused spiking neurons: benchmarks and training.")
    sub = parser.add_subparsers(dest="command", required=True)
    from .bench import study

    study.add_arguments(sub.add_parser("bench", help="reproduce the study's experiments, fused vs snnTorch"))
    try:
        from . import train
    except ImportError:  # pragma: no cover - train arrives with the models
        train = None
    if train is not None:
        train.add_arguments(sub.add_parser("train", help="train DSNN or CSNN (no download by default)"))
    args = parser.parse_args(argv)
    if args.command == "bench":
        return study.run(args)
    return train.run(args)


if __name__ == "__main__":
    sys.exit(main())
