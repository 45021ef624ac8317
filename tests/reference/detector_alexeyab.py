"""AlexeyAB's detector.c: train_detector's random network sizes (the ``random`` / ``resize_step``
rule, including the largest size for the first and the last iterations)."""
from __future__ import annotations

import numpy as np

f = np.float32


def c_dims(random, init_w, init_h, resize_step, random_val, start_or_end):
    rand_coef = f(1.4) if random == 1.0 else f(random)

    def roundl(x):
        return int(np.floor(abs(float(x)) + .5)) * (1 if x >= 0 else -1)

    step = f(resize_step)
    dim_w = int(roundl(f(random_val) * f(init_w) / step + f(1)) * float(step))
    dim_h = int(roundl(f(random_val) * f(init_h) / step + f(1)) * float(step))
    if random_val < 1 and (dim_w > init_w or dim_h > init_h):
        dim_w, dim_h = init_w, init_h
    max_dim_w = int(roundl(rand_coef * f(init_w) / step + f(1)) * float(step))
    max_dim_h = int(roundl(rand_coef * f(init_h) / step + f(1)) * float(step))
    if start_or_end:
        dim_w, dim_h = max_dim_w, max_dim_h
    if dim_w < step:
        dim_w = int(step)
    if dim_h < step:
        dim_h = int(step)
    return dim_w, dim_h
