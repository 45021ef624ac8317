"""AlexeyAB's [yolo] options and [Gaussian_yolo] against literal transcriptions of its C code.

References below follow AlexeyAB/darknet's src/yolo_layer.c (forward_yolo_layer/process_batch,
delta_yolo_box, delta_yolo_class, averages_yolo_deltas, get_yolo_detections, correct_yolo_boxes),
src/gaussian_yolo_layer.c (forward, get_gaussian_yolo_detections) and src/box.c (box_iou,
box_giou, box_diou, box_diounms, box_ciou, dx_box_iou, do_nms_sort, diounms_sort) line by line, on
flat lists with entry_index. One documented extension: a truth's weight (mixup, 1 here) would
scale what is written on its behalf.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darknet_py import load
from darknet_py.detect import detections_from_outputs
from darknet_py.errors import CfgError, DarknetError
from darknet_py.layers.gaussian_yolo import GaussianYolo
from darknet_py.layers.heads import Yolo
from darknet_py.train.deltas import head_delta
from darknet_py.train.deltas.boxes import dx_box_iou as dx_box_iou_t

from reference.box import box_diou, box_diounms, dx_box_iou
from reference.box import box_iou_alexeyab as box_iou  # AlexeyAB's: 0 where intersection or union is
from reference.yolo_layer_alexeyab import c_forward_yolo, c_gaussian_output, c_network_boxes, c_nms, c_yolo_output

F32 = np.float32


# -- cases ----------------------------------------------------------------------------------------
def yolo_cfg(tmp_path, classes=3, mask="3,4,5", num=6, extra="", n_filters=None, kind="yolo",
             anchors="10,14, 23,27, 37,58, 81,82, 135,169, 344,319", entries=5, size=96):
    nmask = len(mask.split(","))
    text = f"""[net]
width={size}
height={size}
channels=3

[convolutional]
filters={n_filters or nmask * (entries + classes)}
size=1
activation=linear

[{kind}]
mask={mask}
anchors={anchors}
classes={classes}
num={num}
{extra}
"""
    path = tmp_path / "head.cfg"
    path.write_text(text)
    return load(path)


def random_truths(gen, per, classes, rows, lw, lh, near=2):
    """Truth rows x, y, w, h, class, weight=1 (zero padded); the first box of each image gets
    ``near`` near-copies on its cell so cells are shared and several anchors fit."""
    out = torch.zeros(len(per), rows, 6)
    for b, k in enumerate(per):
        boxes = []
        for _ in range(k):
            w, h = (0.05 + 0.6 * torch.rand(2, generator=gen)).tolist()
            cx, cy = (0.05 + 0.9 * torch.rand(2, generator=gen)).tolist()
            boxes.append([cx, cy, w, h, int(torch.randint(classes, (1,), generator=gen)), 1.0])
        if boxes:
            for _ in range(near):
                x0, y0, w0, h0 = boxes[0][:4]
                cls = int(torch.randint(classes, (1,), generator=gen))
                boxes.append([x0 + 0.02 / lw, y0 - 0.02 / lh, w0 * 1.05, h0 * 0.95, cls, 1.0])
        out[b, :len(boxes)] = torch.tensor(boxes)
    return out


LOSS_CASES = [
    dict(extra="iou_loss=ciou\niou_normalizer=0.07\ncls_normalizer=1.0\niou_thresh=0.213\nscale_x_y=1.05\n"
               "max_delta=5\nignore_thresh=.35"),
    dict(extra="iou_loss=giou\niou_normalizer=0.5\nobj_normalizer=0.4\niou_thresh=0.2\nlabel_smooth_eps=0.1\n"
               "ignore_thresh=.3"),
    dict(extra="iou_loss=diou\niou_normalizer=0.3\niou_thresh=0.25\niou_thresh_kind=giou\nmax_delta=0.05\n"
               "objectness_smooth=1\nignore_thresh=.3"),
    dict(extra="iou_loss=mse\niou_normalizer=0.75\niou_thresh=0.2\nfocal_loss=1\ncounters_per_class=10,300,0\n"
               "max_delta=5\nignore_thresh=.3"),
    dict(extra="new_coords=1\nscale_x_y=2.0\niou_loss=ciou\niou_normalizer=0.05\nobj_normalizer=1.0\n"
               "cls_normalizer=0.5\niou_thresh=0.2\nobjectness_smooth=1\nmax_delta=2\nignore_thresh=.4\n"
               "counters_per_class=5,9,3"),
    dict(extra="new_coords=1\nscale_x_y=2.0\niou_loss=mse\niou_normalizer=0.5\niou_thresh=0.2\n"
               "ignore_thresh=.3\nshow_details=0"),
    dict(extra="iou_loss=iou\niou_normalizer=0.5\ntruth_thresh=0.45\nignore_thresh=.3\niou_thresh_kind=ciou\n"
               "iou_thresh=0.3\nobjectness_smooth=1"),
]


@pytest.mark.parametrize("case", range(len(LOSS_CASES)))
def test_yolo_deltas_match_alexeyab_c(case, tmp_path):
    c = LOSS_CASES[case]
    net = yolo_cfg(tmp_path, mask="1,2,3", extra=c["extra"])
    layer = net.layers[-1]
    assert layer.settings.alexeyab
    gen = torch.Generator().manual_seed(case)
    lw, lh, net_wh = 6, 5, 96
    x = 1.2 * torch.randn(2, 3, 8, lh, lw, generator=gen)
    if layer.settings.new_coords:  # the conv before applies the logistic
        x = torch.sigmoid(x)
    x[:, :, 5:, :, ::2] += 1.5  # some cells have a class output above .25, others not:
    x[:, :, 5:, :, 1::2] -= 3.0  # ignore_thresh applies only to the first
    truths = random_truths(gen, [6, 8], 3, 14, lw, lh, near=3)
    want, want_cost, seen = c_forward_yolo(x, truths, layer, net_wh, net_wh)
    delta, stats = head_delta(layer, x, truths, net_wh, net_wh, 0, 0.0)
    torch.testing.assert_close(delta.double(), want, atol=2e-5, rtol=2e-4)
    assert stats.count == seen["count"]
    assert stats.avg_iou == pytest.approx(seen["avg_iou"], rel=1e-4)
    assert stats.cost == pytest.approx(want_cost, rel=1e-4)
    # the data exercise the paths that differ from pjreddie
    assert seen["extra"] > 0 and seen["accumulated"] > 0 and seen["ignored"] > 0 and seen["not_matched"] > 0
    if "max_delta=0.05" in c["extra"]:
        assert seen["clipped"] > 0


def test_delta_normalizer_scales_the_gradient_not_the_cost(tmp_path):
    one = yolo_cfg(tmp_path, extra="iou_loss=ciou\niou_thresh=0.2").layers[-1]
    half = yolo_cfg(tmp_path, extra="iou_loss=ciou\niou_thresh=0.2\ndelta_normalizer=0.5").layers[-1]
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 3, 8, 5, 6, generator=gen)
    truths = random_truths(gen, [3], 3, 6, 6, 5)
    d1, s1 = head_delta(one, x, truths, 96, 96, 0)
    d2, s2 = head_delta(half, x, truths, 96, 96, 0)
    torch.testing.assert_close(d2, d1 * 0.5)
    assert s1.cost == s2.cost


def test_dx_box_iou_matches_the_c_on_random_boxes():
    gen = torch.Generator().manual_seed(3)
    pred = (0.2 + 0.6 * torch.rand(4, 400, generator=gen, dtype=torch.float64))
    truth = (0.2 + 0.6 * torch.rand(4, 400, generator=gen, dtype=torch.float64))
    pred[2:] *= 0.5
    truth[2:] *= 0.5
    for kind in ("iou", "giou", "diou", "ciou"):
        got = torch.stack(dx_box_iou_t(tuple(pred.float()), tuple(truth.float()), kind), 1).double()
        want = torch.tensor([dx_box_iou(p, t, kind) for p, t in zip(pred.T.tolist(), truth.T.tolist())],
                            dtype=torch.float64)
        torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-3)


# -- a case worked out by hand --------------------------------------------------------------------
def test_hand_built_case_anchors_ignored_and_extra(tmp_path):
    """2x2 grid at 64x64, anchors 16, 32, 48, 64 px square, mask 1,2,3; raw input 0 everywhere
    (x, y = .5 -> boxes at cell centres; w, h = exp(0) * anchor), class outputs .5 (> .25: every
    cell matches). One truth (.25, .25, .5, .5) = 32 px square, class 0 of 2, in cell (0, 0).

    Shape IoUs with the truth: anchor 0: 256/1024 = .25, anchor 1: 1, anchor 2: 1024/2304 = .444,
    anchor 3: .25. Best anchor 1 (mask slot 0); iou_thresh .3 adds anchor 2 (slot 1) but not
    anchor 3 (slot 2). Predicted boxes in cell (0, 0) all sit on the truth's centre, so their IoU
    with it is the shape IoU: slot 0 (1.0) and slot 1 (.444) pass ignore_thresh .4, slot 2 (.25)
    does not and gets the no-object delta -obj_normalizer * .5. Cells other than (0, 0) do not
    overlap enough: slot 2's 64 px box in cell (1, 0) has IoU 1/8 with the truth.

    MSE deltas (iou_normalizer .5, scale 2 - .25 = 1.75): x, y target .5 - output .5 -> 0; slot 0:
    log(32/32) - 0 = 0 for w, h; slot 1: log(32/48) = -.405465 -> 1.75 * -.405465 * .5 =
    -.354782. Objectness (obj_normalizer 2): 2 * (1 - .5) = 1 at slots 0, 1. Classes: 1 - .5 =
    .5 for class 0, 0 - .5 for class 1. The box deltas are then divided by the number of
    positive class deltas (1): unchanged.
    """
    net = yolo_cfg(tmp_path, classes=2, mask="1,2,3", num=4, anchors="16,16, 32,32, 48,48, 64,64",
                   extra="iou_loss=mse\niou_normalizer=0.5\nobj_normalizer=2\niou_thresh=0.3\nignore_thresh=.4",
                   size=64)
    layer = net.layers[-1]
    x = torch.zeros(1, 3, 7, 2, 2)
    truths = torch.tensor([[[.25, .25, .5, .5, 0, 1]]])
    delta, stats = head_delta(layer, x, truths, 64, 64, 0)
    want = torch.zeros_like(x)
    want[0, :, 4] = -2 * .5                       # no object anywhere...
    want[0, 0, 4, 0, 0] = want[0, 1, 4, 0, 0] = 1.0  # ...except the two trained anchors
    want[0, 0, 5:, 0, 0] = want[0, 1, 5:, 0, 0] = torch.tensor([.5, -.5])
    want[0, 1, 2:4, 0, 0] = 1.75 * math.log(32 / 48) * .5
    torch.testing.assert_close(delta, want)
    assert stats.count == 2
    assert stats.avg_iou == pytest.approx((1 + 1024 / 2304) / 2, rel=1e-6)
    assert stats.cost == pytest.approx(float(want.square().sum()), rel=1e-6)  # mse: sum of squares


# -- inference ------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", ["scale_x_y=1.05", "scale_x_y=2.0\nnew_coords=1", "scale_x_y=1.2"])
def test_yolo_forward_matches_c(extra, tmp_path):
    layer = yolo_cfg(tmp_path, extra=extra).layers[-1].eval()
    x = torch.randn(2, 3 * 8, 4, 5, generator=torch.Generator().manual_seed(1)) * 3
    got = layer(x).numpy()
    np.testing.assert_allclose(got, c_yolo_output(x.view(2, 3, 8, 4, 5), layer), rtol=1e-6, atol=1e-7)


def test_gaussian_yolo_forward_matches_c(tmp_path):
    net = yolo_cfg(tmp_path, kind="Gaussian_yolo", entries=9, extra="scale_x_y=1.1\nuc_normalizer=1.0")
    layer = net.layers[-1].eval()
    assert isinstance(layer, GaussianYolo) and not list(layer.parameters())
    x = torch.randn(1, 3 * 12, 3, 4, generator=torch.Generator().manual_seed(2)) * 3
    np.testing.assert_allclose(layer(x).numpy(), c_gaussian_output(x.view(1, 3, 12, 3, 4), 1.1),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra,kind", [
    ("nms_kind=diounms\nbeta_nms=0.6\nscale_x_y=1.05", "yolo"),
    ("nms_kind=greedynms\nscale_x_y=2.0\nnew_coords=1", "yolo"),
    ("nms_kind=diounms\nbeta_nms=0.9\nnew_coords=1", "yolo"),
    ("scale_x_y=1.1", "yolo"),
    ("nms_kind=greedynms\nuc_normalizer=1.0", "Gaussian_yolo"),
    ("yolo_point=left_top", "Gaussian_yolo"),
])
def test_detections_match_alexeyab_get_network_boxes_and_nms(extra, kind, tmp_path):
    gaussian = kind == "Gaussian_yolo"
    entries = 9 if gaussian else 5
    net = yolo_cfg(tmp_path, classes=3, kind=kind, entries=entries, extra=extra, size=96)
    layer = net.layers[-1]
    gen = torch.Generator().manual_seed(hash(extra) % 1000)
    out = torch.rand(1, 3, entries + 3, 6, 6, generator=gen)
    out[:, :, 0:2] = out[:, :, 0:2] * 1.1 - 0.05
    if not gaussian and not layer.settings.new_coords:
        out[:, :, 2:4] = torch.randn(1, 3, 2, 6, 6, generator=gen) * 0.5
    if gaussian:
        out[:, :, 4] = torch.randn(1, 3, 6, 6, generator=gen) * 0.5
        out[:, :, 6] = torch.randn(1, 3, 6, 6, generator=gen) * 0.5
    thresh, nms = 0.2, 0.45
    got = detections_from_outputs(net, [out], [(160, 120)], thresh, nms, letterbox=True)[0]
    dets = c_network_boxes(layer, out[0].numpy(), 160, 120, 96, 96, thresh, gaussian)
    want = c_nms(dets, 3, nms, layer.settings.nms_kind, layer.settings.beta_nms) if nms else dets
    assert len(got) == len(want) > 20
    np.testing.assert_allclose(got.boxes, np.array([d[0] for d in want], F32), rtol=2e-6, atol=1e-7)
    np.testing.assert_array_equal(got.objectness, np.array([d[1] for d in want], F32))
    np.testing.assert_allclose(got.probs, np.array([d[2] for d in want], F32), rtol=1e-6, atol=0)
    suppressed = sum(float(p) == 0 for d in dets for p in d[2])
    assert suppressed > 0


def test_nms_kinds_differ_where_the_c_says():
    """greedynms suppresses by DIoU (centre distance lowers the overlap), diounms by DIoU with
    beta_nms; two boxes of IoU .5 whose centres are apart survive diounms at .45."""
    from darknet_py.postprocess import Detections, nms_sort
    boxes = np.array([[.3, .3, .2, .2], [.3 + .2 / 3, .3, .2, .2]], F32)  # IoU = (2/3)/(4/3) = .5
    det = Detections(boxes, np.ones(2, F32), np.array([[.9], [.8]], F32))
    assert box_iou(*boxes.tolist()) == pytest.approx(.5, rel=1e-6)
    assert nms_sort(det, .45).probs[1, 0] == 0
    d = box_diou(*boxes.tolist())
    assert nms_sort(det, .45, "greedynms").probs[1, 0] == (0 if d > .45 else F32(.8))
    assert nms_sort(det, .45, "diounms", 1.0).probs[1, 0] == (0 if box_diounms(*boxes.tolist(), 1.0) > .45
                                                               else F32(.8))
    assert box_diounms(*boxes.tolist(), 0.6) < .45 < box_iou(*boxes.tolist())
    assert nms_sort(det, .45, "diounms", 0.6).probs[1, 0] == F32(.8)


# -- parsing --------------------------------------------------------------------------------------
def test_pjreddie_yolo_is_unchanged(tmp_path):
    layer = yolo_cfg(tmp_path).layers[-1]
    assert not layer.settings.alexeyab and layer.settings.max_boxes == 90 and layer.settings.scale_x_y == 1.0
    assert "iou_normalizer" not in vars(layer)


def test_alexeyab_defaults(tmp_path):
    layer = yolo_cfg(tmp_path, extra="scale_x_y=1.05").layers[-1]
    assert layer.settings.alexeyab and layer.settings.max_boxes == 200 and layer.settings.iou_normalizer == 0.75
    assert layer.settings.iou_loss == "mse" and layer.settings.nms_kind == "default" and layer.settings.beta_nms == 0.6
    assert layer.settings.iou_thresh == 1.0 and math.isinf(layer.settings.max_delta) and layer.settings.classes_multipliers is None


def test_counters_per_class(tmp_path):
    layer = yolo_cfg(tmp_path, extra="counters_per_class=100,0,25\nmax_delta=3").layers[-1]
    assert layer.settings.classes_multipliers == [1.0, 3.0, 3.0]  # 100/100, 100/1 capped at 3, 100/25 = 4 capped


@pytest.mark.parametrize("extra,key", [("iou_loss=ciuo", "iou_loss"), ("nms_kind=soft", "nms_kind"),
                                       ("iou_thresh_kind=x", "iou_thresh_kind"),
                                       ("counters_per_class=1,2", "counters_per_class"),
                                       ("embedding_layer=-2", "embedding_layer")])
def test_bad_options_are_refused_with_their_line(extra, key, tmp_path):
    with pytest.raises(CfgError) as e:
        yolo_cfg(tmp_path, extra=extra)
    assert e.value.option == key and e.value.line is not None


def test_resize_and_fractional_random_need_alexeyabs_data_pipeline(tmp_path):
    """They steer AlexeyAB's data loading (augment_alexeyab.py, multiscale.py), not the deltas:
    the deltas compute with them; a trainer that would load data pjreddie's way refuses them."""
    from darknet_py.shapes import generate_shapes
    from darknet_py.train.trainer import Trainer, TrainingError, TrainOptions
    truths = torch.tensor([[[.25, .25, .5, .5, 0, 1]]])
    layer = yolo_cfg(tmp_path, extra="resize=1.5\nrandom=1.2").layers[-1]
    delta, _ = head_delta(layer, torch.zeros(1, 3, 8, 2, 2), truths, 64, 64, 0)
    assert delta.abs().sum() > 0
    gauss = yolo_cfg(tmp_path, kind="Gaussian_yolo", entries=9, extra="resize=1.5").layers[-1]
    delta, _ = head_delta(gauss, torch.zeros(1, 3, 12, 2, 2), truths, 64, 64, 0)
    assert delta.abs().sum() > 0
    data = generate_shapes(tmp_path / "shapes", 2, seed=1, size=64)
    yolo_cfg(tmp_path, classes=5, extra="resize=1.5", size=64)
    cfg = tmp_path / "head.cfg"
    cfg.write_text(cfg.read_text().replace("channels=3", "channels=3\nbatch=2\nmax_batches=1"))
    options = TrainOptions(backup=str(tmp_path / "backup"), workers=0, progress=False)
    with pytest.raises(TrainingError, match="resize=1.5 and random=0 need AlexeyAB's data pipeline"):
        Trainer(data, cfg, overrides=["fork=pjreddie"], options=options)
    Trainer(data, cfg, options=options)  # auto resolves to alexeyab: accepted


@pytest.mark.shared
def test_shipped_gaussian_cfg_builds_and_detects():
    from conftest import SHARED
    net = load(SHARED / "cfg" / "alexeyab" / "Gaussian_yolov3_BDD.cfg", width=64, height=64)
    heads = [net.layers[i] for i in net.heads]
    assert all(isinstance(h, GaussianYolo) for h in heads) and heads[0].settings.iou_loss == "giou"
    out = net(torch.rand(1, 3, 64, 64))
    assert [o.shape[2] for o in out] == [19] * 3
    assert isinstance(heads[0], torch.nn.Module) and not isinstance(heads[0], Yolo)
