"""pjreddie's [yolo] and [region] deltas: forward_yolo_layer / forward_region_layer's training
branch (yolo_layer.c, region_layer.c), vectorised."""
from __future__ import annotations

from typing import NamedTuple

import torch

from ...errors import DarknetError
from .boxes import box_iou
from .common import HeadStats, best_truth, first_best, grid, read_truths, write_rounds

REGION_MAX_TRUTHS = 30  # pjreddie's forward_region_layer reads at most 30 truths per image
REGION_PRIOR_SEEN = 12800  # below this many images seen, [region] pulls every box to its anchor


class _Writes(NamedTuple):
    """What the truth loop writes at a set of cells, one row per truth."""

    box: torch.Tensor  # (K, 4) box deltas
    obj: torch.Tensor  # (K,) objectness delta
    full: torch.Tensor  # (K, classes) class deltas when the whole vector is written
    single: torch.Tensor  # (K,) the truth's own class delta when only it is written
    own: torch.Tensor  # (K,) output of the truth's class (avg_cat)
    out_obj: torch.Tensor  # (K,) objectness output (avg_obj)
    iou: torch.Tensor  # (K,) IoU of the cell's prediction with the truth


def _box_delta(truth, out, i, j, lw, lh, anchor_w, anchor_h, size_w, size_h, scale):
    """delta_yolo_box / delta_region_box: ``scale * (target - output)`` for x, y, w, h, the target
    being the offset in the cell and the log of the size over the anchor's."""
    goal = (truth[0] * lw - i, truth[1] * lh - j, torch.log(truth[2] * size_w / anchor_w),
            torch.log(truth[3] * size_h / anchor_h))
    return [scale * (g - o) for g, o in zip(goal, out)]


def _class_deltas(cls_out, cls, label_smoothing, scale):
    """Full-vector and own-class deltas of delta_yolo_class / delta_region_class.

    Label smoothing (opt-in) makes the targets ``1 - eps + eps/classes`` and ``eps/classes``.
    """
    classes = cls_out.shape[1]
    neg = label_smoothing / classes
    pos = 1 - label_smoothing + neg
    target = torch.nn.functional.one_hot(cls, classes).to(cls_out.dtype) * (pos - neg) + neg
    own = cls_out.gather(1, cls[:, None]).squeeze(1)
    return scale[:, None] * (target - cls_out), scale * (pos - own), own


def _write_truths(delta, cells, writes, cls, tag, coords):
    """Apply the truth loop's writes in Darknet's order; returns which truths wrote a full class vector.

    Truths sharing a cell are applied in rounds (one truth per cell per round), so box and object
    deltas end as the last writer left them and the class quirk (``if (delta[class 0] && tag)``
    only the truth's own class is set) sees exactly the delta Darknet would see.
    """
    wrote_full = torch.zeros_like(cells[0], dtype=torch.bool)
    for s, at in write_rounds(cells, delta.shape):
        delta[at[0], at[1], :4, at[2], at[3]] = writes.box[s]
        delta[at[0], at[1], coords, at[2], at[3]] = writes.obj[s]
        current = delta[at[0], at[1], coords + 1:, at[2], at[3]]
        quirk = (current[:, 0] != 0) & tag
        kept = current.scatter(1, cls[s, None], writes.single[s, None])
        delta[at[0], at[1], coords + 1:, at[2], at[3]] = torch.where(quirk[:, None], kept, writes.full[s])
        wrote_full[s] = ~quirk
    return wrote_full


def _stats(x, delta, sums, count):
    """HeadStats from the accumulated sums, with one device sync."""
    b, n, _, lh, lw = x.shape
    avg_iou, avg_cat, avg_obj, avg_anyobj, recall, recall75, cost = torch.stack(
        [s.double() for s in sums] + [delta.square().sum(dtype=torch.float64)]).tolist()
    per = 1 / count if count else 0.0
    return HeadStats(avg_iou=avg_iou * per, cls=avg_cat * per, obj=avg_obj * per,
                     no_obj=avg_anyobj / (lw * lh * n * b), recall50=recall * per,
                     recall75=recall75 * per, count=count, cost=cost)


def yolo_delta(layer, x, truths, net_w, net_h, label_smoothing=0.0):
    """pjreddie's forward_yolo_layer training branch: ``(delta, stats)`` for raw ``x``
    of shape (batch, n, 5 + classes, h, w)."""
    x = x.detach()
    b, n, _, lh, lw = x.shape
    t, valid, tcls = read_truths(truths, layer.settings.max_boxes, layer.classes, x)
    anchors = torch.tensor(layer.anchors, dtype=x.dtype, device=x.device)
    mask = torch.tensor(layer.mask, device=x.device)
    aw, ah = anchors[mask, 0].view(1, n, 1, 1), anchors[mask, 1].view(1, n, 1, 1)
    gi, gj = grid(x)
    sx, sy, obj = torch.sigmoid(x[:, :, 0]), torch.sigmoid(x[:, :, 1]), torch.sigmoid(x[:, :, 4])
    pw, ph = torch.exp(x[:, :, 2]) * aw / net_w, torch.exp(x[:, :, 3]) * ah / net_h

    def truth_writes(cb, cn, cj, ci, anchor, truth, cls):
        """delta_yolo_box, the objectness line and delta_yolo_class for truths at cells (cb, cn, cj, ci)."""
        truth, weight = truth.T, truth[:, 5]
        out = (sx[cb, cn, cj, ci], sy[cb, cn, cj, ci], x[cb, cn, 2, cj, ci], x[cb, cn, 3, cj, ci])
        anchor_w, anchor_h = anchors[anchor, 0], anchors[anchor, 1]
        iou = box_iou((ci + out[0]) / lw, (cj + out[1]) / lh, torch.exp(out[2]) * anchor_w / net_w,
                      torch.exp(out[3]) * anchor_h / net_h, *truth[:4])
        box = _box_delta(truth, out, ci, cj, lw, lh, anchor_w, anchor_h, net_w, net_h,
                         weight * (2 - truth[2] * truth[3]))
        o = obj[cb, cn, cj, ci]
        full, single, own = _class_deltas(torch.sigmoid(x[cb, cn, 5:, cj, ci]), cls, label_smoothing, weight)
        return _Writes(torch.stack(box, 1), weight * (1 - o), full, single, own, o, iou)

    # loop 1: every cell/anchor against its image's truths
    best_iou, best_t = best_truth((gi + sx) / lw, (gj + sy) / lh, pw, ph, t, valid)
    delta = torch.zeros_like(x)
    delta[:, :, 4] = torch.where(best_iou > layer.settings.ignore_thresh, 0, -obj)
    hb, hn, hj, hi = (best_iou > layer.settings.truth_thresh).nonzero(as_tuple=True)
    ht = best_t[hb, hn, hj, hi]
    hit = truth_writes(hb, hn, hj, hi, mask[hn], t[hb, ht], tcls[hb, ht])
    delta[hb, hn, :4, hj, hi] = hit.box
    delta[hb, hn, 4, hj, hi] = hit.obj
    delta[hb, hn, 5:, hj, hi] = hit.full  # loop 1 visits a cell once: its class deltas are still 0

    # loop 2: each truth at its cell, with the best of ALL anchors if that anchor is in the mask
    zero = x.new_zeros(())
    shape_iou = box_iou(zero, zero, anchors[:, 0] / net_w, anchors[:, 1] / net_h,
                        zero, zero, t[..., 2, None], t[..., 3, None])
    best_n = first_best(shape_iou, valid[..., None])[1]
    mask_of = [-1] * len(layer.anchors)
    for k in reversed(range(n)):  # int_index: the first mask entry naming the anchor
        mask_of[layer.mask[k]] = k
    mask_n = torch.tensor(mask_of, device=x.device)[best_n]
    tb, tt = (valid & (mask_n >= 0)).nonzero(as_tuple=True)
    cells = (tb, mask_n[tb, tt], (t[tb, tt, 1] * lh).long().clamp_(0, lh - 1),
             (t[tb, tt, 0] * lw).long().clamp_(0, lw - 1))
    writes = truth_writes(*cells, best_n[tb, tt], t[tb, tt], tcls[tb, tt])
    _write_truths(delta, cells, writes, tcls[tb, tt], True, 4)
    iou = writes.iou
    sums = (iou.sum(), writes.own.sum(), writes.out_obj.sum(), obj.sum(), (iou > .5).sum(), (iou > .75).sum())
    return delta, _stats(x, delta, sums, tb.numel())


def region_delta(layer, x, truths, seen, label_smoothing=0.0):
    """pjreddie's forward_region_layer training branch: ``(delta, stats)`` for raw ``x``
    of shape (batch, n, coords + 1 + classes, h, w).

    ``seen`` is Darknet's net.seen during this forward (already counting this mini-batch).
    """
    if layer.coords > 4:
        raise DarknetError("training [region] with coords > 4 (mask coordinates) is not supported")
    x = x.detach()
    b, n, _, lh, lw = x.shape
    coords = layer.coords
    t, valid, tcls = read_truths(truths, min(REGION_MAX_TRUTHS, layer.settings.max_boxes), layer.classes, x)
    anchors = torch.tensor(layer.anchors, dtype=x.dtype, device=x.device)
    aw, ah = anchors[:, 0].view(1, n, 1, 1), anchors[:, 1].view(1, n, 1, 1)
    gi, gj = grid(x)
    sx, sy = torch.sigmoid(x[:, :, 0]), torch.sigmoid(x[:, :, 1])
    if layer.background:  # the objectness entry is the background class: softmax'd with the classes, or raw
        obj = torch.softmax(x[:, :, coords:], 2)[:, :, 0] if layer.softmax else x[:, :, coords]
    else:
        obj = torch.sigmoid(x[:, :, coords])
    pw, ph = torch.exp(x[:, :, 2]) * aw / lw, torch.exp(x[:, :, 3]) * ah / lh

    def classes_at(cb, cn, cj, ci):
        """Class outputs at the given cells only: the truth loop reads no others."""
        if not layer.softmax:
            return torch.sigmoid(x[cb, cn, coords + 1:, cj, ci])
        probs = torch.softmax(x[cb, cn, coords + (not layer.background):, cj, ci], 1)
        return probs[:, 1:] if layer.background else probs

    # loop 1: no-object delta unless the box already overlaps a truth; early on, a pull to the anchor
    best_iou = best_truth((gi + sx) / lw, (gj + sy) / lh, pw, ph, t, valid)[0]
    delta = torch.zeros_like(x)
    no_obj = layer.settings.noobject_scale * (float(layer.background) - obj)
    delta[:, :, coords] = torch.where(best_iou > layer.settings.thresh, 0, no_obj)
    if seen < REGION_PRIOR_SEEN:
        prior = ((gi + .5) / lw, (gj + .5) / lh, aw / lw, ah / lh)
        out = (sx, sy, x[:, :, 2], x[:, :, 3])
        for k, d in enumerate(_box_delta(prior, out, gi, gj, lw, lh, aw, ah, lw, lh, .01)):
            delta[:, :, k] = d

    # loop 2: each truth at its cell, with the anchor whose shape (or prediction) fits it best
    tb, tt = valid.nonzero(as_tuple=True)
    truth, weight, cls = t[tb, tt].T, t[tb, tt, 5], tcls[tb, tt]
    cj, ci = (truth[1] * lh).long().clamp_(0, lh - 1), (truth[0] * lw).long().clamp_(0, lw - 1)
    if layer.settings.bias_match:
        shape_w, shape_h = (anchors[:, 0] / lw).expand(len(tb), n), (anchors[:, 1] / lh).expand(len(tb), n)
    else:
        shape_w, shape_h = pw[tb, :, cj, ci], ph[tb, :, cj, ci]
    zero = x.new_zeros(())
    shape_iou = box_iou(zero, zero, shape_w, shape_h, zero, zero, truth[2, :, None], truth[3, :, None])
    cn = first_best(shape_iou, torch.ones_like(shape_iou, dtype=torch.bool))[1]
    out = (sx[tb, cn, cj, ci], sy[tb, cn, cj, ci], x[tb, cn, 2, cj, ci], x[tb, cn, 3, cj, ci])
    iou = box_iou((ci + out[0]) / lw, (cj + out[1]) / lh, pw[tb, cn, cj, ci], ph[tb, cn, cj, ci], *truth[:4])
    box = _box_delta(truth, out, ci, cj, lw, lh, anchors[cn, 0], anchors[cn, 1], lw, lh,
                     weight * layer.settings.coord_scale * (2 - truth[2] * truth[3]))
    o = obj[tb, cn, cj, ci]
    if layer.background:
        obj_goal = torch.zeros_like(o)
    elif layer.settings.rescore:
        obj_goal = iou
    else:
        obj_goal = torch.ones_like(o)
    full, single, own = _class_deltas(classes_at(tb, cn, cj, ci), cls, label_smoothing,
                                      weight * layer.settings.class_scale)
    writes = _Writes(torch.stack(box, 1), weight * layer.settings.object_scale * (obj_goal - o), full, single, own,
                     o, iou)
    wrote_full = _write_truths(delta, (tb, cn, cj, ci), writes, cls, not layer.softmax, coords)
    # delta_region_class adds to avg_cat only when it writes the whole vector
    sums = (iou.sum(), (own * wrote_full).sum(), o.sum(), obj.sum(), (iou > .5).sum(), (iou > .75).sum())
    return delta, _stats(x, delta, sums, tb.numel())
