"""Darknet's learning rate as a pure function of the batch number (``get_current_rate``).

``batch_num`` is Darknet's ``get_current_batch`` at the update: ``seen / batch`` after the
images of this update were counted, so the first update uses 1. The arithmetic is C's: the
cfg's numbers are floats, ``pow``/``exp``/``cos`` run in double, the few float-typed steps
(``(float)batch_num / burn_in``, the ``steps`` product, sigmoid's ``gamma * (batch_num -
step)``, sgdr's ``learning_rate - learning_rate_min``) in float32, and the result is rounded
to float32 once, on return.
"""
from __future__ import annotations

import math

import numpy as np

from ..netcfg import NetConfig

F32 = np.float32
SIZE_T = 1 << 64  # pjreddie's batch_num is a size_t: batch_num - step wraps below step
DARKNET_PI = 3.14159265  # sgdr's cos() argument, as AlexeyAB writes it


def _f(value) -> float:
    """A C float (the cfg's number as ``atof`` then float stores it), as a double."""
    return float(F32(value))


def learning_rate(net: NetConfig, batch_num: int, uniform: float | None = None) -> float:
    """The rate Darknet uses for update number ``batch_num``; ``uniform`` is the U(0, 1) draw
    that ``policy=random`` needs."""
    return float(F32(_rate(net, batch_num, uniform)))


def _rate(net: NetConfig, batch_num: int, uniform: float | None) -> float:
    lr = _f(net.learning_rate)
    if batch_num < net.burn_in:
        return lr * math.pow(_f(F32(batch_num) / F32(net.burn_in)), _f(net.power))
    policy = net.policy
    if policy == "constant":
        return lr
    if policy == "step":
        return lr * math.pow(_f(net.scale), batch_num // net.step)
    if policy == "steps":
        rate = F32(lr)
        for step, scale in zip(net.steps, net.scales):
            if step > batch_num:
                break
            rate = F32(rate * F32(scale))
        return float(rate)
    if policy == "exp":
        return lr * math.pow(_f(net.gamma), batch_num)
    if policy == "poly":
        return lr * math.pow(_f(F32(1) - F32(batch_num) / F32(net.max_batches)), _f(net.power))
    if policy == "random":
        if uniform is None:
            raise ValueError("policy=random needs a uniform draw")
        return lr * math.pow(_f(uniform), _f(net.power))
    if policy == "sigmoid":
        # gamma * (batch_num - step): a float times the (float-converted) integer difference,
        # which for pjreddie's size_t batch_num wraps to about 2^64 before the step
        diff = batch_num - net.step
        if net.fork != "alexeyab" and diff < 0:
            diff += SIZE_T
        with np.errstate(over="ignore"):
            exponent = _f(F32(net.gamma) * F32(diff))
        try:
            return lr * (1.0 / (1.0 + math.exp(exponent)))
        except OverflowError:  # exp() is inf in C: the rate is 0
            return 0.0
    if policy == "sgdr":
        start, cycle = 0, max(net.sgdr_cycle, 1)
        while start + cycle < batch_num:
            start += cycle
            cycle *= net.sgdr_mult
        lo = _f(net.learning_rate_min)
        span = _f(F32(lr) - F32(lo))
        return lo + 0.5 * span * (1.0 + math.cos(_f(batch_num - start) * DARKNET_PI / cycle))
    if policy == "cosine":  # this project's extension, in the same arithmetic as sgdr
        lo = _f(net.learning_rate_min)
        span = max(net.max_batches - net.burn_in, 1)
        progress = min(max(batch_num - net.burn_in, 0) / span, 1.0)
        return lo + 0.5 * _f(F32(lr) - F32(lo)) * (1.0 + math.cos(progress * DARKNET_PI))
    # NetConfig refuses unknown policies; this guards new entries in POLICIES
    raise ValueError(f"no rate for policy {policy!r}")


def rate_curve(net: NetConfig, seed: int = 0) -> np.ndarray:
    """The rate of every update 1..max_batches (for charts and ``plot-lr``); only
    ``policy=random`` pays for a random draw per update."""
    draws = net.policy == "random"
    return np.array([learning_rate(net, b, uniform_draw(seed, b) if draws else None)
                     for b in range(1, net.max_batches + 1)], dtype=F32)


def uniform_draw(seed: int, batch_num: int) -> float:
    """The U(0, 1) draw of ``policy=random`` for one update, reproducible on resume."""
    return float(np.random.default_rng((seed, batch_num, 7)).random())
