"""Training deltas of [yolo] and [region] against a literal transcription of pjreddie's C
(tests/reference/pjreddie_heads.py: forward_yolo_layer / forward_region_layer)."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from darknet_py.errors import DarknetError
from darknet_py.layers.heads import Detection, DetectionSettings, Region, RegionSettings, Yolo, YoloSettings
from darknet_py.train.deltas import head_delta
from darknet_py.train.deltas.pjreddie import region_delta, yolo_delta

from reference.pjreddie_heads import c_forward_region, c_forward_yolo


def random_truths(gen, batch, per_image, classes, rows, cell_w, cell_h, weighted, same_cell=2):
    """Random boxes, with ``same_cell`` near-copies of a box (same cell, same best anchor) per image,
    a list that ends early (zero row, then a row that must not be read) and mixup-style weights."""
    truths = torch.zeros(batch, rows, 6)
    for b in range(batch):
        k = per_image[b]
        boxes = []
        for _ in range(k):
            cx, cy = (0.05 + 0.9 * torch.rand(2, generator=gen)).tolist()
            w, h = (0.08 + 0.5 * torch.rand(2, generator=gen)).tolist()
            boxes.append([cx, cy, w, h, float(torch.randint(classes, (1,), generator=gen)), 1.0])
        if k:
            base = boxes[0]
            for c in range(same_cell):
                dx = (int(base[0] / cell_w) + 0.3 + 0.1 * c) * cell_w
                dy = (int(base[1] / cell_h) + 0.6 - 0.1 * c) * cell_h
                boxes.insert(1 + c, [dx, dy, base[2] * (1.02 + 0.01 * c), base[3], float(c % classes), 1.0])
        if weighted:
            for box in boxes:
                box[5] = 0.25 + 0.75 * torch.rand(1, generator=gen).item()
        for t, box in enumerate(boxes[:rows]):
            truths[b, t] = torch.tensor(box)
        if len(boxes) + 1 < rows:
            truths[b, len(boxes) + 1] = torch.tensor([0.5, 0.5, 0.3, 0.3, 0.0, 1.0])  # after the end: ignored
    return truths


def assert_stats(got, want):
    assert got.count == want.count
    for name in ("avg_iou", "cls", "obj", "no_obj", "recall50", "recall75", "cost"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-5, abs=1e-6), name


def make_yolo(anchors, mask, classes, ignore_thresh, truth_thresh, max_boxes):
    settings = YoloSettings(max_boxes=max_boxes, jitter=.3, random=0, ignore_thresh=ignore_thresh,
                            truth_thresh=truth_thresh)
    return Yolo(len(mask), classes, anchors, mask, settings)


def make_region(anchors, classes, softmax, background, thresh=.6, rescore=1, bias_match=1, max_boxes=30,
                coords=4, coord_scale=1.0, object_scale=5.0, noobject_scale=1.0, class_scale=1.0):
    return Region(len(anchors) // 2, classes, coords, anchors, softmax, background, RegionSettings(
        log=0, sqrt=0, max_boxes=max_boxes, jitter=.2, rescore=rescore, thresh=thresh, classfix=0, absolute=0,
        random=0, coord_scale=coord_scale, object_scale=object_scale, noobject_scale=noobject_scale,
        mask_scale=1.0, class_scale=class_scale, bias_match=bias_match))


TINY = [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319]
YOLOV3 = [12, 16, 19, 36, 40, 28, 36, 75, 76, 55, 72, 146, 142, 110, 192, 243, 459, 401]
YOLO_CASES = [  # per: truths per image (plus 2 near-copies of the first, on its cell); max: the layer's max
    dict(per=[5, 3], anchors=TINY, mask=[3, 4, 5], classes=3, grid=(6, 4), net=(416, 416), ignore=.3, truth=1.),
    dict(per=[7, 0, 4], anchors=TINY, mask=[0, 1, 2], classes=4, grid=(8, 8), net=(256, 256), ignore=.3, truth=.5),
    dict(per=[9, 6], anchors=YOLOV3, mask=[6, 7, 8], classes=2, grid=(5, 7), net=(608, 608), ignore=.5, truth=.35),
    # anchor 1 twice in the mask: int_index takes the first
    dict(per=[12], anchors=[20, 20, 30, 30, 40, 40, 60, 60], mask=[1, 3, 1], classes=5, grid=(4, 4),
         net=(128, 128), ignore=.4, truth=.45, max=6, eps=.1),
    dict(per=[4, 5], anchors=[16, 24, 30, 20, 40, 60], mask=[0, 1, 2], classes=1, grid=(6, 6), net=(96, 96),
         ignore=.4, truth=.6),
]


@pytest.mark.parametrize("case", range(len(YOLO_CASES)))
def test_yolo_matches_darknet_c(case):
    c = dict(max=90, eps=0.0) | YOLO_CASES[case]
    (lw, lh), (net_w, net_h), mask, classes = c["grid"], c["net"], c["mask"], c["classes"]
    gen = torch.Generator().manual_seed(case)
    layer = make_yolo(c["anchors"], mask, classes, c["ignore"], c["truth"], c["max"])
    x = 0.8 * torch.randn(len(c["per"]), len(mask), 5 + classes, lh, lw, generator=gen)
    truths = random_truths(gen, len(c["per"]), c["per"], classes, 16, 1 / lw, 1 / lh, weighted=case % 2 == 0)
    want, want_stats, seen = c_forward_yolo(x, truths, c["anchors"], mask, classes, net_w, net_h, c["ignore"],
                                            c["truth"], c["max"], c["eps"])
    delta, stats = yolo_delta(layer, x, truths, net_w, net_h, label_smoothing=c["eps"])
    assert delta.shape == x.shape and delta.dtype == x.dtype
    torch.testing.assert_close(delta.double(), want, atol=1e-6, rtol=1e-6)
    assert_stats(stats, want_stats)
    # the case really exercises ignore_thresh, truth_thresh, truths sharing a cell and the class quirk
    assert seen["ignored"] > 0 and seen["shared_cell"] > 0 and seen["quirk"] > 0
    assert (seen["truth_thresh"] > 0) == (c["truth"] < 1)


REGION_CASES = [  # seen: net.seen during the forward (the anchor prior applies below 12800)
    dict(per=[5, 3], classes=3, softmax=1, background=0, rescore=1, bias_match=1, seen=3200, thresh=.4),
    dict(per=[6, 2], classes=4, softmax=0, background=0, rescore=0, bias_match=0, seen=64000, thresh=.4),
    dict(per=[8], classes=3, softmax=1, background=1, rescore=0, bias_match=1, seen=12800, thresh=.3),
    dict(per=[4, 7], classes=2, softmax=0, background=1, rescore=1, bias_match=0, seen=12799, thresh=.4, eps=.05),
    dict(per=[3, 0, 9], classes=5, softmax=0, background=0, rescore=1, bias_match=1, seen=100, thresh=.45, max=8),
    dict(per=[40], classes=2, softmax=1, background=0, rescore=1, bias_match=1, seen=20000, thresh=.6, max=50),
]


@pytest.mark.parametrize("case", range(len(REGION_CASES)))
def test_region_matches_darknet_c(case):
    c = dict(max=30, eps=0.0) | REGION_CASES[case]
    gen = torch.Generator().manual_seed(100 + case)
    anchors = [1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52]
    lw, lh, batch = 7, 5, len(c["per"])
    layer = make_region(anchors, c["classes"], bool(c["softmax"]), bool(c["background"]), c["thresh"],
                        c["rescore"], c["bias_match"], c["max"])
    x = 0.8 * torch.randn(batch, 5, 5 + c["classes"], lh, lw, generator=gen)
    truths = random_truths(gen, batch, c["per"], c["classes"], 48, 1 / lw, 1 / lh, weighted=case % 2 == 1)
    want, want_stats, seen = c_forward_region(x, truths, anchors, c["classes"], c["softmax"], c["background"],
                                              c["thresh"], c["rescore"], c["bias_match"], c["seen"], c["max"],
                                              eps=c["eps"])
    delta, stats = region_delta(layer, x, truths, c["seen"], label_smoothing=c["eps"])
    torch.testing.assert_close(delta.double(), want, atol=1e-6, rtol=1e-6)
    assert_stats(stats, want_stats)
    assert seen["ignored"] > 0 and seen["shared_cell"] > 0
    assert (seen["quirk"] > 0) == (not c["softmax"])  # delta_region_class's tag is !softmax


# -- a case worked out by hand ------------------------------------------------------------------
def hand_case(raw_w=0.0):
    """yolov3-tiny layout (6 anchors, mask 3,4,5) on a 2x2 grid at 64x64; every raw input 0 except the
    responsible anchor's w, so sigmoid = .5 and exp = 1: predicted boxes sit at cell centres with
    anchor sizes 32, 48, 64 px = .5, .75, 1 of the image."""
    layer = make_yolo([8, 8, 16, 16, 24, 24, 32, 32, 48, 48, 64, 64], [3, 4, 5], 2, .4, 1., 90)
    x = torch.zeros(1, 3, 7, 2, 2)
    x[0, 0, 2, 0, 0] = raw_w
    truths = torch.tensor([[[.25, .25, .5, .5, 1, 1]]])
    return layer, x, truths


def test_hand_built_yolo_case():
    """Truth (.25, .25, .5, .5), class 1 of 2, in cell (0, 0).

    Best anchor over all six: 32x32 (.5 x .5 of 64 px) has IoU 1 with the truth's shape -> anchor 3,
    mask entry 0. Its raw w is ln 1.5, so it predicts .75 x .5 at (.25, .25): IoU .25/.375 = 2/3.
    Loop 1 best IoUs: cell (0,0): mask 0 -> 2/3, mask 1 (.75 box) -> .25/.5625 = .444, mask 2 -> .25;
    cells (1,0), (0,1): .0833, .1111 (mask 1, 2), 0 (mask 0); cell (1,1): .0196, .0526, 0.
    ignore_thresh .4 ignores mask 0 and 1 at cell (0,0); the truth then rewrites mask 0's objectness.
    Deltas: 10 cells no-object 0 - .5; responsible obj 1 - .5; classes (0 - .5, 1 - .5);
    box x, y: 1.75 * (.5 - .5) = 0; w: 1.75 * (log(.5*64/32) - ln 1.5); h: 0.
    cost = 10 * .25 + .25 + 2 * .25 + (1.75 ln 1.5)^2.
    """
    layer, x, truths = hand_case(math.log(1.5))
    delta, stats = yolo_delta(layer, x, truths, 64, 64)
    obj = delta[0, :, 4]
    assert obj[1, 0, 0] == 0  # ignored: best IoU .444 > .4, not responsible
    assert obj[0, 0, 0] == pytest.approx(.5)  # responsible
    ignored = {(m, j, i) for m in range(3) for j in range(2) for i in range(2) if obj[m, j, i] == 0}
    assert ignored == {(1, 0, 0)}
    assert torch.all(obj[obj < 0] == -.5) and (obj < 0).sum() == 10
    assert delta[0, 0, :4, 0, 0].tolist() == pytest.approx([0, 0, -1.75 * math.log(1.5), 0], abs=1e-6)
    assert delta[0, 0, 5:, 0, 0].tolist() == pytest.approx([-.5, .5])
    assert delta[0, 1:, :4].abs().sum() == 0 and delta[0, 1:, 5:].abs().sum() == 0
    cost = 10 * .25 + .25 + 2 * .25 + (1.75 * math.log(1.5)) ** 2
    assert stats.cost == pytest.approx(cost, rel=1e-6)
    assert stats.count == 1 and stats.avg_iou == pytest.approx(2 / 3, rel=1e-6)
    assert (stats.recall50, stats.recall75) == (1.0, 0.0)
    assert stats.obj == stats.cls == stats.no_obj == pytest.approx(.5)
    layer.settings = dataclasses.replace(layer.settings, ignore_thresh=.25)  # mask 2 at cell (0, 0): IoU exactly .25/1, not above .25
    obj = yolo_delta(layer, x, truths, 64, 64)[0][0, :, 4]
    assert obj[2, 0, 0] == -.5 and obj[1, 0, 0] == 0


def test_hand_built_truth_outside_mask():
    """A 10x10 px truth fits anchor 0 (8x8) best; anchor 0 is not in mask 3,4,5, so no cell answers
    for it: only no-object deltas (none ignored, the largest IoU being far below .4), count 0."""
    layer, x, _ = hand_case()
    truths = torch.tensor([[[.7, .3, 10 / 64, 10 / 64, 0, 1]]])
    delta, stats = yolo_delta(layer, x, truths, 64, 64)
    assert torch.all(delta[0, :, 4] == -.5)
    assert delta[0, :, :4].abs().sum() == 0 and delta[0, :, 5:].abs().sum() == 0
    assert stats.count == 0 and stats.avg_iou == stats.recall50 == stats.cls == 0
    assert stats.cost == pytest.approx(12 * .25)
    for empty in (torch.zeros(1, 0, 6), torch.zeros(1, 4, 6)):  # no truths at all: the same deltas
        assert torch.equal(yolo_delta(layer, x, empty, 64, 64)[0], delta)


def test_two_truths_on_one_cell_last_box_wins_and_quirk_reads_class_0():
    """Truths A (class 0) then B (class 1) both fall to anchor 3 at cell (0, 0). The class-0 logit
    there is 40, so sigmoid is exactly 1 and A leaves delta[class 0] == 0. pjreddie's
    delta_yolo_class tests delta[class 0] (AlexeyAB's tests delta[class]), so B rewrites the whole
    vector: (0 - 1, 1 - .5). B's box deltas replace A's."""
    layer, x, _ = hand_case()
    x[0, 0, 5, 0, 0] = 40.0
    truths = torch.tensor([[[.25, .25, .5, .5, 0, 1], [.26, .24, .52, .5, 1, 1]]])
    delta, stats = yolo_delta(layer, x, truths, 64, 64)
    assert delta[0, 0, 5:, 0, 0].tolist() == [-1.0, .5]
    scale = 2 - .52 * .5
    want_box = [scale * (.52 - .5), scale * (.48 - .5), scale * math.log(.52 * 64 / 32), 0]
    assert delta[0, 0, :4, 0, 0].tolist() == pytest.approx(want_box, abs=1e-6)
    anchors = [v for a in layer.anchors for v in a]
    want, want_stats, seen = c_forward_yolo(x, truths, anchors, layer.mask, 2, 64, 64, .4, 1., 90)
    assert seen["shared_cell"] == 1
    torch.testing.assert_close(delta.double(), want, atol=1e-6, rtol=1e-6)
    assert_stats(stats, want_stats)


# -- gradient, label smoothing, refusals ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["yolo", "region"])
def test_surrogate_gradient_is_minus_delta(kind):
    gen = torch.Generator().manual_seed(7)
    if kind == "yolo":
        layer = make_yolo([10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319], [3, 4, 5], 3, .5, 1., 90)
    else:
        layer = make_region([1.08, 1.19, 3.42, 4.41, 6.63, 11.38], 3, True, False)
    x = torch.randn(2, 3, 8, 4, 4, generator=gen, requires_grad=True)
    truths = random_truths(gen, 2, [3, 2], 3, 10, 1 / 4, 1 / 4, weighted=True)
    delta, _ = head_delta(layer, x, truths, 128, 128, seen=0)
    assert not delta.requires_grad and delta.abs().sum() > 0
    (-(delta * x).sum()).backward()
    assert torch.equal(x.grad, -delta)


def test_label_smoothing_changes_only_class_targets():
    eps = 0.2
    layer, x, truths = hand_case(math.log(1.5))
    plain, _ = yolo_delta(layer, x, truths, 64, 64)
    smooth, _ = yolo_delta(layer, x, truths, 64, 64, label_smoothing=eps)
    assert torch.equal(plain[:, :, :5], smooth[:, :, :5])
    # targets: 1 -> 1 - eps + eps/classes, 0 -> eps/classes, with classes = 2 and outputs .5
    assert smooth[0, 0, 5:, 0, 0].tolist() == pytest.approx([eps / 2 - .5, 1 - eps + eps / 2 - .5])
    changed = (plain != smooth).nonzero()[:, 2]
    assert changed.numel() == 2 and torch.all(changed >= 5)


def test_untrainable_heads_and_bad_truths_are_refused():
    detection = Detection(7, 20, False, DetectionSettings(n=2, coords=4))
    with pytest.raises(DarknetError, match=r"\[detection\]"):
        head_delta(detection, torch.zeros(1, 1470), torch.zeros(1, 1, 6), 448, 448, 0)
    region = make_region([1, 1], 2, True, False, coords=5)
    with pytest.raises(DarknetError, match="coords"):
        head_delta(region, torch.zeros(1, 1, 8, 3, 3), torch.zeros(1, 1, 6), 96, 96, 0)
    layer, x, _ = hand_case()
    with pytest.raises(DarknetError, match="class"):
        yolo_delta(layer, x, torch.tensor([[[.5, .5, .2, .2, 2, 1]]]), 64, 64)
