"""[Gaussian_yolo] (Gaussian YOLOv3, AlexeyAB's gaussian_yolo_layer.c): a [yolo] whose box is four
Gaussians, mean and uncertainty each.

Per anchor the entries are ``x, sigma_x, y, sigma_y, w, sigma_w, h, sigma_h, objectness,
classes...``. The layer has no weights of its own (the conv before it holds them all).
"""
from __future__ import annotations

import torch

from ..registry import LayerSpec, register
from .heads import AnchorHead, read_yolo, scale_xy

BOX_ENTRIES = 8


class GaussianYolo(AnchorHead):
    box_entries = BOX_ENTRIES

    def activate(self, x):
        """``l.output`` from the raw (batch, n, 9 + classes, h, w) input."""
        s = torch.sigmoid(x)
        parts = [scale_xy(s[:, :, 0:1], self.settings.scale_x_y), s[:, :, 1:2], scale_xy(s[:, :, 2:3], self.settings.scale_x_y),
                 s[:, :, 3:4], x[:, :, 4:5], s[:, :, 5:6], x[:, :, 6:7], s[:, :, 7:]]
        return torch.cat(parts, 2)


@register("Gaussian_yolo")
def build_gaussian_yolo(s, ctx):
    classes, anchors, mask, settings = read_yolo(s, ctx, BOX_ENTRIES + 1, gaussian=True)
    n = len(mask)
    return LayerSpec("Gaussian_yolo", (ctx.prev_index,), ctx.prev,
                     lambda: GaussianYolo(n, classes, anchors, mask, settings), label="Gaussian_yolo",
                     is_head=True)
