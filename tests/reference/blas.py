"""blas.c's reorg_cpu (both forks), on a flat float32 array; outputs never written stay NaN."""
from __future__ import annotations

import numpy as np

F32 = np.float32


def darknet_reorg_cpu(x, out_w, out_h, out_c, batch, stride, forward):
    out = np.full(x.size, np.nan, dtype=F32)
    in_c = out_c // (stride * stride)  # positive: C's division
    for b in range(batch):
        for k in range(out_c):
            for j in range(out_h):
                for i in range(out_w):
                    in_index = i + out_w * (j + out_h * (k + out_c * b))
                    c2 = k % in_c
                    offset = k // in_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + out_w * stride * (h2 + out_h * stride * (c2 + in_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out
