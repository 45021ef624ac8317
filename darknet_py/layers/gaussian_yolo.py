"""[Gaussian_yolo] (Gaussian YOLOv3, AlexeyAB's gaussian_yolo_layer.c): a [yolo] whose box is four
Gaussians, mean and uncertainty each.

Per anchor the entries are ``x, sigma_x, y, sigma_y, w, sigma_w, h, sigma_h, objectness,
classes...``. The layer has no weights of its own (the conv before it holds them all).
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import LayerSpec, register
from .heads import read_yolo, scale_xy

BOX_ENTRIES = 8


class GaussianYolo(nn.Module):
    def __init__(self, n, classes, anchors, mask, settings):
        super().__init__()
        self.n, self.classes = n, classes
        self.anchors = [(anchors[2 * i], anchors[2 * i + 1]) for i in range(len(anchors) // 2)]
        self.mask = mask
        for key, value in settings.items():
            setattr(self, key, value)

    def forward(self, x):
        b, _, h, w = x.shape
        x = x.view(b, self.n, BOX_ENTRIES + 1 + self.classes, h, w)
        return x if self.training else self.activate(x)

    def activate(self, x):
        """``l.output`` from the raw (batch, n, 9 + classes, h, w) input."""
        s = torch.sigmoid(x)
        parts = [scale_xy(s[:, :, 0:1], self.scale_x_y), s[:, :, 1:2], scale_xy(s[:, :, 2:3], self.scale_x_y),
                 s[:, :, 3:4], x[:, :, 4:5], s[:, :, 5:6], x[:, :, 6:7], s[:, :, 7:]]
        return torch.cat(parts, 2)


@register("Gaussian_yolo")
def build_gaussian_yolo(s, ctx):
    classes, anchors, mask, settings = read_yolo(s, ctx, BOX_ENTRIES + 1, gaussian=True)
    n = len(mask)
    return LayerSpec("Gaussian_yolo", (ctx.prev_index,), ctx.prev,
                     lambda: GaussianYolo(n, classes, anchors, mask, settings), label="Gaussian_yolo",
                     is_head=True)
