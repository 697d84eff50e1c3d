"""Argument types and the usage error of the ``fusedsnn`` command line.

Argument types check values where argparse reads them; checks that need more than one argument
or the machine (files on disk, CUDA) raise :class:`UsageError`, which ``fusedsnn.cli.main``
turns into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

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


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


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
