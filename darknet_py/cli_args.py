"""argparse ``type=`` checks for the CLI's numbers and devices: a bad value is refused by the
parser (exit status 2 and a usage line), before anything is loaded or run."""
from __future__ import annotations

import argparse
import math

SEED_RANGE = (0, 2**64 - 1)  # what both numpy's SeedSequence and torch.manual_seed take
DEVICE_TYPES = ("cpu", "cuda", "mps")


def _number(text: str, convert, kind: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count: 1 or more."""
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A count that may be 0 (0 usually means "never" or "none")."""
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def probability(text: str) -> float:
    """A threshold or probability in [0, 1]."""
    value = _number(text, float, "a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def seed(text: str) -> int:
    value = _number(text, int, "an integer")
    if not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**64 - 1], got {value}")
    return value


def device(text: str) -> str:
    """A torch device name of a known type: ``cpu``, ``cuda``, ``cuda:N``, ``mps``. Whether this
    machine has it is checked when the command runs (cli_darknet.device_of says why not)."""
    import torch
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (cpu, cuda, cuda:N)") from None
    if parsed.type not in DEVICE_TYPES:
        raise argparse.ArgumentTypeError(f"unsupported device {text!r} (cpu, cuda, cuda:N)")
    return text
