"""Exact mode's batch norm and activation after a direct convolution, as one pass in C.

``native/pointwise.c`` does in one pass over the channels-last output what ``addcmul`` (the
batch norm as ``x * alpha + beta``, rounded as ATen rounds it) and the in-place activation do in
two, each its own parallel region: the same numbers (``tests/test_precision.py`` checks them
bit for bit against eval-mode batch norm), one memory pass and one thread barrier fewer.
"""
from __future__ import annotations

import ctypes

import torch

from .. import native

ACTIVATIONS = {"linear": 0, "leaky": 1, "relu": 2}


def _kernel():
    library = native.load("pointwise")
    if library is not None and library.affine_act.argtypes is None:
        library.affine_act.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        library.affine_act.restype = None
    return library


def applies(activation: str) -> bool:
    """Whether ``affine_act_`` can do this activation here (the kernel built)."""
    return activation in ACTIVATIONS and _kernel() is not None


def affine_act_(y: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, activation: str) -> torch.Tensor:
    """``act(y * alpha + beta)`` in place for a channels-last float32 ``y`` (N, C, H, W) and
    contiguous float32 ``alpha``/``beta`` of C values; ``applies(activation)`` must hold."""
    n, c, h, w = y.shape
    if not (y.dtype == alpha.dtype == beta.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
            and alpha.is_contiguous() and beta.is_contiguous() and alpha.numel() == beta.numel() == c):
        raise ValueError("affine_act_ needs channels-last float32 y and C contiguous float32 alpha and beta")
    _kernel().affine_act(y.data_ptr(), n * h * w, c, alpha.data_ptr(), beta.data_ptr(), ACTIVATIONS[activation],
                         max(1, torch.get_num_threads()))
    return y
