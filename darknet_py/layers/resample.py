"""[upsample] (nearest, or summing when stride is negative) and [reorg] (space to depth)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..registry import LayerSpec, Shape, register
from .base import refuse_unsupported


class Upsample(nn.Module):
    def __init__(self, stride, scale, reverse):
        super().__init__()
        self.stride, self.scale, self.reverse = stride, scale, reverse

    def forward(self, x):
        b, c, h, w = x.shape
        s = self.stride
        if self.reverse:  # Darknet's backward upsample: each output sums its s x s block
            x = x.reshape(b, c, h // s, s, w // s, s).sum((3, 5))
        elif x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # inference's layout stays channels-last: a (b, c, h, w)-ordered copy here made the
            # route after it, and the convolution after that, leave the prepacked/Winograd path
            nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(b, h, s, w, s, c)
            x = nhwc.reshape(b, h * s, w * s, c).permute(0, 3, 1, 2)
        else:
            x = x[:, :, :, None, :, None].expand(b, c, h, s, w, s).reshape(b, c, h * s, w * s)
        return x if self.scale == 1 else x * self.scale


@register("upsample")
def build_upsample(s, ctx):
    inp = ctx.prev
    stride = s.int("stride", 2)
    scale = s.float("scale", 1.0)
    if stride == 0:
        raise s.error("must not be 0", "stride")
    reverse = stride < 0
    stride = abs(stride)
    if reverse:
        if inp.h % stride or inp.w % stride:
            raise s.error(f"downsampling {inp} by {stride} needs width and height divisible by it "
                          "(Darknet's indexing assumes it)", "stride")
        out = Shape(inp.c, inp.h // stride, inp.w // stride)
    else:
        out = Shape(inp.c, inp.h * stride, inp.w * stride)
    return LayerSpec("upsample", (ctx.prev_index,), out, lambda: Upsample(stride, scale, reverse),
                     label="upsample", detail=f"           {'-' if reverse else ' '}{stride}x")


def reorg_gather(c, h, w, stride, reverse):
    """Flat gather indices reproducing ``reorg_cpu`` on a (c, h, w) input.

    Darknet's forward reorg calls ``reorg_cpu(..., forward=0)``: it reads the input as if it
    were (c/s^2, h*s, w*s) and writes it in (c, h, w) order, i.e. ``out[in_i] = x[out_i]``.
    ``reverse=1`` calls it with forward=1: ``out[out_i] = x[in_i]``.
    """
    k, j, i = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    out_c = c // (stride * stride)
    c2, offset = k % out_c, k // out_c
    w2 = i * stride + offset % stride
    h2 = j * stride + offset // stride
    out_index = (w2 + w * stride * (h2 + h * stride * c2)).ravel()
    return torch.from_numpy(np.argsort(out_index) if reverse else out_index)


class Reorg(nn.Module):
    """``reorg_cpu`` as a gather. pjreddie's [reorg] (AlexeyAB's ``reorg_old``) passes it the
    input's (w, h, c); AlexeyAB's [reorg3d] passes the output's (``output_dims``), which makes
    the forward direction a true space-to-depth."""

    def __init__(self, stride, reverse, output_dims=False):
        super().__init__()
        self.stride, self.reverse, self.output_dims = stride, reverse, output_dims
        self._gather = {}  # per input shape and device; rebuilt, never saved

    def forward(self, x):
        b = x.shape[0]
        c, h, w = (int(v) for v in x.shape[1:])  # ints also when traced for ONNX export
        s = self.stride
        out = (c // (s * s), h * s, w * s) if self.reverse else (c * s * s, h // s, w // s)
        key = (c, h, w, x.device)
        if key not in self._gather:
            dims = out if self.output_dims else (c, h, w)
            self._gather[key] = reorg_gather(*dims, s, self.reverse).to(x.device)
        return x.flatten(1).index_select(1, self._gather[key]).view(b, *out)


def _reorg_shape(s, inp, stride, reverse):
    if reverse:
        if inp.c % (stride * stride):
            raise s.error(f"reverse reorg needs channels ({inp.c}) divisible by stride^2", "stride")
        return Shape(inp.c // (stride * stride), inp.h * stride, inp.w * stride)
    if inp.h % stride or inp.w % stride or inp.c % (stride * stride):
        raise s.error(f"reorg of {inp} by {stride} needs width, height and channels/stride^2 "
                      "to divide evenly", "stride")
    return Shape(inp.c * stride * stride, inp.h // stride, inp.w // stride)


@register("reorg")
def build_reorg(s, ctx):
    inp = ctx.prev
    stride = s.int("stride", 1)
    reverse = bool(s.int("reverse", 0))
    refuse_unsupported(s, "flatten", "extra")
    if stride < 1:
        raise s.error(f"must be >= 1, got {stride}", "stride")
    out = _reorg_shape(s, inp, stride, reverse)
    return LayerSpec("reorg", (ctx.prev_index,), out, lambda: Reorg(stride, reverse),
                     label="reorg", detail=f"            / {stride}")


@register("reorg3d")
def build_reorg3d(s, ctx):
    inp = ctx.prev
    stride = s.int("stride", 1, minimum=1)
    reverse = bool(s.int("reverse", 0))
    ss = stride * stride
    # reorg_cpu on the output's dims reads out_c / stride^2 channels: a permutation only when
    # that divides; forward, that is the input's channel count, so only the size must divide.
    if reverse:
        if inp.c % (ss * ss):
            raise s.error(f"reverse reorg3d needs channels ({inp.c}) divisible by stride^4", "stride")
        out = Shape(inp.c // ss, inp.h * stride, inp.w * stride)
    else:
        if inp.h % stride or inp.w % stride:
            raise s.error(f"reorg3d of {inp} by {stride} needs width and height divisible by it", "stride")
        out = Shape(inp.c * ss, inp.h // stride, inp.w // stride)
    return LayerSpec("reorg3d", (ctx.prev_index,), out, lambda: Reorg(stride, reverse, output_dims=True),
                     label="reorg3d", detail=f"            / {stride}")
