"""parser.c of both forks: how many bytes load_weights_upto reads for ``seen``."""
from __future__ import annotations


def c_seen_bytes(major, minor, fork):
    """load_weights_upto: pjreddie reads a size_t seen when (major*10 + minor) >= 2 && major < 1000
    && minor < 1000, else an int; AlexeyAB when (major*10 + minor) >= 2, else a uint32_t."""
    if fork == "alexeyab":
        return 8 if major * 10 + minor >= 2 else 4
    return 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4
