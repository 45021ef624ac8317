"""Activations: pjreddie's activations.h, and AlexeyAB's activations.h/.c/_kernels.cu for the rest.

Each formula is written as in C. Sub-expressions C evaluates in float (``x - n``, ``x + 4``,
AlexeyAB's ``x * x / 2 + x``) use float32; ``exp``/``tanh``/``log`` and double constants are
evaluated in double, i.e. the exact value that Darknet's own float/double evaluation rounds."""
from __future__ import annotations

import math

import numpy as np

from .cmath import c_rem

F32 = np.float32


def logistic(v):
    return 1.0 / (1.0 + math.exp(-v))


def c_exp(v: float) -> float:
    """C's ``exp`` (double; +inf on overflow instead of Python's OverflowError)."""
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _logistic(x):           # 1./(1. + exp(-x))
    return 1.0 / (1.0 + c_exp(-x))


def _f(v) -> float:
    """A value rounded to float, as C stores it."""
    return float(F32(v))


def _stair(x):
    n = math.floor(x)       # int n = floor(x);
    if c_rem(n, 2) == 0:
        return math.floor(x / 2.0)
    return _f(F32(x) - F32(n)) + math.floor(x / 2.0)    # (x - n) is float - int: float


def _hardtan(x):
    if x < -1:
        return -1.0
    if x > 1:
        return 1.0
    return x


def _plse(x):
    if x < -4:
        return .01 * _f(F32(x) + F32(4))
    if x > 4:
        return .01 * _f(F32(x) - F32(4)) + 1
    return .125 * x + .5


def _lhtan(x):
    if x < 0:
        return .001 * x
    if x > 1:
        return .001 * _f(F32(x) - F32(1)) + 1
    return x


def _leaky(x):               # (x>0) ? x : .1*x
    return x if x > 0 else .1 * x


def _alexey_tanh(x):         # tanh_activate: 2 / (1 + expf(-2 * x)) - 1
    return 2.0 / (1.0 + c_exp(-2.0 * x)) - 1.0


def _softplus(x, threshold):
    if x > threshold:
        return x             # too large
    if x < -threshold:
        return c_exp(x)       # too small
    return math.log(c_exp(x) + 1)


def _hard_mish(x):           # hard_mish_yashas, all float
    if x > 0:
        return x
    if x > -2:
        x = F32(x)
        return _f(x * x / F32(2) + x)
    return 0.0


DARKNET_ACTIVATIONS = {
    # pjreddie/darknet src/activations.h
    "linear": lambda x: x,
    "logistic": _logistic,
    "loggy": lambda x: 2.0 / (1.0 + c_exp(-x)) - 1,
    "relu": lambda x: x * (x > 0),
    "elu": lambda x: (x >= 0) * x + (x < 0) * (c_exp(x) - 1),
    "selu": lambda x: (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (c_exp(x) - 1),
    "relie": lambda x: x if x > 0 else .01 * x,
    "ramp": lambda x: x * (x > 0) + .1 * x,
    "leaky": _leaky,
    "tanh": lambda x: (c_exp(2 * x) - 1) / (c_exp(2 * x) + 1),
    "plse": _plse,
    "stair": _stair,
    "hardtan": _hardtan,
    "lhtan": _lhtan,
    # AlexeyAB/darknet
    "relu6": lambda x: min(max(x, 0.0), 6.0),          # relu6_activate_kernel: min(max(x, 0), 6)
    "swish": lambda x: x * _logistic(x),               # activate_array_swish
    "mish": lambda x: x * _alexey_tanh(_softplus(x, 20)),  # activate_array_mish, MISH_THRESHOLD 20
    "hard_mish": _hard_mish,
    "gelu": lambda x: 0.5 * x * (1 + math.tanh(0.797885 * x + 0.035677 * x ** 3)),
    # activate(): `case REVLEAKY: case LEAKY: return leaky_activate(x);` and on the GPU
    # `a == LEAKY || a == REVLEAKY` -> activate_array_leaky_kernel. Only the gradient differs
    # (gradient_array_revleaky_kernel divides delta by leaky_gradient).
    "revleaky": _leaky,
}


def darknet_activate_array(flat: np.ndarray, name: str) -> np.ndarray:
    """``activate_array``: x[i] = activate(x[i], a), the float result of a scalar formula."""
    fn = DARKNET_ACTIVATIONS[name]
    return np.array([F32(fn(float(v))) for v in flat.reshape(-1)], dtype=F32).reshape(flat.shape)
