"""Darknet's mAP (AlexeyAB's validate_detector_map) on cases small enough to work out by hand,
and against pycocotools' COCOeval at IoU 0.5."""
from __future__ import annotations

import numpy as np
import pytest

from darknet_py.evaluate import average_precision, format_map_table, mean_average_precision

SIZE = 100  # every image is 100 x 100 pixels
NAMES = ["circle", "square"]

# Truths, as (class, x, y, w, h) in pixels.
TRUTHS_PX = [
    [(0, 10, 10, 30, 30), (1, 50, 50, 40, 40)],   # image 0: A (circle), B (square)
    [(0, 20, 20, 40, 40), (0, 60, 10, 30, 30)],   # image 1: C, D (circles)
    [(1, 10, 60, 30, 30)],                        # image 2: E (square)
]
# Detections, as (image, class, prob, x, y, w, h) in pixels; every IoU is far from 0.5.
DETECTIONS_PX = [
    (0, 0, 0.9, 10, 10, 30, 30),   # d1: A exactly -> TP
    (0, 0, 0.8, 12, 12, 30, 30),   # d2: A again (IoU .77), A already taken -> FP
    (1, 0, 0.7, 22, 18, 40, 40),   # d3: C (IoU .82) -> TP
    (1, 1, 0.6, 60, 10, 30, 30),   # d4: on D, but square: no square there -> FP
    (2, 1, 0.5, 12, 62, 28, 28),   # d5: E (IoU .87) -> TP
    (0, 1, 0.4, 52, 50, 38, 40),   # d6: B (IoU .95) -> TP
    (1, 0, 0.3, 70, 70, 20, 20),   # d7: nothing there -> FP; D is never found
]


def relative(x, y, w, h):
    return [(x + w / 2) / SIZE, (y + h / 2) / SIZE, w / SIZE, h / SIZE]


def truths():
    return [np.array([[c, *relative(*box)] for c, *box in image], np.float32).reshape(-1, 5)
            for image in TRUTHS_PX]


def detections(rows=DETECTIONS_PX):
    out = [[] for _ in TRUTHS_PX]
    for image, c, prob, *box in rows:
        out[image].append([c, prob, *relative(*box)])
    return [np.array(d, np.float32).reshape(-1, 6) for d in out]


def iou_px(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / (aw * ah + bw * bh - iw * ih)


# circle (3 truths), ranked: d1 TP, d2 FP, d3 TP, d7 FP
#   after each: recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2
#   area (points=0): recall 0 -> 1/3 at precision 1, 1/3 -> 2/3 at max(2/3, 1/2) = 2/3: 1/3 + 2/9 = 5/9
#   11 points: r = 0, .1, .2, .3 -> 1; r = .4, .5, .6 -> 2/3; r = .7 .. 1 -> 0: (4 + 3 * 2/3) / 11 = 6/11
#   101 points: r = 0 .. .33 (34 points) -> 1; r = .34 .. .66 (33) -> 2/3: (34 + 22) / 101 = 56/101
# square (2 truths), ranked: d4 FP, d5 TP, d6 TP
#   recall 0, 1/2, 1; precision 0, 1/2, 2/3: the envelope is 2/3 everywhere, AP 2/3 for all points
CIRCLE = {0: 5 / 9, 11: 6 / 11, 101: 56 / 101}
SQUARE = 2 / 3


@pytest.mark.parametrize("points", [0, 11, 101])
def test_hand_worked_case(points):
    result = mean_average_precision(detections(), truths(), NAMES, points=points)
    assert [c.ap for c in result.classes] == pytest.approx([CIRCLE[points], SQUARE], abs=1e-12)
    assert result.map == pytest.approx((CIRCLE[points] + SQUARE) / 2, abs=1e-12)
    assert [(c.tp, c.fp, c.truths) for c in result.classes] == [(2, 2, 3), (2, 1, 2)]
    # all probs > .25: TP d1 d3 d5 d6, FP d2 d4 d7, FN D
    assert (result.tp, result.fp, result.fn) == (4, 3, 1)
    assert result.precision == pytest.approx(4 / 7) and result.recall == pytest.approx(4 / 5)
    assert result.f1 == pytest.approx(2 / 3)
    pairs = [((10, 10, 30, 30), (10, 10, 30, 30)), ((22, 18, 40, 40), (20, 20, 40, 40)),
             ((12, 62, 28, 28), (10, 60, 30, 30)), ((52, 50, 38, 40), (50, 50, 40, 40))]
    matched = [iou_px(a, b) for a, b in pairs]  # d1-A, d3-C, d5-E, d6-B
    assert result.avg_iou == pytest.approx(sum(matched) / 7, abs=1e-6)  # over TP + FP, as Darknet


def test_summary_counts_only_above_thresh():
    result = mean_average_precision(detections(), truths(), NAMES, thresh=0.55)
    assert (result.tp, result.fp, result.fn) == (2, 2, 3)   # d1 d3 TP; d2 d4 FP
    assert [(c.tp, c.fp) for c in result.classes] == [(2, 1), (0, 1)]
    assert result.map == pytest.approx((5 / 9 + 2 / 3) / 2)  # AP does not depend on thresh


def test_matches_pycocotools_at_iou_half():
    """COCO matches a candidate to the best *free* truth with IoU >= .5 and Darknet to the best
    truth with IoU > .5, free or not; no IoU here is near .5 and no duplicate overlaps a second
    truth, so the two agree, and COCO's 101 points are Darknet's -points 101."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = {
        "images": [{"id": i + 1, "width": SIZE, "height": SIZE} for i in range(len(TRUTHS_PX))],
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(NAMES)],
        "annotations": [{"id": 10 * i + n + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": list(box), "area": box[2] * box[3], "iscrowd": 0}
                        for i, image in enumerate(TRUTHS_PX) for n, (c, *box) in enumerate(image)],
    }
    gt.createIndex()
    dt = gt.loadRes([{"image_id": i + 1, "category_id": c + 1, "bbox": box, "score": prob}
                     for i, c, prob, *box in DETECTIONS_PX])
    evaluation = COCOeval(gt, dt, "bbox")
    evaluation.params.iouThrs = np.array([0.5])
    evaluation.evaluate()
    evaluation.accumulate()
    coco_ap = evaluation.eval["precision"][0, :, :, 0, -1].mean(axis=0)  # area all, 100 dets

    ours = mean_average_precision(detections(), truths(), NAMES, points=101)
    assert [c.ap for c in ours.classes] == pytest.approx(coco_ap.tolist(), abs=1e-12)
    assert ours.map == pytest.approx(coco_ap.mean(), abs=1e-12)


@pytest.mark.parametrize("points", [0, 11, 101])
def test_perfect_and_empty(points):
    perfect = [np.column_stack([t[:, :1], np.full(len(t), 0.9), t[:, 1:]]) for t in truths()]
    assert mean_average_precision(perfect, truths(), NAMES, points=points).map == 1.0
    empty = mean_average_precision([np.zeros((0, 6))] * 3, truths(), NAMES, points=points)
    assert empty.map == 0.0 and (empty.tp, empty.fp, empty.fn) == (0, 0, 5)
    assert empty.precision == empty.recall == empty.f1 == empty.avg_iou == 0.0


def test_iou_must_exceed_the_threshold():
    # truth: the left half of the image; detection: the whole image -> IoU exactly 0.5
    truth = [np.array([[0, 0.25, 0.5, 0.5, 1.0]], np.float32)]
    whole = [np.array([[0, 0.9, 0.5, 0.5, 1.0, 1.0]], np.float32)]
    assert mean_average_precision(whole, truth, ["a"]).map == 0.0
    assert mean_average_precision(whole, truth, ["a"], iou_thresh=0.49).map == 1.0


def test_duplicate_takes_best_truth_even_if_taken():
    # two truths side by side; both detections overlap the left one best, the second also
    # the right one (IoU > .5): Darknet (like VOC) still counts the second as an FP.
    truth = [np.array([[0, 0.30, 0.5, 0.4, 0.4], [0, 0.42, 0.5, 0.4, 0.4]], np.float32)]
    dets = [np.array([[0, 0.9, 0.30, 0.5, 0.4, 0.4], [0, 0.8, 0.35, 0.5, 0.4, 0.4]], np.float32)]
    result = mean_average_precision(dets, truth, ["a"])
    assert (result.tp, result.fp, result.fn) == (1, 1, 1)
    assert result.map == pytest.approx(0.5)


def test_class_without_truths_counts_as_zero():
    t = truths()
    perfect = [np.column_stack([x[:, :1], np.full(len(x), 0.9), x[:, 1:]]) for x in t]
    result = mean_average_precision(perfect, t, NAMES + ["triangle"])
    assert [c.ap for c in result.classes] == [1.0, 1.0, 0.0]
    assert result.map == pytest.approx(2 / 3)


def test_average_precision_curves():
    # TP, FP, TP of 2 truths: recall 1/2 at precision 1, then 1/2 -> 1 at 2/3
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(5 / 6, abs=1e-12)
    # 11 points: r = 0 .. .5 reach precision 1, r = .6 .. 1 only 2/3
    eleven = average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3], points=11)
    assert eleven == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-12)
    assert average_precision([], []) == 0.0
    with pytest.raises(ValueError):
        average_precision([1.0], [1.0], points=1)


def test_format_map_table():
    text = format_map_table(mean_average_precision(detections(), truths(), NAMES))
    lines = text.splitlines()
    assert lines[0] == "class_id = 0, name = circle, ap = 55.56%   (TP = 2, FP = 2)"
    assert lines[1] == "class_id = 1, name = square, ap = 66.67%   (TP = 2, FP = 1)"
    assert "for conf_thresh = 0.25, TP = 4, FP = 3, FN = 1" in text
    assert "used Area-Under-Curve for each unique Recall" in text
    assert lines[-1] == "mean average precision (mAP@0.50) = 0.611111, or 61.11 %"
