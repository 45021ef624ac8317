"""AlexeyAB's forward_yolo_layer training branch (src/yolo_layer.c, box.c), vectorised.

Where it differs from pjreddie's (pjreddie.py): the no-object delta is kept only for cells whose
class outputs are all <= 0.25 or whose best IoU is <= ignore_thresh; box deltas accumulate
(``+=``) and are MSE scaled by ``iou_normalizer`` or the IoU/GIoU/DIoU/CIoU gradient of
``dx_box_iou`` (clipped by ``max_delta``); every truth also trains the masked anchors whose
shape matches it better than ``iou_thresh``, after which box deltas are divided by the number
of positive class deltas of their cell; objectness and classes have their normalizers, label
smoothing (``y * (1 - eps) + eps / 2``), ``objectness_smooth``, ``focal_loss`` and
``counters_per_class``; ``new_coords`` boxes are ``(2 x)^2 * anchor``.

Darknet computes these deltas against ``l.output`` (activated, x and y scaled by ``scale_x_y``)
and hands them unchanged to the layer before, as the gradient of its input; the GPU build
multiplies them by ``delta_normalizer`` there (applied here to the returned delta, not to the
printed cost).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from .boxes import box_iou, dx_box_iou, iou_of
from .common import HeadStats, best_truth, first_best, grid, read_truths, write_rounds

MATCH_THRESH = 0.25  # compare_yolo_class: a cell "matches" when any class output exceeds this
FOCAL_ALPHA = 0.5


class Write:
    """What the truth loop writes at K cells (one row per write, in Darknet's order)."""

    def __init__(self, box, obj, full, single, own, out_obj, iou, giou):
        self.box, self.obj, self.full, self.single = box, obj, full, single
        self.own, self.out_obj, self.iou, self.giou = own, out_obj, iou, giou


def _pred_boxes(layer, out, cj, ci, anchor_w, anchor_h, lw, lh, net_w, net_h):
    """get_yolo_box for the given outputs (K, 4)."""
    x, y = (ci + out[:, 0]) / lw, (cj + out[:, 1]) / lh
    if layer.settings.new_coords:
        w = out[:, 2] * out[:, 2] * 4 * anchor_w / net_w
        h = out[:, 3] * out[:, 3] * 4 * anchor_h / net_h
    else:
        w = torch.exp(out[:, 2]) * anchor_w / net_w
        h = torch.exp(out[:, 3]) * anchor_h / net_h
    return x, y, w, h


def _box_delta(layer, truth, out, ci, cj, anchor_w, anchor_h, lw, lh, net_w, net_h, normalizer, weight):
    """delta_yolo_box (accumulate=1): the (K, 4) delta to add, and the IoU and GIoU of the prediction."""
    pred = _pred_boxes(layer, out, cj, ci, anchor_w, anchor_h, lw, lh, net_w, net_h)
    iou, giou = iou_of("iou", pred, truth), iou_of("giou", pred, truth)
    if layer.settings.iou_loss == "mse":
        scale = 2 - truth[2] * truth[3]
        if layer.settings.new_coords:
            tw, th = torch.sqrt(truth[2] * net_w / (4 * anchor_w)), torch.sqrt(truth[3] * net_h / (4 * anchor_h))
        else:
            tw, th = torch.log(truth[2] * net_w / anchor_w), torch.log(truth[3] * net_h / anchor_h)
        goal = (truth[0] * lw - ci, truth[1] * lh - cj, tw, th)
        d = [scale * (g - out[:, k]) * normalizer for k, g in enumerate(goal)]
    else:
        pw, ph = (torch.where(v == 0, 1, v) for v in pred[2:])  # avoid nan in dx_box_iou
        d = dx_box_iou((pred[0], pred[1], pw, ph), truth, layer.settings.iou_loss)
        if not layer.settings.new_coords:  # exp() of the w, h outputs; new_coords applies no factor
            d[2], d[3] = d[2] * torch.exp(out[:, 2]), d[3] * torch.exp(out[:, 3])
        d = [torch.nan_to_num(v * normalizer, nan=0.0, posinf=0.0, neginf=0.0) for v in d]  # fix_nan_inf
        if math.isfinite(layer.settings.max_delta):
            d = [v.clamp(-layer.settings.max_delta, layer.settings.max_delta) for v in d]
    return torch.stack(d, 1) * weight[:, None], iou, giou


def smoothed_targets(eps):
    """``y * (1 - eps) + 0.5 * eps`` for y = 1 and 0, as the C computes it (float eps, the
    half in double)."""
    e = float(np.float32(eps))
    one_minus = float(np.float32(1 - e))
    return float(np.float32(one_minus + 0.5 * e)), float(np.float32(0.5 * e))


def class_writes(layer, cls_out, cls, weight, multiplier, eps):
    """delta_yolo_class: the whole-vector delta, and the own-class delta used when that entry
    already holds a delta."""
    classes = cls_out.shape[1]
    own = cls_out.gather(1, cls[:, None]).squeeze(1)
    pos, neg = smoothed_targets(eps) if eps else (1.0, 0.0)
    single = (pos - own) * multiplier
    onehot = torch.nn.functional.one_hot(cls, classes).to(cls_out.dtype)
    if layer.settings.focal_loss:  # 0 for [Gaussian_yolo], whose parser has no focal_loss
        pt = own + 1e-15
        grad = -(1 - pt) * (2 * pt * torch.log(pt) + pt - 1)
        full = (onehot - cls_out) * (FOCAL_ALPHA * grad)[:, None]
    else:
        full = onehot * pos + (1 - onehot) * neg - cls_out
        if layer.settings.classes_multipliers is not None:
            full = torch.where(onehot.bool(), full * (multiplier * layer.settings.cls_normalizer)[:, None], full)
    return full * weight[:, None], single * weight, own


def assigned_anchors(layer, t, valid, anchors, net_w, net_h):
    """Loop 2 of forward_yolo_layer (and forward_gaussian_yolo_layer): each truth with its best
    anchor by shape IoU (if masked), then every other masked anchor whose shape IoU of kind
    ``iou_thresh_kind`` exceeds ``iou_thresh``. Returns (image, truth, anchor) index tensors in
    Darknet's order (per truth the best anchor first, then the others by index) and the anchor
    -> mask-entry table (-1: not in this head's mask)."""
    total = len(layer.anchors)
    zero = t.new_zeros(())
    anchor_w, anchor_h = anchors[:, 0] / net_w, anchors[:, 1] / net_h
    shape = (zero, zero, t[..., 2, None], t[..., 3, None])
    best_n = first_best(box_iou(zero, zero, anchor_w, anchor_h, *shape), valid[..., None])[1]
    mask_of = [-1] * total
    for k in reversed(range(len(layer.mask))):  # int_index: the first mask entry naming the anchor
        mask_of[layer.mask[k]] = k
    mask_of = torch.tensor(mask_of, device=t.device)
    every = torch.arange(total, device=t.device)
    masked = (mask_of >= 0)[None, None, :]
    best = masked & (every == best_n[..., None])
    extra = masked & (every != best_n[..., None])
    if layer.settings.iou_thresh < 1:
        extra &= iou_of(layer.settings.iou_thresh_kind, (zero, zero, anchor_w, anchor_h), shape) > layer.settings.iou_thresh
    else:
        extra = torch.zeros_like(extra)
    wb, wt, wn = ((best | extra) & valid[..., None]).nonzero(as_tuple=True)
    order = torch.argsort(((wb * t.shape[1] + wt) * (total + 1) + torch.where(best[wb, wt, wn], 0, wn + 1)),
                          stable=True)
    return wb[order], wt[order], wn[order], mask_of


class HeadInputs(NamedTuple):
    """What AlexeyAB's [yolo] and [Gaussian_yolo] deltas both start from."""
    x: torch.Tensor           # the raw head output, detached
    out: torch.Tensor         # activated as the layer's forward pass does
    truths: torch.Tensor      # the rows Darknet reads (x, y, w, h, class, weight)
    valid: torch.Tensor
    classes: torch.Tensor
    anchors: torch.Tensor     # all of the layer's (w, h), in pixels
    mask: torch.Tensor
    multipliers: torch.Tensor  # counters_per_class weights per class (1 without)
    grid: tuple
    eps: float                # label smoothing: the cfg's label_smooth_eps, else the trainer's


def head_inputs(layer, x, truths, label_smoothing) -> HeadInputs:
    x = x.detach()
    t, valid, tcls = read_truths(truths, layer.settings.max_boxes, layer.classes, x)
    return HeadInputs(x, layer.activate(x), t, valid, tcls,
                      torch.tensor(layer.anchors, dtype=x.dtype, device=x.device),
                      torch.tensor(layer.mask, device=x.device),
                      torch.tensor(layer.settings.classes_multipliers or [1.0] * layer.classes, dtype=x.dtype, device=x.device),
                      grid(x), layer.settings.label_smooth_eps or label_smoothing)


def yolo_delta_alexeyab(layer, x, truths, net_w, net_h, label_smoothing=0.0):
    """``(delta, stats)`` of AlexeyAB's forward_yolo_layer for raw ``x`` (batch, n, 5 + classes,
    h, w). ``label_smoothing`` applies only when the cfg sets no ``label_smooth_eps``."""
    x, out, t, valid, tcls, anchors, mask, mult_table, (gi, gj), eps = head_inputs(layer, x, truths, label_smoothing)
    b, n, _, lh, lw = x.shape
    obj = out[:, :, 4]

    def writes_at(cb, cn, cj, ci, anchor, truth, cls):
        weight, truth = truth[:, 5], tuple(truth.T[:4])
        mult = mult_table[cls]
        o = out[cb, cn, :, cj, ci]
        box, iou, giou = _box_delta(layer, truth, o[:, :4], ci, cj, anchors[anchor, 0], anchors[anchor, 1],
                                    lw, lh, net_w, net_h, layer.settings.iou_normalizer * mult, weight)
        full, single, own = class_writes(layer, o[:, 5:], cls, weight, mult, eps)
        obj_delta = mult * layer.settings.obj_normalizer * (1 - o[:, 4]) * weight
        return Write(box, obj_delta, full, single, own, o[:, 4], iou, giou)

    # loop 1: every cell against its image's truths
    all_w = (torch.exp(out[:, :, 2]) if not layer.settings.new_coords else out[:, :, 2] * out[:, :, 2] * 4)
    all_h = (torch.exp(out[:, :, 3]) if not layer.settings.new_coords else out[:, :, 3] * out[:, :, 3] * 4)
    aw, ah = anchors[mask, 0].view(1, n, 1, 1), anchors[mask, 1].view(1, n, 1, 1)
    best_iou, best_t = best_truth((gi + out[:, :, 0]) / lw, (gj + out[:, :, 1]) / lh,
                                   all_w * aw / net_w, all_h * ah / net_h, t, valid)
    match = (out[:, :, 5:] > MATCH_THRESH).any(2)
    best_match = torch.where(match, best_iou, 0)
    delta = torch.zeros_like(x)
    no_obj = layer.settings.obj_normalizer * (0 - obj)
    ignored = best_match > layer.settings.ignore_thresh
    if layer.settings.objectness_smooth:
        delta[:, :, 4] = torch.where(ignored, torch.maximum(no_obj, layer.settings.obj_normalizer * (best_match - obj)), no_obj)
    else:
        delta[:, :, 4] = torch.where(ignored, 0, no_obj)
    hb, hn, hj, hi = (best_iou > layer.settings.truth_thresh).nonzero(as_tuple=True)
    if hb.numel():
        ht = best_t[hb, hn, hj, hi]
        hit = writes_at(hb, hn, hj, hi, mask[hn], t[hb, ht], tcls[hb, ht])
        o = obj[hb, hn, hj, hi]
        biou = best_iou[hb, hn, hj, hi]
        goal = biou * biou if layer.settings.objectness_smooth else torch.ones_like(o)
        delta[hb, hn, 4, hj, hi] = layer.settings.obj_normalizer * (goal - o)
        full = hit.full
        if layer.settings.objectness_smooth:
            cls = tcls[hb, ht]
            own = out[hb, hn, 5 + cls, hj, hi]
            full = full.scatter(1, cls[:, None], (mult_table[cls] * (biou * biou - own))[:, None])
        delta[hb, hn, 5:, hj, hi] = full
        delta[hb, hn, :4, hj, hi] += hit.box

    wb, wt, wn, mask_of = assigned_anchors(layer, t, valid, anchors, net_w, net_h)
    cells = (wb, mask_of[wn], (t[wb, wt, 1] * lh).long().clamp_(0, lh - 1),
             (t[wb, wt, 0] * lw).long().clamp_(0, lw - 1))
    writes = writes_at(*cells, wn, t[wb, wt], tcls[wb, wt])
    _apply(delta, cells, writes, tcls[wb, wt], bool(layer.settings.objectness_smooth))

    if layer.settings.iou_thresh < 1:  # averages_yolo_deltas where the objectness delta is not 0
        positives = (delta[:, :, 5:] > 0).sum(2, keepdim=True)
        divide = (delta[:, :, 4:5] != 0) & (positives > 0)
        delta[:, :, :4] = torch.where(divide, delta[:, :, :4] / positives.clamp(min=1), delta[:, :, :4])

    stats = _stats(layer, x, delta, writes, obj)
    if layer.settings.delta_normalizer != 1:
        delta = delta * layer.settings.delta_normalizer
    return delta, stats


def _apply(delta, cells, writes, cls, smooth):
    """Apply the truth loop's writes in Darknet's order, one write per cell per round: box
    deltas add up, the objectness delta is overwritten (with objectness_smooth only where it is
    still 0), and a class entry that already holds a delta gets only the own-class value."""
    for s, (at_b, at_n, at_j, at_i) in write_rounds(cells, delta.shape):
        delta[at_b, at_n, :4, at_j, at_i] += writes.box[s]
        current = delta[at_b, at_n, 4, at_j, at_i]
        delta[at_b, at_n, 4, at_j, at_i] = torch.where(current == 0, writes.obj[s], current) if smooth \
            else writes.obj[s]
        classes = delta[at_b, at_n, 5:, at_j, at_i]
        own_set = classes.gather(1, cls[s, None]).squeeze(1) != 0
        kept = classes.scatter(1, cls[s, None], writes.single[s, None])
        delta[at_b, at_n, 5:, at_j, at_i] = torch.where(own_set[:, None], kept, writes.full[s])


def _stats(layer, x, delta, writes, obj):
    """HeadStats as AlexeyAB counts them; ``cost`` is its l.cost (show_details=1: for IoU losses
    the mean IoU loss times iou_normalizer plus obj_normalizer times the non-box delta^2)."""
    b, n, _, lh, lw = x.shape
    count = writes.iou.numel()
    per = 1 / count if count else 0.0
    total_sq = delta.square().sum(dtype=torch.float64)
    if layer.settings.show_details and layer.settings.iou_loss != "mse":
        non_box = delta[:, :, 4:].square().sum(dtype=torch.float64)
        losses = (1 - writes.giou) if layer.settings.iou_loss == "giou" else (1 - writes.iou)
        cost = layer.settings.iou_normalizer * losses.sum(dtype=torch.float64) / max(count, 1) \
            + layer.settings.obj_normalizer * non_box
    else:
        cost = total_sq
    sums = torch.stack([writes.iou.sum(), writes.own.sum(), writes.out_obj.sum(), obj.sum(),
                        (writes.iou > .5).sum(), (writes.iou > .75).sum()]).double()
    avg_iou, avg_cat, avg_obj, avg_anyobj, recall, recall75 = sums.tolist()
    return HeadStats(avg_iou=avg_iou * per, cls=avg_cat * per, obj=avg_obj * per,
                     no_obj=avg_anyobj / (lw * lh * n * b), recall50=recall * per, recall75=recall75 * per,
                     count=count, cost=float(cost))
