"""[maxpool] with Darknet's padding rule (and AlexeyAB's stride_x/stride_y, maxpool_depth,
antialiasing), [local_avgpool] and [avgpool] (global average)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import tuner
from ..registry import LayerSpec, Shape, register
from .base import refuse_unsupported
from .conv import Blur, out_size, refuse_resizing_blur


def _pairs(stride):
    return stride if isinstance(stride, tuple) else (stride, stride)


def _stride(stride_x, stride_y):
    """An int when both strides agree (as pjreddie's), else (y, x)."""
    return stride_x if stride_x == stride_y else (stride_y, stride_x)


def darknet_pad(x, size, stride, padding, value):
    """Pad as Darknet's pooling windows reach: ``padding/2`` before, and after whatever the last
    window needs (size 2, stride 1 in yolov3-tiny pads one column on the right only)."""
    before, (sy, sx) = padding // 2, _pairs(stride)
    h, w = x.shape[2:]
    out_h, out_w = (h + padding - size) // sy + 1, (w + padding - size) // sx + 1
    pad = (before, max(0, (out_w - 1) * sx + size - before - w),
           before, max(0, (out_h - 1) * sy + size - before - h))
    return F.pad(x, pad, value=value) if any(pad) else x


class MaxPool(nn.Module):
    """Windows start at ``-padding/2``; cells outside the image count as -FLT_MAX, never zero.
    ``stride`` is an int or (y, x). With ``antialiasing`` the pooling runs at stride 1 and a
    :class:`Blur` applies the stride (``make_maxpool_layer``)."""

    def __init__(self, size, stride, padding, antialiasing=0):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding
        self.blur = None
        self._paths = {}  # tuner's choice per input shape key, looked up once per layer
        if antialiasing:
            self.blur = Blur(antialiasing, stride)
            self.stride = 1

    def forward(self, x):
        x = darknet_pad(x, self.size, self.stride, self.padding, torch.finfo(x.dtype).min)  # -FLT_MAX
        if self._quadrants_apply(x) and self._tuned_path(x) == QUADRANTS:
            x = _quadrant_max(x)
        else:
            x = F.max_pool2d(x, self.size, self.stride)
        return x if self.blur is None else self.blur(x)

    def _quadrants_apply(self, x):
        return (self.size == 2 and self.stride in (2, (2, 2)) and not torch.is_grad_enabled()
                and x.dim() == 4 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 and x.device.type == "cpu"
                and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())

    def _tuned_path(self, x):
        """The tuner's choice for this input shape (timed once per host): on the large maps
        of yolov3-tiny the quadrants took 0.4x max_pool2d's time, on 26x26x256 2x it."""
        key = f"maxpool2x2 {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')} threads={torch.get_num_threads()}"
        if key not in self._paths:
            self._paths[key] = tuner.default().choose(key, lambda: {
                tuner.DIRECT: lambda: F.max_pool2d(x, 2, 2), QUADRANTS: lambda: _quadrant_max(x)})
        return self._paths[key]


QUADRANTS = "quadrants"


def _quadrant_max(x):
    """2x2 windows at stride 2 as the maximum of the four strided quadrants: max_pool2d's values
    exactly (a maximum rounds nothing; NaN propagates in both)."""
    return torch.maximum(torch.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
                         torch.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]))


class MaxPoolDepth(nn.Module):
    """``maxpool_depth``: output channel g is the maximum over input channels g, g + out_c,
    g + 2 out_c, ... at each pixel (-FLT_MAX where there are none)."""

    def __init__(self, out_channels):
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x):
        b, c, h, w = x.shape
        groups = -(-c // self.out_channels)
        fill = torch.finfo(x.dtype).min
        padded = F.pad(x, (0, 0, 0, 0, 0, groups * self.out_channels - c), value=fill)
        return padded.view(b, groups, self.out_channels, h, w).amax(1)


def _pool_geometry(s, ctx):
    """stride_x, stride_y, size, padding as parse_maxpool / parse_local_avgpool read them."""
    stride = s.int("stride", 1, minimum=1)
    stride_x = s.int("stride_x", stride, minimum=1)
    stride_y = s.int("stride_y", stride, minimum=1)
    size = s.int("size", stride, minimum=1)
    padding = s.int("padding", size - 1, minimum=0)
    if padding // 2 >= size:
        raise s.error(f"padding {padding} leaves windows entirely outside the image (size {size})", "padding")
    return stride_x, stride_y, size, padding


def _detail(size, stride_x, stride_y):
    strides = f"/{stride_x:2d}" if stride_x == stride_y else f"/{stride_x}x{stride_y}"
    return f"      {size:2d} x{size:2d} {strides}"


@register("maxpool", "max")
def build_maxpool(s, ctx):
    inp = ctx.prev
    stride_x, stride_y, size, padding = _pool_geometry(s, ctx)
    depth = s.int("maxpool_depth", 0)
    antialiasing = s.int("antialiasing", 0, minimum=0)
    refuse_unsupported(s, "maxpool_zero_nonmax")
    if depth:
        out_channels = s.int("out_channels", 1, minimum=1)
        if antialiasing:
            raise s.error("maxpool_depth returns before the blur: antialiasing has no effect there", "antialiasing")
        return LayerSpec("maxpool", (ctx.prev_index,), Shape(out_channels, inp.h, inp.w),
                         lambda: MaxPoolDepth(out_channels), label="max-depth",
                         detail=_detail(size, stride_x, stride_y))
    s.ignore("out_channels")  # read by Darknet, used only with maxpool_depth
    step_y, step_x = (1, 1) if antialiasing else (stride_y, stride_x)
    out_h = out_size(s, "size", inp.h, size, step_y, padding)
    out_w = out_size(s, "size", inp.w, size, step_x, padding)
    refuse_resizing_blur(s, antialiasing, stride_x, stride_y, out_h, out_w)  # a blur keeps the size
    flops = float(size * size * inp.c * out_h * out_w)
    out = Shape(inp.c, out_h, out_w)
    return LayerSpec("maxpool", (ctx.prev_index,), out,
                     lambda: MaxPool(size, _stride(stride_x, stride_y), padding, antialiasing),
                     flops=flops, label="max", detail=_detail(size, stride_x, stride_y),
                     workspace=inp.c * (inp.h + padding) * (inp.w + padding))  # the padded input


class LocalAvgPool(nn.Module):
    """``forward_local_avgpool_layer``: each window's mean over the cells inside the image
    (Darknet's asymmetric padding, as [maxpool]; padding never counts)."""

    def __init__(self, size, stride, padding):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x):
        total = F.avg_pool2d(darknet_pad(x, self.size, self.stride, self.padding, 0.0), self.size,
                             self.stride, divisor_override=1)
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        count = F.avg_pool2d(darknet_pad(ones, self.size, self.stride, self.padding, 0.0), self.size,
                             self.stride, divisor_override=1)
        return total / count


@register("local_avgpool", "local_avg")
def build_local_avgpool(s, ctx):
    inp = ctx.prev
    stride_x, stride_y, size, padding = _pool_geometry(s, ctx)
    out = Shape(inp.c, out_size(s, "size", inp.h, size, stride_y, padding),
                out_size(s, "size", inp.w, size, stride_x, padding))
    return LayerSpec("local_avgpool", (ctx.prev_index,), out,
                     lambda: LocalAvgPool(size, _stride(stride_x, stride_y), padding),
                     flops=float(size * size * inp.c * out.h * out.w), label="avg",
                     detail=_detail(size, stride_x, stride_y),
                     workspace=2 * inp.c * (inp.h + padding) * (inp.w + padding))  # padded input, counts


class AvgPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3), keepdim=True)


@register("avgpool", "avg")
def build_avgpool(s, ctx):
    inp = ctx.prev
    return LayerSpec("avgpool", (ctx.prev_index,), Shape(inp.c, 1, 1), AvgPool, label="avg")
