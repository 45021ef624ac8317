"""Darknet's training deltas for the detection heads, computed without autograd.

Darknet trains its heads by filling ``l.delta`` in the forward pass and copying it unchanged
into the previous layer's delta, so ``delta`` is the NEGATIVE gradient of the loss with respect
to the head's raw input and Darknet's cost is ``sum(delta**2)``. Here the same delta is
computed and the trainer back-propagates ``-(delta * raw).sum()``, whose gradient with respect
to ``raw`` is ``-delta``.

Truths are a ``(batch, T, 6)`` tensor of rows ``x, y, w, h, class, weight`` relative to the
network input; as in Darknet, the first row whose x is 0 ends an image's list. ``weight`` (1, or
mixup's blend ratio) scales every delta written on behalf of a truth, never the no-object ones.

One module per family: ``pjreddie`` ([yolo], [region]), ``alexeyab`` (AlexeyAB's [yolo]),
``gaussian`` ([Gaussian_yolo]); ``boxes`` and ``common`` hold what they share. ``DELTAS`` maps a
head type to its delta function; a new trainable head is one entry there.
"""
from __future__ import annotations

from ...errors import DarknetError
from ...layers.gaussian_yolo import GaussianYolo
from ...layers.heads import Detection, Region, Yolo
from .alexeyab import yolo_delta_alexeyab
from .common import HeadStats
from .gaussian import gaussian_yolo_delta
from .pjreddie import region_delta, yolo_delta

__all__ = ["DELTAS", "HeadStats", "head_delta", "trainable"]


def _yolo(layer, x, truths, net_w, net_h, seen, label_smoothing):
    """pjreddie's deltas, or AlexeyAB's when the section sets any of its options."""
    delta = yolo_delta_alexeyab if layer.settings.alexeyab else yolo_delta
    return delta(layer, x, truths, net_w, net_h, label_smoothing)


def _region(layer, x, truths, net_w, net_h, seen, label_smoothing):
    return region_delta(layer, x, truths, seen, label_smoothing)


def _gaussian_yolo(layer, x, truths, net_w, net_h, seen, label_smoothing):
    return gaussian_yolo_delta(layer, x, truths, net_w, net_h, label_smoothing)


# head type -> f(layer, raw x, truths, net_w, net_h, seen, label_smoothing) -> (delta, HeadStats)
DELTAS = {Yolo: _yolo, Region: _region, GaussianYolo: _gaussian_yolo}
UNTRAINABLE = {Detection: "[detection] (YOLOv1)"}  # heads that build but have no deltas here


def trainable(layer) -> bool:
    return type(layer) in DELTAS


def head_delta(layer, x, truths, net_w, net_h, seen, label_smoothing=0.0):
    """Darknet's delta and printed figures for any trainable head. ``seen`` is Darknet's
    net.seen during this forward (already counting this mini-batch)."""
    delta = DELTAS.get(type(layer))
    if delta is None:
        name = UNTRAINABLE.get(type(layer), type(layer).__name__)
        raise DarknetError(f"training {name} heads is not supported")
    return delta(layer, x, truths, net_w, net_h, seen, label_smoothing)
