"""AlexeyAB's multi-scale training (``train_detector`` in its detector.c).

Every 10 iterations, when the last detection layer has ``random`` set, the network trains at
``round(s * size / resize_step + 1) * resize_step`` for a scale ``s = rand_scale(coef)``, where
``coef`` is ``random`` itself unless it is 1 (then 1.4); a size drawn with ``s < 1`` that came
out larger than the cfg's falls back to the cfg's size. The largest size (``s = coef``) is used
at the start, to see that it fits, and for the iterations past ``max_batches - 100``. Darknet's
"start" is the first 10 iterations of every run, resumed or not; here it is those of iteration
0 only, so that a resumed run repeats an uninterrupted one.
"""
from __future__ import annotations

import math

import numpy as np

from .augment import rand_scale

F32 = np.float32
DEFAULT_COEF = 1.4
EVERY = 10  # iterations between size draws
END = 100  # the last iterations, trained at the largest size


def coefficient(random: float) -> F32:
    """``rand_coef``: 1.4 for ``random=1``, else the value itself."""
    return F32(DEFAULT_COEF) if random in (0, 1) else F32(random)


def _roundl(x) -> int:
    """``roundl``: halfway cases away from zero."""
    return int(math.floor(abs(float(x)) + 0.5)) * (1 if x >= 0 else -1)


def _dim(scale, size: int, step: F32) -> int:
    return int(_roundl(F32(F32(scale) * F32(size)) / step + F32(1)) * float(step))


def largest(random: float, width: int, height: int, resize_step: float) -> tuple[int, int]:
    """``max_dim_w``, ``max_dim_h``: the size at the start and at the end."""
    coef, step = coefficient(random), F32(resize_step)
    return max(_dim(coef, width, step), int(step)), max(_dim(coef, height, step), int(step))


def size_at(random: float, width: int, height: int, resize_step: float, iteration: int,
            max_batches: int, rng) -> tuple[int, int]:
    """The (width, height) AlexeyAB trains iteration ``iteration`` at; ``rng`` draws the scale
    of that iteration's block of 10."""
    start = iteration - iteration % EVERY
    if start == 0 or start > max_batches - END:
        return largest(random, width, height, resize_step)
    coef, step = coefficient(random), F32(resize_step)
    scale = rand_scale(rng, coef)
    w, h = _dim(scale, width, step), _dim(scale, height, step)
    if scale < 1 and (w > width or h > height):
        w, h = width, height
    return max(w, int(step)), max(h, int(step))
