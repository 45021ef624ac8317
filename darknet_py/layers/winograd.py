"""Winograd F(4x4, 3x3) convolution for CPU inference (Lavin & Gray, 2016).

A 3x3, stride-1, padding-1 convolution done as ``A^T [(G w G^T) . (B^T d B)] A`` over 6 x 6
input tiles: the multiplications become 36 small matrix products with 1/4 of direct
convolution's work. OpenCV DNN, our speed peer, does the same; oneDNN in PyTorch offers only
direct convolution on the CPU.

Done by ``native/winograd.c``, one OpenMP part per thread, each on its own tiles or output
channels, so that a group of tiles stays in one core's caches from input transform to output
(the same pipeline written as separate ATen operators was no faster than oneDNN on two cores:
every stage re-partitions the data across cores). Whether it runs at all, per layer shape, is
measured on the host by ``tuner.py``: on some CPUs and shapes oneDNN's direct convolution wins. Float32 results differ from direct
convolution by rounding only (``tests/test_winograd.py`` bounds it against ``F.conv2d``). For
``fast`` precision the kernel reads and writes bfloat16 but computes in float32: bfloat16
products would cost F(4x4) a 7% error (1/20 of max |y|), and float32 Winograd is still faster
than oneDNN's bfloat16 direct convolution on the larger maps.
"""
from __future__ import annotations

import ctypes
import threading

import torch

from .. import native, tuner

TILE = 4  # output pixels per tile side
BLOCK = 32  # output channels per kernel block (native/winograd.c's KB)
ACTIVATIONS = {"linear": 0, "leaky": 1, "relu": 2}  # done inside the kernel; others after it
# A tile group's scratch (transformed input and products), in floats. Each group reads all of
# the part's transformed weights once: 1 MB groups stay in a core's L2 (many tiles, few
# channels); 8 MB ones read deep layers' large weights (4 x a direct layer's) fewer times. The
# tuner times both.
GROUP_FLOATS = {"winograd": 1 << 18, "winograd-wide": 1 << 21}
DTYPES = (torch.float32, torch.bfloat16)


def available(dtype=torch.float32) -> bool:
    """Whether the kernel can run a convolution in ``dtype`` here (built, not switched off by
    ``DARKNET_PY_WINOGRAD=0``). Where it pays is for the tuner to measure (``tuner.py``)."""
    return tuner.forced() != "0" and dtype in DTYPES and _kernel() is not None


def transformed_bytes(k: int, c: int) -> int:
    """Bytes of ``Winograd``'s transformed weights for ``k`` x ``c`` 3x3 weights (4 x theirs)."""
    return 4 * 36 * c * -(-k // BLOCK) * BLOCK


_ARGTYPES = [ctypes.c_int, ctypes.c_void_p, *[ctypes.c_int] * 3, ctypes.c_void_p, ctypes.c_int,
             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
             ctypes.c_int, ctypes.c_void_p, ctypes.c_long]


def _kernel():
    library = native.load("winograd")
    if library is not None and library.winograd.argtypes is None:
        library.winograd.argtypes, library.winograd.restype = _ARGTYPES, None
        library.transform_weights.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        library.transform_weights.restype = None
    return library


class Winograd:
    """One layer's transformed weights ``G w G^T``, computed in double by the kernel's
    ``transform_weights`` and packed as its product loop reads them (per 32 output channels:
    ``[C][32]``, or two ``[C][16]`` halves on AVX2); ``dtype`` is that of the layer's input and
    output; ``variant`` (a GROUP_FLOATS key) sizes its tile groups, as the tuner chose."""

    def __init__(self, weights: torch.Tensor, dtype=torch.float32):
        k, c = weights.shape[:2]
        blocks = -(-k // BLOCK)
        w = weights.detach().float().cpu().contiguous()
        self.u = torch.empty(36, blocks, c, BLOCK)  # every value written by the kernel, zeros past k
        _kernel().transform_weights(w.data_ptr(), k, c, self.u.data_ptr(), max(1, torch.get_num_threads()))
        self.k, self.c, self.blocks, self.dtype = k, c, blocks, dtype
        self.variant = "winograd"  # a GROUP_FLOATS key

    def __call__(self, x: torch.Tensor, alpha, beta, activation: str) -> torch.Tensor:
        """``act(conv(x) * alpha + beta)`` for channels-last ``x`` (N, C, H, W) of ``dtype``;
        ``alpha``/``beta`` float32 per output channel or None; ``activation`` one of ACTIVATIONS."""
        n, c, h, w = x.shape
        if c != self.c or x.dtype != self.dtype or not x.is_contiguous(memory_format=torch.channels_last):
            raise ValueError(f"Winograd for channels-last {self.dtype} with {self.c} channels, got "
                             f"{tuple(x.shape)} {x.dtype}")
        for t in (alpha, beta):
            if t is not None and not (t.is_contiguous() and t.dtype == torch.float32 and t.numel() == self.k):
                raise ValueError(f"alpha and beta must be {self.k} contiguous float32 values")
        tiles = n * -(-h // TILE) * -(-w // TILE)
        y = torch.empty(n, h, w, self.k, dtype=self.dtype)
        parts = _split(tiles, self.blocks, max(1, torch.get_num_threads()))
        group = self.group(parts, self.variant)
        per = 36 * group * (c + BLOCK * _blocks_per_part(parts))  # V, then P per block
        scratch = _scratch(len(parts) * per)
        x_, u, alpha_, beta_, y_ = (None if t is None else t.data_ptr() for t in (x, self.u, alpha, beta, y))
        table = (ctypes.c_int * (4 * len(parts)))(*(v for part in parts for v in part))
        _kernel().winograd(self.dtype == torch.bfloat16, x_, h, w, c, u, self.k, alpha_, beta_,
                           ACTIVATIONS[activation], y_, table, len(parts), group, scratch.data_ptr(), per)
        return y.permute(0, 3, 1, 2)


    def group(self, parts, variant) -> int:
        """Tiles per group for ``variant``: a multiple of the kernel's 12 register rows, at most
        (wide) all of a part's tiles."""
        share = max(stop - start for start, stop, _, _ in parts)
        fits = GROUP_FLOATS[variant] // (36 * (self.c + BLOCK * _blocks_per_part(parts)))
        cap = 96 if variant == "winograd" else -(-share // 12) * 12
        return max(12, min(cap, fits) // 12 * 12)

    def variants(self, n, h, w, threads) -> list[str]:
        """The GROUP_FLOATS keys that make different groups for an (n, h, w) input on
        ``threads`` (the others would run the same code)."""
        parts = _split(n * -(-h // TILE) * -(-w // TILE), self.blocks, threads)
        groups = {}
        for variant in GROUP_FLOATS:
            groups.setdefault(self.group(parts, variant), variant)
        return list(groups.values())


def _split(tiles, blocks, threads):
    """``threads`` parts of (tile range, output block range): by tiles where each part still
    gets several register rows of them, else by output channel blocks (deep, small layers:
    each part then reads only its share of the transformed weights)."""
    by_tiles = tiles >= threads * 24 or blocks < threads
    count = tiles if by_tiles else blocks
    bounds = [count * i // threads for i in range(threads + 1)]
    ranges = [(start, stop) for start, stop in zip(bounds, bounds[1:]) if start < stop]
    return [(start, stop, 0, blocks) if by_tiles else (0, tiles, start, stop) for start, stop in ranges]



def _blocks_per_part(parts):
    """The most output blocks any part computes: its products fill that many blocks of scratch."""
    return max(kb1 - kb0 for _, _, kb0, kb1 in parts)


_local = threading.local()


def _scratch(floats: int) -> torch.Tensor:
    """This calling thread's reused scratch buffer (fresh pages on every call would cost as
    much as the arithmetic)."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None or buffer.numel() < floats:
        buffer = _local.buffer = torch.empty(floats)
    return buffer
