"""[route] (concatenate earlier outputs) and [shortcut] (weighted sum with earlier outputs)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..activations import Activation, read_activation
from ..registry import LayerSpec, Shape, register
from .base import Blob


class Route(nn.Module):
    """Concatenation along channels; with AlexeyAB's ``groups``, each input contributes only
    its ``group_id``-th of ``groups`` equal channel slices (``forward_route_layer``)."""

    def __init__(self, groups=1, group_id=0):
        super().__init__()
        self.groups, self.group_id = groups, group_id

    def forward(self, *xs):
        if self.groups > 1:
            xs = [x.chunk(self.groups, 1)[self.group_id] for x in xs]
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
    groups = s.int("groups", 1, minimum=1)
    group_id = s.int("group_id", 0, minimum=0)
    if group_id >= groups:
        raise s.error(f"must be below groups={groups}, got {group_id}", "group_id")
    for i, sh in zip(sources, shapes):
        if sh.c % groups:
            # Darknet copies a flat 1/groups of each input: a channel slice only when it divides
            raise s.error(f"layer {i} has {sh.c} channels, not divisible by groups={groups}", "groups")
    s.ignore("stream", "wait_stream")  # GPU stream hints
    out = Shape(sum(sh.c for sh in shapes) // groups, first.h, first.w)
    part = f" {group_id}/{groups}" if groups > 1 else ""
    return LayerSpec("route", sources, out, lambda: Route(groups, group_id), label="route",
                     detail=" " + " ".join(str(i) for i in sources) + part)


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


WEIGHTS_TYPES = ("none", "per_feature", "per_layer", "per_channel")
WEIGHTS_NORMALIZATIONS = ("none", "relu", "avg_relu", "softmax")


class MultiShortcut(nn.Module):
    """AlexeyAB's [shortcut] (``shortcut_multilayer_cpu``): the previous output plus each ``from``
    output, added element by element over their first ``min(sizes)`` values of the flat
    (c, h, w) layout. With ``weights_type`` each input is scaled by its own weight, one per input
    (per_feature, per_layer) or one per input and channel (per_channel), stored (inputs, step)
    in the weights file and normalised across the inputs by ``relu`` (``avg_relu``) or
    ``softmax``, each with an epsilon of 0.0001 in the denominator."""

    def __init__(self, n_from, channels, weights_type, normalization, activation):
        super().__init__()
        self.normalization = normalization
        self.activation = Activation(activation)
        step = {"none": 0, "per_feature": 1, "per_layer": 1, "per_channel": channels}[weights_type]
        self.weights = nn.Parameter(torch.empty(n_from + 1, step)) if step else None

    def reset_parameters(self):
        if self.weights is not None:
            with torch.no_grad():
                self.weights.fill_(1.0)  # make_shortcut_layer

    def _input_weights(self):
        """(inputs, step): the weights after normalisation across the inputs."""
        w = self.weights
        if self.normalization in ("relu", "avg_relu"):
            w = F.relu(w)
            return w / (0.0001 + w.sum(0))
        if self.normalization == "softmax":
            e = torch.exp(w - w.amax(0))
            return e / (0.0001 + e.sum(0))
        return w

    def forward(self, prev, *froms):
        b, c, h, w = prev.shape
        weights = None if self.weights is None else self._input_weights()

        def scaled(x, i):
            if weights is None:
                return x
            return x * (weights[i].view(1, -1, 1, 1) if weights.shape[1] > 1 else weights[i])

        out = scaled(prev, 0)
        for i, frm in enumerate(froms, start=1):
            if frm.shape == prev.shape:
                out = out + scaled(frm, i)
                continue
            # flat prefix: src_i < add_outputs; the weight is the one of src_i's channel in prev
            n = min(frm[0].numel(), c * h * w)
            add = frm.reshape(b, -1)[:, :n]
            if weights is not None:
                per = weights[i].repeat_interleave(c * h * w // weights.shape[1]) if weights.shape[1] > 1 \
                    else weights[i].expand(c * h * w)
                add = add * per[:n]
            flat = out.reshape(b, -1)
            out = torch.cat([flat[:, :n] + add, flat[:, n:]], 1).view(b, c, h, w)
        return self.activation(out)

    def blobs(self):
        return [] if self.weights is None else [Blob("weights", self.weights)]


@register("shortcut")
def build_shortcut(s, ctx):
    froms = [ctx.resolve(s, "from", i) for i in s.ints("from")]
    weights_type = s.str("weights_type", "none")
    if weights_type not in WEIGHTS_TYPES:
        raise s.error(f"unknown weights_type '{weights_type}' (known: {', '.join(WEIGHTS_TYPES)})", "weights_type")
    normalization = s.str("weights_normalization", "none")
    if normalization not in WEIGHTS_NORMALIZATIONS:
        raise s.error(f"unknown weights_normalization '{normalization}' (known: "
                      f"{', '.join(WEIGHTS_NORMALIZATIONS)})", "weights_normalization")
    if len(froms) > 1 or weights_type != "none" or ctx.net.fork == "alexeyab":
        return _build_multi_shortcut(s, ctx, froms, weights_type, normalization)
    return _build_shortcut(s, ctx, froms[0])


def _build_multi_shortcut(s, ctx, froms, weights_type, normalization):
    prev = ctx.prev
    act = read_activation(s, "linear")
    step = {"none": 0, "per_feature": 1, "per_layer": 1, "per_channel": prev.c}[weights_type]
    n_weights = (len(froms) + 1) * step
    return LayerSpec("shortcut", (ctx.prev_index, *froms), prev,
                     lambda: MultiShortcut(len(froms), prev.c, weights_type, normalization, act),
                     n_params=n_weights, flops=float(prev.numel * len(froms) * (2 if step else 1)),
                     label="res", detail=" ".join(f"{i:5d}" for i in froms))


def _build_shortcut(s, ctx, frm_index):
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
