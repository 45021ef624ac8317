"""Darknet's mAP: AlexeyAB's ``validate_detector_map`` (src/detector.c), figure for figure.

What the C does, and so what this does:

* every (detection, class) pair with prob > 0 is a candidate; its truth is the truth of the
  same class in the same image with the highest IoU, counted only if IoU > ``iou_thresh``
  (strictly: IoU exactly 0.5 misses at mAP@0.50); IoU in float32 on relative boxes;
* the truth is chosen once, before ranking; candidates of all images are then ranked by prob,
  descending (glibc's qsort is a merge sort, so ties keep the gathering order, as here); a
  candidate is a TP if its truth is not yet taken, else an FP, even when another truth of its
  class that it also overlaps is still free (VOC's rule; COCO would take the free one);
* AP: ``points`` = 0 is the area under the precision envelope at each unique recall (VOC
  2010-2012, ImageNet; the C's default), including the area below the first recall, which
  AlexeyAB added later (older builds dropped it); 11 is VOC2007's 11 recall points, 101 COCO's,
  each the highest precision at recall >= the point (``>=``, as the C);
* a class without truths has recall 0 at every rank, so its AP is 0, and it still counts in
  the mean (mAP divides by the number of classes; COCO would leave such a class out);
* the figures at ``thresh`` (TP, FP, FN, precision, recall, F1, average IoU) count candidates
  with prob > thresh; a candidate whose truth an earlier candidate *of the same image, in
  gathering order, at any prob* already took is an FP there. Where Darknet divides 0 by 0 and
  prints nan, these are 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .postprocess import box_iou

F32 = np.float32


@dataclass
class ClassAP:
    """One class's AP, with its TP and FP at the summary threshold and its number of truths."""

    index: int
    name: str
    ap: float
    tp: int
    fp: int
    truths: int
    recall: np.ndarray = field(default_factory=lambda: np.zeros(0))  # after each ranked candidate
    precision: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class MapResult:
    """What ``darknet detector map`` prints: per-class APs, the mAP, and the summary at ``thresh``."""

    classes: list[ClassAP]
    map: float
    iou_thresh: float
    points: int
    thresh: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    avg_iou: float


@dataclass
class _Candidates:
    """The gathered (detection, class) pairs, in Darknet's gathering order."""

    prob: list = field(default_factory=list)
    cls: list = field(default_factory=list)
    truth: list = field(default_factory=list)   # index among all truths, -1 for none
    iou: list = field(default_factory=list)     # IoU with that truth, 0 for none
    first: list = field(default_factory=list)   # no earlier candidate of its image named that truth


def average_precision(recall, precision, points: int = 0) -> float:
    """AP of one class from its recall and precision after each of its ranked candidates, summed
    in the C's order (recall is 0 before the first: the area below the first recall counts)."""
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if points == 1 or points < 0:
        raise ValueError(f"points must be 0 (area under the curve) or at least 2, got {points}")
    if len(recall) == 0:
        return 0.0
    if points == 0:
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        ap = 0.0
        for rank in range(len(recall) - 2, -1, -1):
            ap += (recall[rank + 1] - recall[rank]) * envelope[rank]
        return float(ap + recall[0] * envelope[0])
    ap = 0.0
    for point in range(points):
        reached = recall >= point / (points - 1)
        ap += precision[reached].max() if reached.any() else 0.0
    return float(ap / points)


def _best_truths(dets: np.ndarray, gt: np.ndarray, iou_thresh: float):
    """For each candidate, the first truth of its class with the highest IoU > iou_thresh
    (-1 if none), and that IoU."""
    if not len(gt):
        return np.full(len(dets), -1), np.zeros(len(dets), F32)
    ious = box_iou(dets[:, None, 2:6], gt[:, 1:5])  # (candidates, truths)
    ok = (ious > F32(iou_thresh)) & (dets[:, None, 0] == gt[None, :, 0])
    best = np.where(ok, ious, F32(-1)).argmax(axis=1)
    matched = ok.any(axis=1)
    return np.where(matched, best, -1), np.where(matched, ious[np.arange(len(dets)), best], F32(0))


def _check_classes(array: np.ndarray, classes: int, what: str) -> None:
    if len(array) and not (array[:, 0].min() >= 0 and array[:, 0].max() < classes):
        raise ValueError(f"a {what} class id is outside 0..{classes - 1}")


def _gather(detections, truths, classes: int, iou_thresh: float):
    """Candidates of all images and the number of truths of each class."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    found = _Candidates()
    counts = np.zeros(classes, int)
    for dets, gt in zip(detections, truths):
        dets, gt = np.asarray(dets, F32).reshape(-1, 6), np.asarray(gt, F32).reshape(-1, 5)
        dets = dets[dets[:, 1] > 0]
        _check_classes(gt, classes, "truth")
        _check_classes(dets, classes, "detection")
        best, best_iou = _best_truths(dets, gt, iou_thresh)
        first = np.zeros(len(dets), bool)
        first[np.unique(best, return_index=True)[1]] = True
        found.prob += dets[:, 1].tolist()
        found.cls += dets[:, 0].astype(int).tolist()
        found.truth += np.where(best >= 0, best + counts.sum(), -1).tolist()
        found.iou += best_iou.tolist()
        found.first += first.tolist()
        counts += np.bincount(gt[:, 0].astype(int), minlength=classes)
    return found, counts


def _ranked_curves(found: _Candidates, counts: np.ndarray):
    """Per class, recall and precision after each of its candidates in rank order."""
    order = np.argsort(-np.asarray(found.prob, F32), kind="stable")
    cls = np.asarray(found.cls, int)[order]
    taken = np.zeros(int(counts.sum()), bool)
    tp = np.zeros(len(order), bool)
    for rank, t in enumerate(np.asarray(found.truth, int)[order]):
        if t >= 0 and not taken[t]:
            taken[t] = tp[rank] = True
    curves = []
    for c, n in enumerate(counts):
        cum_tp = np.cumsum(tp[cls == c])
        recall = cum_tp / n if n else np.zeros(len(cum_tp))
        curves.append((recall, cum_tp / np.arange(1, len(cum_tp) + 1)))
    return curves


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def mean_average_precision(detections, truths, names, iou_thresh=0.5, points=0, thresh=0.25) -> MapResult:
    """Darknet's ``detector map`` figures. ``detections``: per image, (k, 6) rows class, prob,
    cx, cy, w, h (relative, after NMS, in Darknet's order: box by box, class by class);
    ``truths``: per image, (n, 5) rows class, cx, cy, w, h (relative)."""
    classes = len(names)
    found, counts = _gather(detections, truths, classes, iou_thresh)
    cls = np.asarray(found.cls, int)
    above = np.asarray(found.prob, F32) > F32(thresh)
    hit = above & (np.asarray(found.truth, int) >= 0) & np.asarray(found.first, bool)
    miss = above & ~hit
    per_class = [ClassAP(c, names[c], average_precision(recall, precision, points),
                         int((hit & (cls == c)).sum()), int((miss & (cls == c)).sum()), int(counts[c]),
                         recall, precision)
                 for c, (recall, precision) in enumerate(_ranked_curves(found, counts))]
    total = 0.0
    for c in per_class:
        total += c.ap
    tp, fp = int(hit.sum()), int(miss.sum())
    fn = int(counts.sum()) - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return MapResult(per_class, _ratio(total, classes), iou_thresh, points, thresh, tp, fp, fn,
                     precision, recall, _ratio(2 * precision * recall, precision + recall),
                     _ratio(float(np.asarray(found.iou, np.float64)[hit].sum()), tp + fp))


def format_map_table(result: MapResult) -> str:
    """The lines ``darknet detector map`` prints, in its formats."""
    lines = [f"class_id = {c.index}, name = {c.name}, ap = {c.ap * 100:.2f}%   (TP = {c.tp}, FP = {c.fp})"
             for c in result.classes]
    t = result.thresh
    lines += ["",
              f"for conf_thresh = {t:.2f}, precision = {result.precision:.2f}, recall = {result.recall:.2f}, "
              f"F1-score = {result.f1:.2f}",
              f"for conf_thresh = {t:.2f}, TP = {result.tp}, FP = {result.fp}, FN = {result.fn}, "
              f"average IoU = {result.avg_iou * 100:.2f} %",
              "",
              f"IoU threshold = {result.iou_thresh * 100:.0f} %, "
              + (f"used {result.points} Recall-points" if result.points
                 else "used Area-Under-Curve for each unique Recall"),
              f"mean average precision (mAP@{result.iou_thresh:.2f}) = {result.map:.6f}, "
              f"or {result.map * 100:.2f} %"]
    return "\n".join(lines)
