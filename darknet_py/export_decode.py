"""Darknet's box decoding as a PyTorch module for ONNX export (``export onnx --decode``): the
network, ``get_yolo_box`` for every [yolo] head, ``correct_yolo_boxes`` for the original image's
size (an input of the graph) and, optionally, NMS as ONNX ``NonMaxSuppression``; so that
onnxruntime gives boxes directly.

Inputs: ``input`` (batch, 3, h, w), the network input as :func:`darknet_py.detect` makes it
(letterboxed or resized, :func:`darknet_py.detect.network_input`); for a letterboxed input
also ``image_size`` (batch, 2) float, the original images' width and height (a resized input
needs no correction, and the graph has no such input). Outputs: ``boxes`` (batch, N, 4) centre x, y,
w, h relative to the original image, in Darknet's list order (heads in cfg order, cells
row by row, anchors inside); ``objectness`` (batch, N); ``scores`` (batch, N, classes) =
objectness x class probability, 0 where the objectness is not above ``thresh`` (Darknet's
``prob``, before the per-class threshold and NMS). With NMS also ``selected`` (K, 3): the
[batch, class, box] triples ``NonMaxSuppression`` keeps (score above ``thresh``, IoU above
``nms`` suppresses), which are the (box, class) pairs ``detect`` reports above ``thresh``.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import DarknetError
from .layers.heads import Yolo

DECODED_OUTPUTS = ("boxes", "objectness", "scores")
SELECTED = "selected"


def _greedy_nms(boxes, scores, iou_thresh, score_thresh):
    """Per image and class: boxes by score, each one above ``score_thresh`` suppressing the later
    ones whose IoU with it is above ``iou_thresh`` (as ``do_nms_sort``). Eager PyTorch only;
    the exported graph has ``NonMaxSuppression`` in its place."""
    selected = []
    for b in range(boxes.shape[0]):
        corners = torch.cat([boxes[b, :, :2] - boxes[b, :, 2:] / 2, boxes[b, :, :2] + boxes[b, :, 2:] / 2], 1)
        area = boxes[b, :, 2] * boxes[b, :, 3]
        for c in range(scores.shape[1]):
            order = torch.argsort(scores[b, c], descending=True, stable=True)
            order = order[scores[b, c, order] > score_thresh]
            alive = torch.ones(len(order), dtype=torch.bool)
            for k in range(len(order)):
                if not alive[k]:
                    continue
                i = order[k]
                selected.append((b, c, int(i)))
                rest = order[k + 1:]
                lt = torch.maximum(corners[i, :2], corners[rest, :2])
                rb = torch.minimum(corners[i, 2:], corners[rest, 2:])
                inter = (rb - lt).clamp(min=0).prod(1)
                iou = inter / (area[i] + area[rest] - inter)
                alive[k + 1:] &= ~(iou > iou_thresh)
    return torch.tensor(selected, dtype=torch.int64).reshape(-1, 3)


class _NonMaxSuppression(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes, scores, max_boxes, iou_thresh, score_thresh):
        return _greedy_nms(boxes, scores, float(iou_thresh), float(score_thresh))

    @staticmethod
    def symbolic(g, boxes, scores, max_boxes, iou_thresh, score_thresh):
        return g.op("NonMaxSuppression", boxes, scores, max_boxes, iou_thresh, score_thresh, center_point_box_i=1)


class DecodedDetector(nn.Module):
    """``net`` followed by Darknet's decoding (see the module's docstring); ``letterbox``: whether
    ``input`` was letterboxed (:func:`darknet_py.detect.uses_letterbox` gives the network's own
    rule); ``nms``: the IoU threshold of an added ``NonMaxSuppression``, or None."""

    def __init__(self, net, letterbox: bool, thresh: float = 0.25, nms: float | None = None):
        super().__init__()
        self.net, self.letterbox, self.thresh, self.nms = net, bool(letterbox), float(thresh), nms
        self.heads = []
        for index in net.outputs:
            layer = net.layers[index]
            if type(layer) is not Yolo:
                raise DarknetError(f"layer {index} ({net.describe(index)}): --decode writes [yolo] heads' "
                                   "decoding only; export without --decode and decode outside")
            self.heads.append(layer)

    def _decode(self, out, head):
        b, a, e, h, w = out.shape
        net_w, net_h = self.net.input_size
        o = out.permute(0, 3, 4, 1, 2).reshape(b, h * w * a, e)  # Darknet's order: cell, then anchor
        cell = torch.arange(h * w, dtype=out.dtype).repeat_interleave(a)
        col, row = cell.remainder(w), torch.div(cell, w, rounding_mode="floor")
        anchors = torch.tensor([head.anchors[m] for m in head.mask], dtype=out.dtype).repeat(h * w, 1)
        x, y = (col + o[..., 0]) / w, (row + o[..., 1]) / h
        if head.settings.new_coords:
            bw, bh = o[..., 2] * o[..., 2] * 4 * anchors[:, 0] / net_w, o[..., 3] * o[..., 3] * 4 * anchors[:, 1] / net_h
        else:
            bw, bh = torch.exp(o[..., 2]) * anchors[:, 0] / net_w, torch.exp(o[..., 3]) * anchors[:, 1] / net_h
        return torch.stack([x, y, bw, bh], -1), o[..., 4], o[..., 5:]

    def _correct(self, boxes, image_size):
        """``correct_yolo_boxes`` (relative=1) for a letterboxed input; a resized one needs none."""
        if not self.letterbox:
            return boxes
        net_w, net_h = self.net.input_size
        im_w, im_h = image_size[:, 0:1], image_size[:, 1:2]
        narrow = (net_w / im_w) < (net_h / im_h)
        new_w = torch.where(narrow, torch.full_like(im_w, net_w), torch.floor(im_w * net_h / im_h))
        new_h = torch.where(narrow, torch.floor(im_h * net_w / im_w), torch.full_like(im_h, net_h))
        x = (boxes[..., 0] - (net_w - new_w) / 2 / net_w) / (new_w / net_w)
        y = (boxes[..., 1] - (net_h - new_h) / 2 / net_h) / (new_h / net_h)
        return torch.stack([x, y, boxes[..., 2] * net_w / new_w, boxes[..., 3] * net_h / new_h], -1)

    def forward(self, x, image_size):
        parts = [self._decode(out, head) for out, head in zip(self.net(x), self.heads)]
        boxes = self._correct(torch.cat([p[0] for p in parts], 1), image_size)
        objectness = torch.cat([p[1] for p in parts], 1)
        classes = torch.cat([p[2] for p in parts], 1)
        scores = torch.where((objectness > self.thresh)[..., None], objectness[..., None] * classes,
                             torch.zeros_like(classes))
        if self.nms is None:
            return boxes, objectness, scores
        selected = _NonMaxSuppression.apply(boxes, scores.transpose(1, 2).contiguous(),
                                            torch.tensor([boxes.shape[1]], dtype=torch.int64),
                                            torch.tensor([self.nms], dtype=torch.float32),
                                            torch.tensor([self.thresh], dtype=torch.float32))
        return boxes, objectness, scores, selected
