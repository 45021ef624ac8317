"""AlexeyAB's forward_gaussian_yolo_layer training branch (src/gaussian_yolo_layer.c), vectorised.

The box is four Gaussians: per anchor ``x, sigma_x, y, sigma_y, w, sigma_w, h, sigma_h``. The
means get the gradient of the Gaussian negative log-likelihood (or, with an ``iou_loss`` other
than mse, the IoU/GIoU/DIoU/CIoU gradient of dx_box_iou) times ``iou_normalizer``, the
uncertainties its gradient times ``uc_normalizer``; all eight are cleared of NaN/inf and clipped
by ``max_delta``. Where it differs from [yolo] (alexeyab.py): ``objectness_smooth`` also
writes the class vector of ignored cells; the truth loop always overwrites objectness; a class
vector is written whole unless its FIRST class entry already holds a delta; and every cell's
eight box deltas are divided by its number of positive class deltas whatever ``iou_thresh`` is.
``yolo_point`` (left_top, right_bottom) makes x, y a corner of the box instead of its centre.

As for [yolo], the deltas are taken against ``l.output`` and passed on unchanged (times
``delta_normalizer``, the GPU build's backward); a truth's weight (mixup) scales what is written
on its behalf, an extension of this project.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from .alexeyab import MATCH_THRESH, Write, assigned_anchors, class_writes, head_inputs
from .boxes import dx_box_iou, iou_of
from .common import HeadStats, best_truth, write_rounds

SIGMA_CONST = 0.3  # added to each sigma in the Gaussian's normaliser
EPSI = 1e-9  # pow(10, -9) in delta_gaussian_yolo_box
log = logging.getLogger(__name__)
CORNER = {"center": 0, "left_top": 1, "right_bottom": -1}  # sign of the half size from x, y to the centre


@dataclass
class GaussianStats(HeadStats):
    """HeadStats plus the split of l.cost that forward_gaussian_yolo_layer prints, per image."""

    class_loss: float
    iou_loss: float
    uc_loss: float


def _boxes(out, ci, cj, anchor_w, anchor_h, lw, lh, net_w, net_h, sign):
    """get_gaussian_yolo_box from the outputs ``out`` (..., 8 box entries first on axis -1)."""
    w = torch.exp(out[..., 4]) * anchor_w / net_w
    h = torch.exp(out[..., 6]) * anchor_h / net_h
    return (ci + out[..., 0]) / lw + sign * w / 2, (cj + out[..., 2]) / lh + sign * h / 2, w, h


def _box_delta(layer, truth, o, ci, cj, anchor_w, anchor_h, lw, lh, net_w, net_h, normalizer, weight):
    """delta_gaussian_yolo_box (accumulate=1) for K writes: the (K, 8) delta to add and the IoU
    it returns (the GIoU when iou_loss is not mse)."""
    sign = CORNER[layer.settings.yolo_point]
    pred = _boxes(o, ci, cj, anchor_w, anchor_h, lw, lh, net_w, net_h, sign)
    scale = 2 - truth[2] * truth[3]
    goal = ((truth[0] - sign * truth[2] / 2) * lw - ci, (truth[1] - sign * truth[3] / 2) * lh - cj,
            torch.log(truth[2] * net_w / anchor_w), torch.log(truth[3] * net_h / anchor_h))
    mean, sigma = [], []
    for k, g in enumerate(goal):
        s = o[:, 2 * k + 1]
        in_exp = (g - o[:, 2 * k]) / s
        in_exp_2 = in_exp * in_exp
        normal = torch.exp(in_exp_2 * -0.5) / (math.sqrt(math.pi * 2) * (s + SIGMA_CONST))
        temp = 0.5 / (normal + EPSI) * normal * scale
        mean.append(temp * in_exp * (1 / s))
        sigma.append(temp * (in_exp_2 / s - 1 / (s + SIGMA_CONST)))
    if layer.settings.iou_loss == "mse":
        iou = iou_of("iou", pred, truth)
    else:
        iou = iou_of("giou", pred, truth)
        pw, ph = (torch.where(v == 0, 1, v) for v in pred[2:])
        mean = dx_box_iou((pred[0], pred[1], pw, ph), truth, layer.settings.iou_loss)
        mean[0], mean[1] = mean[0] - sign * mean[2] / 2, mean[1] - sign * mean[3] / 2
        mean[2], mean[3] = mean[2] * torch.exp(o[:, 4]), mean[3] * torch.exp(o[:, 6])
    d = [v for pair in zip((m * normalizer for m in mean), (s * layer.settings.uc_normalizer for s in sigma)) for v in pair]
    d = torch.nan_to_num(torch.stack(d, 1), nan=0.0, posinf=0.0, neginf=0.0)  # fix_nan_inf
    if math.isfinite(layer.settings.max_delta):
        d = d.clamp(-layer.settings.max_delta, layer.settings.max_delta)
    return d * weight[:, None], iou


def gaussian_yolo_delta(layer, x, truths, net_w, net_h, label_smoothing=0.0):
    """``(delta, stats)`` of forward_gaussian_yolo_layer for raw ``x`` (batch, n, 9 + classes, h, w).
    ``label_smoothing`` applies only when the cfg sets no ``label_smooth_eps``."""
    x, out, t, valid, tcls, anchors, mask, mult_table, (gi, gj), eps = head_inputs(layer, x, truths, label_smoothing)
    b, n, _, lh, lw = x.shape
    obj = out[:, :, 8]
    on = layer.settings.obj_normalizer

    def writes_at(cb, cn, cj, ci, anchor, truth, cls):
        weight, truth = truth[:, 5], tuple(truth.T[:4])
        mult = mult_table[cls]
        o = out[cb, cn, :, cj, ci]
        box, iou = _box_delta(layer, truth, o[:, :8], ci, cj, anchors[anchor, 0], anchors[anchor, 1],
                              lw, lh, net_w, net_h, layer.settings.iou_normalizer * mult, weight)
        full, single, own = class_writes(layer, o[:, 9:], cls, weight, mult, eps)
        return Write(box, mult * on * (1 - o[:, 8]) * weight, full, single, own, o[:, 8], iou, None)

    # loop 1: every cell against its image's truths
    aw, ah = anchors[mask, 0].view(1, n, 1, 1), anchors[mask, 1].view(1, n, 1, 1)
    pred = _boxes(out[:, :, :8].movedim(2, -1), gi, gj, aw, ah, lw, lh, net_w, net_h, CORNER[layer.settings.yolo_point])
    best_iou, best_t = best_truth(*pred, t, valid)
    best_match = torch.where((out[:, :, 9:] > MATCH_THRESH).any(2), best_iou, 0)
    delta = torch.zeros_like(x)
    ignored = best_match > layer.settings.ignore_thresh
    smooth = bool(layer.settings.objectness_smooth)
    delta[:, :, 8] = torch.where(ignored, on * (best_match * best_match - obj) if smooth else 0, on * (0 - obj))
    hit = best_iou > layer.settings.truth_thresh
    # objectness_smooth: ignored cells get the best truth's class vector; truth_thresh cells get it
    # in any case (an ignored cell's own class is rewritten, then set below)
    cb, cn, cj, ci = ((ignored | hit) if smooth else hit).nonzero(as_tuple=True)
    if cb.numel():
        ct = best_t[cb, cn, cj, ci]
        cls = tcls[cb, ct]
        full = class_writes(layer, out[cb, cn, 9:, cj, ci], cls, t[cb, ct, 5], mult_table[cls], eps)[0]
        delta[cb, cn, 9:, cj, ci] = full
    hb, hn, hj, hi = hit.nonzero(as_tuple=True)
    if hb.numel():
        ht = best_t[hb, hn, hj, hi]
        cls = tcls[hb, ht]
        biou = best_iou[hb, hn, hj, hi]
        o = obj[hb, hn, hj, hi]
        delta[hb, hn, 8, hj, hi] = on * ((biou * biou if smooth else 1) - o)
        if smooth:
            delta[hb, hn, 9 + cls, hj, hi] = mult_table[cls] * (biou * biou - out[hb, hn, 9 + cls, hj, hi])
        hit_box = writes_at(hb, hn, hj, hi, mask[hn], t[hb, ht], cls).box
        delta[hb, hn, :8, hj, hi] += hit_box

    wb, wt, wn, mask_of = assigned_anchors(layer, t, valid, anchors, net_w, net_h)
    sign = CORNER[layer.settings.yolo_point]
    tx, ty = t[wb, wt, 0] - sign * t[wb, wt, 2] / 2, t[wb, wt, 1] - sign * t[wb, wt, 3] / 2
    cells = (wb, mask_of[wn], (ty * lh).long().clamp_(0, lh - 1), (tx * lw).long().clamp_(0, lw - 1))
    writes = writes_at(*cells, wn, t[wb, wt], tcls[wb, wt])
    _apply(delta, cells, writes, tcls[wb, wt])

    # averages_gaussian_yolo_deltas: every cell, by its number of positive class deltas
    positives = (delta[:, :, 9:] > 0).sum(2, keepdim=True)
    delta[:, :, :8] = torch.where(positives > 0, delta[:, :, :8] / positives.clamp(min=1), delta[:, :, :8])

    stats = _stats(x, delta, writes, obj)
    log.info("Gaussian_yolo class_loss = %.2f, iou_loss = %.2f, uc_loss = %.2f, total_loss = %.2f",
             stats.class_loss, stats.iou_loss, stats.uc_loss, stats.cost / b)
    if layer.settings.delta_normalizer != 1:
        delta = delta * layer.settings.delta_normalizer
    return delta, stats


def _apply(delta, cells, writes, cls):
    """The truth loop's writes in Darknet's order, one write per cell per round: box deltas add
    up, objectness is overwritten, and a class vector whose first entry already holds a delta
    gets only the own-class value (delta_gaussian_yolo_class tests ``delta[index]``)."""
    for s, (at_b, at_n, at_j, at_i) in write_rounds(cells, delta.shape):
        delta[at_b, at_n, :8, at_j, at_i] += writes.box[s]
        delta[at_b, at_n, 8, at_j, at_i] = writes.obj[s]
        classes = delta[at_b, at_n, 9:, at_j, at_i]
        kept = classes.scatter(1, cls[s, None], writes.single[s, None])
        delta[at_b, at_n, 9:, at_j, at_i] = torch.where((classes[:, 0] != 0)[:, None], kept, writes.full[s])


def _stats(x, delta, writes, obj):
    """GaussianStats: l.cost is the sum of squared deltas; the printed split counts x, y and
    their sigmas as iou_loss, w, h and theirs as uc_loss (as the C zeroes entries 4..7)."""
    b, n, _, lh, lw = x.shape
    count = writes.iou.numel()
    per = 1 / count if count else 0.0
    sq = delta.square()
    total = sq.sum(dtype=torch.float64)
    class_loss = sq[:, :, 8:].sum(dtype=torch.float64)
    except_uc = class_loss + sq[:, :, :4].sum(dtype=torch.float64)
    sums = torch.stack([writes.iou.sum(), writes.own.sum(), writes.out_obj.sum(), obj.sum(),
                        (writes.iou > .5).sum(), (writes.iou > .75).sum()]).double()
    avg_iou, avg_cat, avg_obj, avg_anyobj, recall, recall75 = sums.tolist()
    cost, class_loss, except_uc = torch.stack([total, class_loss, except_uc]).tolist()
    return GaussianStats(avg_iou=avg_iou * per, cls=avg_cat * per, obj=avg_obj * per,
                         no_obj=avg_anyobj / (lw * lh * n * b), recall50=recall * per, recall75=recall75 * per,
                         count=count, cost=cost, class_loss=class_loss / b, iou_loss=(except_uc - class_loss) / b,
                         uc_loss=(cost - except_uc) / b)
