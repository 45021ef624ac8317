"""Winograd F(m x m, 3 x 3) convolution for CPU inference (Lavin & Gray, 2016).

A 3x3, stride-1, padding-1 convolution done as ``A^T [(G w G^T) . (B^T d B)] A`` over
(m + 2)-square input tiles: the multiplications become (m + 2)^2 small matrix products with
9 m^2 / (m + 2)^2 of direct convolution's work (1/2.25 for m = 2, 1/4 for m = 4). OpenCV DNN,
our speed peer, does the same; oneDNN in PyTorch offers only direct convolution on the CPU.

Done by ``native/winograd.c``, one call per thread, each on its own tiles or output channels
so that a group of tiles stays in one core's caches from input transform to output (the same
pipeline written as separate ATen operators was no faster than oneDNN on two cores: every
stage re-partitions the data across cores). Float32 results differ from direct convolution by
rounding only (``tests/test_winograd.py`` bounds it against ``F.conv2d``).
"""
from __future__ import annotations

import ctypes
import os
import threading

import torch

from .. import native

# Lavin's transforms: interpolation points 0, -1, 1 (m = 2) and 0, +-1, +-2 (m = 4), plus infinity.
_G = {2: [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
      4: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
          [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]}
BLOCK = 32  # output channels per kernel block (native/winograd.c's KB)
ACTIVATIONS = {"linear": 0, "leaky": 1, "relu": 2}  # done inside the kernel; others after it
_GROUP_FLOATS = 1 << 18  # a tile group's transformed input: about 1 MB, one core's L2


def winograd_tile(c: int, n: int, h: int, w: int, batch: int = 1) -> int:
    """The output tile size m for a 3x3 stride-1 convolution of ``c`` -> ``n`` channels on
    ``batch`` x ``h`` x ``w``, or 0 for direct convolution (also when the kernel is unavailable).
    Winograd pays where the products are large (enough channels) and the picture is not so
    small that padding tiles waste the saving."""
    if os.environ.get("DARKNET_PY_WINOGRAD", "1") == "0" or min(c, n) < 32 or min(h, w) < 12:
        return 0
    return 4 if _kernel() is not None else 0


_ARGTYPES = [ctypes.c_int, ctypes.c_void_p, *[ctypes.c_int] * 4, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
             ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
             ctypes.c_void_p, ctypes.c_long]


def _kernel():
    library = native.load("winograd")
    if library is not None and library.winograd.argtypes is None:
        library.winograd.argtypes, library.winograd.restype = _ARGTYPES, None
    return library


class Winograd:
    """One layer's transformed weights, packed for the kernel: ``[(m+2)^2][K / 32][C][32]``."""

    def __init__(self, weights: torch.Tensor, m: int):
        g = torch.tensor(_G[m], dtype=torch.float64)
        k, c = weights.shape[:2]
        a = m + 2
        u = torch.einsum("ik,nckl,jl->ijcn", g, weights.detach().double().cpu(), g).reshape(a * a, c, k)
        blocks = -(-k // BLOCK)
        u = torch.nn.functional.pad(u, (0, blocks * BLOCK - k)).view(a * a, c, blocks, BLOCK)
        self.m, self.k, self.blocks = m, k, blocks
        self.u = u.permute(0, 2, 1, 3).contiguous().float()

    def __call__(self, x: torch.Tensor, alpha, beta, activation: str) -> torch.Tensor:
        """``act(conv(x) * alpha + beta)`` for channels-last float32 ``x`` (N, C, H, W);
        ``alpha``/``beta`` per output channel or None; ``activation`` one of ACTIVATIONS."""
        n, c, h, w = x.shape
        m, a = self.m, self.m + 2
        tiles = n * -(-h // m) * -(-w // m)
        y = torch.empty(n, h, w, self.k)
        parts = _split(tiles, self.blocks, max(1, torch.get_num_threads()))
        group = max(12, min(96, _GROUP_FLOATS // (a * a * c)) // 12 * 12)
        per = a * a * group * (c + BLOCK)
        scratch = _scratch(len(parts) * per)
        tensors = [x.permute(0, 2, 3, 1), self.u, alpha, beta, y]
        for t in tensors:
            assert t is None or (t.is_contiguous() and t.dtype == torch.float32)
        x_, u, alpha_, beta_, y_ = (None if t is None else t.data_ptr() for t in tensors)
        table = (ctypes.c_int * (4 * len(parts)))(*(v for part in parts for v in part))
        _kernel().winograd(m, x_, n, h, w, c, u, self.k, alpha_, beta_, ACTIVATIONS[activation], y_,
                           table, len(parts), group, scratch.data_ptr(), per)
        return y.permute(0, 3, 1, 2)


def _split(tiles, blocks, threads):
    """``threads`` parts of (tile range, output block range): by tiles where each part still
    gets several register rows of them, else by output channel blocks (deep, small layers:
    each part then reads only its share of the transformed weights)."""
    if tiles >= threads * 24 or blocks < threads:
        bounds = [tiles * i // threads for i in range(threads + 1)]
        return [(bounds[i], bounds[i + 1], 0, blocks) for i in range(threads) if bounds[i] < bounds[i + 1]]
    bounds = [blocks * i // threads for i in range(threads + 1)]
    return [(0, tiles, bounds[i], bounds[i + 1]) for i in range(threads) if bounds[i] < bounds[i + 1]]


_local = threading.local()


def _scratch(floats: int) -> torch.Tensor:
    """This calling thread's reused scratch buffer (fresh pages on every call would cost as
    much as the arithmetic)."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None or buffer.numel() < floats:
        buffer = _local.buffer = torch.empty(floats)
    return buffer
