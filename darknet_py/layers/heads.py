"""Detection heads: [yolo] (v3), [region] (v2) and [detection] (v1).

In eval mode each returns what Darknet stores in ``l.output``; in training mode the raw input
reshaped the same way, so that losses can work on logits.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import LayerSpec, register


def read_anchors(s, count):
    """``anchors`` must hold exactly ``count`` numbers (Darknet would read past its buffer)."""
    if not s.has("anchors"):
        s.ignore("anchors")
        return [0.5] * count  # Darknet's default biases: calloc'd then set to .5
    anchors = s.floats("anchors")
    if len(anchors) != count:
        raise s.error(f"expected {count} numbers (2 per anchor), got {len(anchors)}", "anchors")
    return anchors


def check_channels(s, ctx, per_anchor, n):
    if ctx.prev.c != per_anchor * n:
        raise s.error(f"the layer before has {ctx.prev.c} channels, this head needs "
                      f"{n} anchors x {per_anchor} = {per_anchor * n}", "classes")


class Yolo(nn.Module):
    def __init__(self, n, classes, anchors, mask, settings):
        super().__init__()
        self.n, self.classes = n, classes
        self.anchors = [(anchors[2 * i], anchors[2 * i + 1]) for i in range(len(anchors) // 2)]
        self.mask = mask
        for key, value in settings.items():
            setattr(self, key, value)

    def forward(self, x):
        b, _, h, w = x.shape
        x = x.view(b, self.n, 5 + self.classes, h, w)
        if self.training:
            return x
        return torch.cat([torch.sigmoid(x[:, :, :2]), x[:, :, 2:4], torch.sigmoid(x[:, :, 4:])], 2)


@register("yolo")
def build_yolo(s, ctx):
    classes = s.int("classes", 20)
    total = s.int("num", 1)
    if classes < 1 or total < 1:
        raise s.error("classes and num must be >= 1")
    mask = s.ints("mask", list(range(total)))
    for m in mask:
        if not 0 <= m < total:
            raise s.error(f"mask entry {m} is not an anchor index 0..{total - 1}", "mask")
    anchors = read_anchors(s, 2 * total)
    check_channels(s, ctx, 5 + classes, len(mask))
    settings = dict(max_boxes=s.int("max", 90), jitter=s.float("jitter", 0.2),
                    ignore_thresh=s.float("ignore_thresh", 0.5), truth_thresh=s.float("truth_thresh", 1.0),
                    random=s.float("random", 0.0))
    if s.has("map"):
        raise s.error("class maps are not supported", "map")
    n = len(mask)
    return LayerSpec("yolo", (ctx.prev_index,), ctx.prev,
                     lambda: Yolo(n, classes, anchors, mask, settings), label="yolo", is_head=True)


class Region(nn.Module):
    def __init__(self, n, classes, coords, anchors, softmax, background, settings):
        super().__init__()
        self.n, self.classes, self.coords = n, classes, coords
        self.anchors = [(anchors[2 * i], anchors[2 * i + 1]) for i in range(n)]
        self.softmax, self.background = softmax, background
        for key, value in settings.items():
            setattr(self, key, value)

    def forward(self, x):
        b, _, h, w = x.shape
        x = x.view(b, self.n, self.coords + 1 + self.classes, h, w)
        if self.training:
            return x
        c = self.coords
        parts = [torch.sigmoid(x[:, :, :2]), x[:, :, 2:c]]
        parts.append(x[:, :, c:c + 1] if self.background else torch.sigmoid(x[:, :, c:c + 1]))
        if self.softmax:  # softmax over classes (and the background slot when there is one)
            start = c + (0 if self.background else 1)
            if self.background:
                parts.pop()
            parts.append(torch.softmax(x[:, :, start:], 2))
        else:
            parts.append(torch.sigmoid(x[:, :, c + 1:]))
        return torch.cat(parts, 2)


@register("region")
def build_region(s, ctx):
    coords, classes, n = s.int("coords", 4), s.int("classes", 20), s.int("num", 1)
    if coords < 4 or classes < 1 or n < 1:
        raise s.error("coords must be >= 4, classes and num >= 1")
    check_channels(s, ctx, coords + 1 + classes, n)
    anchors = read_anchors(s, 2 * n)
    softmax, background = bool(s.int("softmax", 0)), bool(s.int("background", 0))
    if s.has("tree") or s.has("map"):
        raise s.error("YOLO9000 trees and class maps are not supported")
    settings = dict(
        log=s.int("log", 0), sqrt=s.int("sqrt", 0), max_boxes=s.int("max", 30),
        jitter=s.float("jitter", 0.2), rescore=s.int("rescore", 0), thresh=s.float("thresh", 0.5),
        classfix=s.int("classfix", 0), absolute=s.int("absolute", 0), random=s.int("random", 0),
        coord_scale=s.float("coord_scale", 1.0), object_scale=s.float("object_scale", 1.0),
        noobject_scale=s.float("noobject_scale", 1.0), mask_scale=s.float("mask_scale", 1.0),
        class_scale=s.float("class_scale", 1.0), bias_match=s.int("bias_match", 0))
    return LayerSpec("region", (ctx.prev_index,), ctx.prev,
                     lambda: Region(n, classes, coords, anchors, softmax, background, settings),
                     label="region", is_head=True)


class Detection(nn.Module):
    """YOLOv1: flat output [side*side*classes][side*side*n confidences][side*side*n*coords]."""

    def __init__(self, side, classes, softmax, settings):
        super().__init__()
        self.side, self.classes, self.softmax = side, classes, softmax
        for key, value in settings.items():
            setattr(self, key, value)

    def forward(self, x):
        x = x.flatten(1)
        if self.softmax and not self.training:
            cells = self.side * self.side * self.classes
            probs = torch.softmax(x[:, :cells].view(x.shape[0], -1, self.classes), -1)
            x = torch.cat([probs.flatten(1), x[:, cells:]], 1)
        return x


@register("detection")
def build_detection(s, ctx):
    coords, classes, rescore = s.int("coords", 1), s.int("classes", 1), s.int("rescore", 0)
    n, side = s.int("num", 1), s.int("side", 7)
    if min(coords, classes, n, side) < 1:
        raise s.error("coords, classes, num and side must be >= 1")
    expected = side * side * ((1 + coords) * n + classes)
    if ctx.prev.numel != expected:
        raise s.error(f"the layer before yields {ctx.prev.numel} values, side*side*((1+coords)*num+classes)"
                      f" = {expected}", "side")
    softmax = bool(s.int("softmax", 0))
    settings = dict(
        n=n, coords=coords, rescore=rescore, sqrt=s.int("sqrt", 0), max_boxes=s.int("max", 90),
        coord_scale=s.float("coord_scale", 1.0), forced=s.int("forced", 0),
        object_scale=s.float("object_scale", 1.0), noobject_scale=s.float("noobject_scale", 1.0),
        class_scale=s.float("class_scale", 1.0), jitter=s.float("jitter", 0.2),
        random=s.int("random", 0), reorg=s.int("reorg", 0))
    return LayerSpec("detection", (ctx.prev_index,), ctx.prev,
                     lambda: Detection(side, classes, softmax, settings), label="detection", is_head=True)
