"""Darknet's learning rate as a pure function of the batch number (``get_current_rate``).

``batch_num`` is Darknet's ``get_current_batch`` at the update: ``seen / batch`` after the
images of this update were counted, so the first update uses 1. Rates are C floats: computed
in double where C does, stored as float32.
"""
from __future__ import annotations

import math

import numpy as np

from ..netcfg import NetConfig

F32 = np.float32


def learning_rate(net: NetConfig, batch_num: int, uniform: float | None = None) -> float:
    """The rate Darknet uses for update number ``batch_num``; ``uniform`` is the U(0, 1) draw
    that ``policy=random`` needs."""
    lr = F32(net.learning_rate)
    if batch_num < net.burn_in:
        return float(F32(lr * math.pow(F32(batch_num) / F32(net.burn_in), net.power)))
    policy = net.policy
    if policy == "constant":
        rate = lr
    elif policy == "step":
        rate = lr * math.pow(net.scale, batch_num // net.step)
    elif policy == "steps":
        rate = lr
        for step, scale in zip(net.steps, net.scales):
            if step > batch_num:
                break
            rate = F32(rate * F32(scale))
    elif policy == "exp":
        rate = lr * math.pow(net.gamma, batch_num)
    elif policy == "poly":
        rate = lr * math.pow(1 - F32(batch_num) / F32(net.max_batches), net.power)
    elif policy == "random":
        if uniform is None:
            raise ValueError("policy=random needs a uniform draw")
        rate = lr * math.pow(uniform, net.power)
    elif policy == "sigmoid":
        rate = lr * (1.0 / (1.0 + math.exp(net.gamma * (batch_num - net.step))))
    elif policy == "sgdr":
        start, cycle = 0, max(net.sgdr_cycle, 1)
        while start + cycle < batch_num:
            start += cycle
            cycle *= net.sgdr_mult
        rate = cosine(net, F32(batch_num - start) / cycle)
    elif policy == "cosine":
        span = max(net.max_batches - net.burn_in, 1)
        rate = cosine(net, min(max(batch_num - net.burn_in, 0) / span, 1.0))
    else:  # NetConfig refuses unknown policies; this guards new entries in POLICIES
        raise ValueError(f"no rate for policy {policy!r}")
    return float(F32(rate))


def cosine(net: NetConfig, progress: float) -> float:
    """``learning_rate_min + (learning_rate - learning_rate_min) * (1 + cos(pi * progress)) / 2``
    with Darknet's 3.14159265."""
    lo = net.learning_rate_min
    return lo + 0.5 * (net.learning_rate - lo) * (1.0 + math.cos(progress * 3.14159265))


def rate_curve(net: NetConfig, seed: int = 0) -> np.ndarray:
    """The rate of every update 1..max_batches (for charts and ``plot-lr``); only
    ``policy=random`` pays for a random draw per update."""
    draws = net.policy == "random"
    return np.array([learning_rate(net, b, uniform_draw(seed, b) if draws else None)
                     for b in range(1, net.max_batches + 1)], dtype=F32)


def uniform_draw(seed: int, batch_num: int) -> float:
    """The U(0, 1) draw of ``policy=random`` for one update, reproducible on resume."""
    return float(np.random.default_rng((seed, batch_num, 7)).random())
