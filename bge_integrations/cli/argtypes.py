"""Argument types shared by the subcommands: values argparse converts or refuses (exit 2)."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "positive_float"]


def positive_int(value: str) -> int:
    """``value`` as an int greater than zero, else an ``ArgumentTypeError``."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        msg = f"expected a positive integer, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def positive_float(value: str) -> float:
    """``value`` as a float greater than zero, else an ``ArgumentTypeError``."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        msg = f"expected a positive number, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number
