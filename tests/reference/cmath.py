"""C's integer arithmetic, which Python's // and % do not follow for negative operands."""
from __future__ import annotations


def c_div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def c_rem(a: int, b: int) -> int:
    """C's ``%`` (sign of the dividend)."""
    return a - b * c_div(a, b)
