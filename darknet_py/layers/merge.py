"""[route] (concatenate earlier outputs) and [shortcut] (weighted sum with an earlier output)."""
from __future__ import annotations

import torch
from torch import nn

from ..activations import Activation, read_activation
from ..registry import LayerSpec, Shape, register


class Route(nn.Module):
    def forward(self, *xs):
        return xs[0] if len(xs) == 1 else torch.cat(xs, 1)


@register("route")
def build_route(s, ctx):
    sources = tuple(ctx.resolve(s, "layers", i) for i in s.ints("layers"))
    shapes = [ctx.shape_of(i) for i in sources]
    first = shapes[0]
    for i, sh in zip(sources, shapes):
        if (sh.h, sh.w) != (first.h, first.w):
            raise s.error(f"layer {i} is {sh.w} x {sh.h}, layer {sources[0]} is {first.w} x {first.h}: "
                          "routed layers must have the same width and height", "layers")
    out = Shape(sum(sh.c for sh in shapes), first.h, first.w)
    return LayerSpec("route", sources, out, Route, label="route",
                     detail=" " + " ".join(str(i) for i in sources))


class Shortcut(nn.Module):
    """``activation(alpha * previous + beta * from)`` as ``shortcut_cpu`` computes it.

    When the two shapes differ, Darknet adds the overlapping channels at a stride (``from`` is
    sampled every ``w_from/w_out`` cells, or spread every ``w_out/w_from``); the rest of the
    previous output passes through unscaled.
    """

    def __init__(self, alpha, beta, activation):
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.activation = Activation(activation)

    def _scaled(self, x, scale):
        return x if scale == 1 else x * scale

    def forward(self, prev, frm):
        if prev.shape == frm.shape:
            return self.activation(self._scaled(prev, self.alpha) + self._scaled(frm, self.beta))
        (_, pc, ph, pw), (_, fc, fh, fw) = prev.shape, frm.shape
        st, sa = max(1, fw // pw), max(1, pw // fw)
        c, h, w = min(pc, fc), min(ph, fh), min(pw, fw)
        out = prev.clone()
        region = (slice(None), slice(0, c), slice(0, h * sa, sa), slice(0, w * sa, sa))
        add = frm[:, :c, 0:h * st:st, 0:w * st:st]
        out[region] = self._scaled(prev[region], self.alpha) + self._scaled(add, self.beta)
        return self.activation(out)


@register("shortcut")
def build_shortcut(s, ctx):
    froms = s.ints("from")
    if len(froms) != 1:
        raise s.error("a shortcut from several layers (AlexeyAB) is not supported yet", "from")
    frm_index = ctx.resolve(s, "from", froms[0])
    prev, frm = ctx.prev, ctx.shape_of(frm_index)
    stride, sample = frm.w // prev.w, prev.w // frm.w
    if stride != frm.h // prev.h or sample != prev.h // frm.h:
        raise s.error(f"layer {frm_index} ({frm}) and the previous layer ({prev}) differ in aspect: "
                      "Darknet's shortcut needs the same ratio in width and height", "from")
    act = read_activation(s, "linear")
    alpha, beta = s.float("alpha", 1.0), s.float("beta", 1.0)
    return LayerSpec("shortcut", (ctx.prev_index, frm_index), prev,
                     lambda: Shortcut(alpha, beta, act),
                     label="res", detail=f"{frm_index:5d}")
