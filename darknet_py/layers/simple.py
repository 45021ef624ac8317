"""[dropout], [softmax] and [cost]: layers that keep their input's shape."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import LayerSpec, register

COST_TYPES = ("sse", "seg", "masked", "smooth", "L1", "wgan")


class Dropout(nn.Module):
    """Inverted dropout in training, the identity otherwise (both forks). AlexeyAB's
    ``dropblock`` (drop square blocks, a CUDA kernel only) reads and runs for inference; its
    training is not implemented, and the trainer refuses it at setup (``where``)."""

    def __init__(self, probability, dropblock=False, where=""):
        super().__init__()
        self.probability, self.dropblock, self.where = probability, dropblock, where

    def forward(self, x):
        if self.training and self.dropblock:
            raise NotImplementedError(f"[dropout] dropblock=1 at {self.where}: DropBlock training is not "
                                      "implemented (inference is the identity and runs)")
        return F.dropout(x, self.probability, self.training)


@register("dropout")
def build_dropout(s, ctx):
    p = s.float("probability", 0.2 if ctx.net.fork == "alexeyab" else 0.5)  # each parser's default
    if not 0 <= p < 1:
        raise s.error(f"must be in [0, 1), got {p}", "probability")
    dropblock = s.int("dropblock", 0)
    if dropblock not in (0, 1):
        raise s.error(f"must be 0 or 1, got {dropblock}", "dropblock")
    if not 0 <= s.float("dropblock_size_rel", 0.0) <= 1:
        raise s.error("must be in [0, 1] (a fraction of the map's side)", "dropblock_size_rel")
    if s.int("dropblock_size_abs", 0) < 0:
        raise s.error("must be >= 0 (pixels)", "dropblock_size_abs")
    where = f"{s.file}:{s.line}"
    return LayerSpec("dropout", (ctx.prev_index,), ctx.prev, lambda: Dropout(p, bool(dropblock), where),
                     label="dropout", detail=f"      p = {p:.2f}{'  dropblock' if dropblock else ''}")


class Softmax(nn.Module):
    """``softmax_cpu`` over ``groups`` contiguous runs of the flattened input, at a temperature."""

    def __init__(self, groups, temperature):
        super().__init__()
        self.groups, self.temperature = groups, temperature

    def forward(self, x):
        flat = x.reshape(x.shape[0], self.groups, -1)
        return torch.softmax(flat / self.temperature, -1).view(x.shape)


@register("softmax", "soft")
def build_softmax(s, ctx):
    inp = ctx.prev
    groups = s.int("groups", 1)
    temperature = s.float("temperature", 1.0)
    if groups < 1 or inp.numel % groups:
        raise s.error(f"{inp.numel} inputs do not split into {groups} groups", "groups")
    if temperature <= 0:
        raise s.error(f"must be positive, got {temperature}", "temperature")
    if s.has("tree"):
        raise s.error("hierarchical softmax (YOLO9000 trees) is not supported", "tree")
    s.ignore("spatial", "noloss")
    return LayerSpec("softmax", (ctx.prev_index,), inp, lambda: Softmax(groups, temperature),
                     label="softmax", detail=f"{inp.numel:5d}")


class Cost(nn.Module):
    """Passes its input through; the cost itself is computed by training code from ``cost_type``."""

    def __init__(self, cost_type, scale, ratio, noobj, thresh):
        super().__init__()
        self.cost_type, self.scale, self.ratio, self.noobject_scale, self.thresh = \
            cost_type, scale, ratio, noobj, thresh

    def forward(self, x):
        return x


@register("cost")
def build_cost(s, ctx):
    cost_type = s.str("type", "sse")
    if cost_type not in COST_TYPES:
        raise s.error(f"unknown cost type '{cost_type}' (known: {', '.join(COST_TYPES)})", "type")
    args = (cost_type, s.float("scale", 1.0), s.float("ratio", 0.0), s.float("noobj", 1.0),
            s.float("thresh", 0.0))
    return LayerSpec("cost", (ctx.prev_index,), ctx.prev, lambda: Cost(*args),
                     label="cost", detail=f"{ctx.prev.numel:5d}")
