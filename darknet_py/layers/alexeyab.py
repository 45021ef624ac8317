"""AlexeyAB's sections without a pjreddie counterpart: [scale_channels], [sam], [implicit],
[empty]/[silence] ([reorg3d] is in resample.py, [local_avgpool] in pool.py); and YOLOR's
[implicit_add]/[implicit_mul] with [shift_channels]/[control_channels], which cfgs converted
from YOLOR/YOLOv7 (e.g. DeepStream-Yolo's) use instead of AlexeyAB's [implicit]."""
from __future__ import annotations

import torch
from torch import nn

from ..activations import Activation, read_activation
from ..registry import LayerSpec, Shape, register
from .base import Blob

# activate_array() has no case for these (it returns 0); parse_scale_channels and parse_sam
# print that they are unsupported.
_UNSUPPORTED_HERE = ("swish", "mish", "hard_mish")


def _activation(s):
    act = read_activation(s, "linear")
    if act in _UNSUPPORTED_HERE:
        raise s.error(f"[{s.kind}] does not support '{act}' in Darknet (its activate() has no case "
                      "for it)", "activation")
    return act


def _one_from(s, ctx):
    froms = s.ints("from")
    if len(froms) != 1:
        raise s.error(f"takes one layer, got {len(froms)}", "from")
    return ctx.resolve(s, "from", froms[0])


class ScaleChannels(nn.Module):
    """``forward_scale_channels_layer``: the ``from`` output scaled by the previous output,
    one factor per channel (previous is c x 1 x 1) or, with ``scale_wh``, one per pixel
    (previous is 1 x h x w)."""

    def __init__(self, activation):
        super().__init__()
        self.activation = Activation(activation)

    def forward(self, scale, x):
        return self.activation(scale * x)


@register("scale_channels")
def build_scale_channels(s, ctx):
    frm_index = _one_from(s, ctx)
    prev, frm = ctx.prev, ctx.shape_of(frm_index)
    scale_wh = s.int("scale_wh", 0)
    if scale_wh:
        if prev.c != 1 or (prev.h, prev.w) != (frm.h, frm.w):
            raise s.error(f"scale_wh=1 needs the previous layer to be 1 x {frm.h} x {frm.w} (one factor "
                          f"per pixel of layer {frm_index}), it is {prev.c} x {prev.h} x {prev.w}", "scale_wh")
    elif (prev.h, prev.w) != (1, 1) or prev.c != frm.c:
        raise s.error(f"needs the previous layer to be {frm.c} x 1 x 1 (one factor per channel of layer "
                      f"{frm_index}), it is {prev.c} x {prev.h} x {prev.w}", "from")
    act = _activation(s)
    return LayerSpec("scale_channels", (ctx.prev_index, frm_index), frm, lambda: ScaleChannels(act),
                     flops=float(frm.numel), label="scale Layer", detail=f"{frm_index:5d}")


@register("sam")
def build_sam(s, ctx):
    frm_index = _one_from(s, ctx)
    prev, frm = ctx.prev, ctx.shape_of(frm_index)
    if prev != frm:
        raise s.error(f"layer {frm_index} is {frm}, the previous layer {prev}: [sam] multiplies "
                      "element by element", "from")
    act = _activation(s)
    # forward_sam_layer: previous * from, element by element (ScaleChannels broadcasts nothing here)
    return LayerSpec("sam", (ctx.prev_index, frm_index), frm, lambda: ScaleChannels(act),
                     flops=float(frm.numel), label="sam", detail=f"{frm_index:5d}")


class Implicit(nn.Module):
    """``forward_implicit_layer``: learned values (filters x atoms x 1), the same for every
    image; the input only gives the batch size. Darknet initialises them to
    ``mean + uniform(-std, std)``."""

    def __init__(self, filters, atoms, mean, std):
        super().__init__()
        self.mean, self.std = mean, std
        self.weights = nn.Parameter(torch.empty(filters, atoms, 1))

    def reset_parameters(self):
        with torch.no_grad():
            self.weights.uniform_(-self.std, self.std).add_(self.mean)

    def forward(self, x):
        return self.weights.expand(x.shape[0], *self.weights.shape)

    def blobs(self):
        return [Blob("weights", self.weights)]


@register("implicit")
def build_implicit(s, ctx):
    mean, std = s.float("mean", 0.0), s.float("std", 0.2)
    filters = s.int("filters", 128, minimum=1)
    atoms = s.int("atoms", 1, minimum=1)
    out = Shape(filters, atoms, 1)
    return LayerSpec("implicit", (ctx.prev_index,), out, lambda: Implicit(filters, atoms, mean, std),
                     n_params=out.numel, label="implicit", detail=f"{filters:5d} x {atoms}")


class YolorImplicit(Implicit):
    """YOLOR's ``ImplicitA`` (``mean`` 0) / ``ImplicitM`` (``mean`` 1): ``filters`` learned values
    (filters x 1 x 1), initialised ~ N(mean, 0.02); a weights file holds the ``filters`` floats
    at the layer's place (DeepStream-Yolo's ``implicitLayer`` reads them there)."""

    def reset_parameters(self):
        with torch.no_grad():
            self.weights.normal_(self.mean, self.std)


def _build_yolor_implicit(mean, kind):
    def build(s, ctx):
        filters = s.int("filters", minimum=1)
        return LayerSpec(kind, (ctx.prev_index,), Shape(filters, 1, 1),
                         lambda: YolorImplicit(filters, 1, mean, 0.02),
                         n_params=filters, label=kind, detail=f"{filters:5d}")
    return build


register("implicit_add")(_build_yolor_implicit(0.0, "implicit_add"))
register("implicit_mul")(_build_yolor_implicit(1.0, "implicit_mul"))


class ChannelOp(nn.Module):
    """YOLOR's ``ShiftChannel`` (``from`` output added to the previous one, broadcast) and
    ``ControlChannel`` (multiplied)."""

    def __init__(self, multiply):
        super().__init__()
        self.multiply = multiply

    def forward(self, prev, frm):
        return prev * frm if self.multiply else prev + frm


def _build_channel_op(multiply, kind):
    def build(s, ctx):
        frm_index = _one_from(s, ctx)
        prev, frm = ctx.prev, ctx.shape_of(frm_index)
        if any(f not in (p, 1) for f, p in zip((frm.c, frm.h, frm.w), (prev.c, prev.h, prev.w))):
            raise s.error(f"layer {frm_index} ({frm.c} x {frm.h} x {frm.w}) does not broadcast to the previous "
                          f"layer's {prev.c} x {prev.h} x {prev.w} (YOLOR's expand_as)", "from")
        return LayerSpec(kind, (ctx.prev_index, frm_index), prev, lambda: ChannelOp(multiply),
                         flops=float(prev.numel), label=kind, detail=f"{frm_index:5d}")
    return build


register("shift_channels")(_build_channel_op(False, "shift_channels"))
register("control_channels")(_build_channel_op(True, "control_channels"))


class Empty(nn.Module):
    def forward(self, x):
        return x


@register("empty", "silence")
def build_empty(s, ctx):
    if ctx.index == 0:
        raise s.error("cannot be the first layer: Darknet points its output at the previous layer's")
    return LayerSpec("empty", (ctx.prev_index,), ctx.prev, Empty, label="empty")
