"""[maxpool] with Darknet's padding rule and [avgpool] (global average)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import LayerSpec, Shape, register
from .conv import out_size


class MaxPool(nn.Module):
    """Windows start at ``-padding/2``; cells outside the image count as -FLT_MAX, never zero.

    PyTorch pads symmetrically, Darknet pads ``padding/2`` before and whatever the last window
    needs after (size 2, stride 1 in yolov3-tiny pads one column on the right only).
    """

    def __init__(self, size, stride, padding):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x):
        before, size, stride = self.padding // 2, self.size, self.stride
        h, w = x.shape[2:]
        out_h, out_w = (h + self.padding - size) // stride + 1, (w + self.padding - size) // stride + 1
        pad = (before, max(0, (out_w - 1) * stride + size - before - w),
               before, max(0, (out_h - 1) * stride + size - before - h))
        if any(pad):
            x = F.pad(x, pad, value=torch.finfo(x.dtype).min)  # Darknet's -FLT_MAX, not -inf
        return F.max_pool2d(x, size, stride)


@register("maxpool", "max")
def build_maxpool(s, ctx):
    inp = ctx.prev
    stride = s.int("stride", 1, minimum=1)
    size = s.int("size", stride, minimum=1)
    padding = s.int("padding", size - 1, minimum=0)
    if padding // 2 >= size:
        raise s.error(f"padding {padding} leaves windows entirely outside the image (size {size})", "padding")
    out = Shape(inp.c, out_size(s, "size", inp.h, size, stride, padding),
                out_size(s, "size", inp.w, size, stride, padding))
    return LayerSpec("maxpool", (ctx.prev_index,), out, lambda: MaxPool(size, stride, padding),
                     label="max", detail=f"      {size:2d} x{size:2d} /{stride:2d}")


class AvgPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3), keepdim=True)


@register("avgpool", "avg")
def build_avgpool(s, ctx):
    inp = ctx.prev
    return LayerSpec("avgpool", (ctx.prev_index,), Shape(inp.c, 1, 1), AvgPool, label="avg")
