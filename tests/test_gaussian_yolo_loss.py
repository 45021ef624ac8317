"""[Gaussian_yolo] training deltas against a literal transcription of AlexeyAB's
src/gaussian_yolo_layer.c (tests/reference/gaussian_yolo_layer.py: forward_gaussian_yolo_layer,
delta_gaussian_yolo_box, delta_gaussian_yolo_class, averages_gaussian_yolo_deltas), in double
precision on flat lists with entry_gaussian_index. Truth weights are 1 here.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darknet_py.layers.gaussian_yolo import GaussianYolo
from darknet_py.train.deltas import head_delta
from darknet_py.train.trainer import Trainer

from reference.gaussian_yolo_layer import c_forward_gaussian
from test_heads_alexeyab import random_truths, yolo_cfg
from test_train import opts, shapes  # noqa: F401 (fixture)

F32 = np.float32


CASES = [
    "iou_loss=mse\niou_normalizer=0.5\nuc_normalizer=0.7\nignore_thresh=.3",
    "iou_loss=giou\niou_normalizer=0.5\nuc_normalizer=1.3\nobj_normalizer=0.4\niou_thresh=0.2\n"
    "label_smooth_eps=0.1\nignore_thresh=.3\nscale_x_y=1.05",
    "iou_loss=ciou\niou_normalizer=0.07\niou_thresh=0.213\nmax_delta=0.4\nignore_thresh=.35\n"
    "objectness_smooth=1\ncounters_per_class=5,9,3\ncls_normalizer=0.5",
    "iou_loss=diou\niou_normalizer=0.3\niou_thresh=0.25\niou_thresh_kind=giou\ntruth_thresh=0.45\n"
    "ignore_thresh=.3\nyolo_point=left_top",
    "iou_loss=mse\niou_normalizer=0.75\niou_thresh=0.2\ntruth_thresh=0.5\nobjectness_smooth=1\n"
    "ignore_thresh=.3\nyolo_point=right_bottom\nmax_delta=3",
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_gaussian_deltas_match_alexeyab_c(case, tmp_path):
    layer = yolo_cfg(tmp_path, mask="1,2,3", kind="Gaussian_yolo", entries=9, extra=CASES[case]).layers[-1]
    assert isinstance(layer, GaussianYolo)
    gen = torch.Generator().manual_seed(10 + case)
    lw, lh, net_wh = 6, 5, 96
    x = 1.2 * torch.randn(2, 3, 12, lh, lw, generator=gen, dtype=torch.float64)
    x[:, :, 9:, :, ::2] += 1.5  # some cells have a class output above .25, others not:
    x[:, :, 9:, :, 1::2] -= 3.0  # ignore_thresh applies only to the first
    truths = random_truths(gen, [6, 8], 3, 14, lw, lh, near=3).double()
    want, want_cost, printed, seen = c_forward_gaussian(x, truths, layer, net_wh, net_wh)
    delta, stats = head_delta(layer, x, truths, net_wh, net_wh, 0, 0.0)
    torch.testing.assert_close(delta, want, atol=1e-9, rtol=1e-7)
    assert stats.cost == pytest.approx(want_cost, rel=1e-9)
    for key, value in printed.items():
        assert getattr(stats, key) == pytest.approx(value, rel=1e-9, abs=1e-12), key
    # matched, ignored, not matched (no class above .25) and unmatched cells; shared cells
    assert seen["ignored"] and seen["not_matched"] and seen["unmatched"] and seen["accumulated"]
    if "iou_thresh=" in CASES[case]:
        assert seen["extra"] and seen["averaged"]
    if "truth_thresh" in CASES[case]:
        assert seen["hit"]
    if "objectness_smooth" in CASES[case]:
        assert seen["quirk"]


def test_float32_deltas_are_close_to_the_double_transcription(tmp_path):
    layer = yolo_cfg(tmp_path, mask="1,2,3", kind="Gaussian_yolo", entries=9, extra=CASES[2]).layers[-1]
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 12, 5, 6, generator=gen)
    truths = random_truths(gen, [4, 5], 3, 10, 6, 5)
    want = c_forward_gaussian(x.double(), truths.double(), layer, 96, 96)[0]
    delta = head_delta(layer, x, truths, 96, 96, 0)[0]
    assert delta.dtype == torch.float32
    torch.testing.assert_close(delta.double(), want, atol=2e-5, rtol=2e-4)


def test_hand_built_case(tmp_path):
    """2x2 grid at 64x64, anchors 16, 32, 48 px square, mask 0,1,2, one class; raw input 0
    everywhere: means x, y = .5 (cell centres), w, h = exp(0) * anchor; every sigma .5; class and
    objectness outputs .5. One truth (.25, .25, .5, .5) = 32 px square in cell (0, 0).

    Best anchor 1 (slot 1), shape IoU 1. Loop 1: slot 1's box in cell (0, 0) is the truth (IoU
    1 > ignore_thresh .7): objectness 0; slot 2 there (48 px, IoU 1024/2304 = .444) and every
    other box get -obj_normalizer * .5 = -.5. Loop 2 writes slot 1 at cell (0, 0), scale
    2 - .25 = 1.75: x, y, w, h targets equal the means (offset .5, log(32/32) = 0), so the mean
    deltas are 0 and each sigma delta is 1.75/2 * (0 - 1/(.5 + .3)) * uc_normalizer (2) =
    -2.1875. Objectness 1 - .5, class 1 - .5; one positive class delta: nothing divided.
    """
    layer = yolo_cfg(tmp_path, classes=1, mask="0,1,2", num=3, anchors="16,16, 32,32, 48,48", kind="Gaussian_yolo",
                     entries=9, extra="uc_normalizer=2\nignore_thresh=.7", size=64).layers[-1]
    x = torch.zeros(1, 3, 10, 2, 2)
    truths = torch.tensor([[[.25, .25, .5, .5, 0, 1]]])
    delta, stats = head_delta(layer, x, truths, 64, 64, 0)
    want = torch.zeros_like(x)
    want[0, :, 8] = -.5
    want[0, 1, 8, 0, 0] = .5
    want[0, 1, 9, 0, 0] = .5
    want[0, 1, 1:8:2, 0, 0] = 1.75 / 2 * -(1 / .8) * 2
    torch.testing.assert_close(delta, want)
    assert stats.count == 1 and stats.avg_iou == pytest.approx(1.0)
    assert stats.cost == pytest.approx(float(want.square().sum()), rel=1e-6)
    assert stats.uc_loss == pytest.approx(2 * 2.1875 ** 2, rel=1e-6)  # sigma_w, sigma_h
    assert stats.iou_loss == pytest.approx(2 * 2.1875 ** 2, rel=1e-6)  # sigma_x, sigma_y (as the C splits)


GAUSSIAN_TINY = """[net]
batch=4
subdivisions=1
width=64
height=64
channels=3
learning_rate=0.001
max_batches=2
policy=constant

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=42
activation=linear

[Gaussian_yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=5
num=3
iou_loss=giou
iou_normalizer=0.5
uc_normalizer=1.0
iou_thresh=0.213
"""


def test_two_iterations_through_the_trainer(shapes, tmp_path):  # noqa: F811
    cfg = tmp_path / "gauss.cfg"
    cfg.write_text(GAUSSIAN_TINY)
    t = Trainer(shapes, cfg, options=opts(tmp_path))
    before = {k: v.clone() for k, v in t.net.state_dict().items()}
    t.run()
    assert t.iteration == 2
    assert any(not torch.equal(v, t.net.state_dict()[k]) for k, v in before.items() if "weight" in k)
    (_, stats), = t.last_record.head_stats
    assert stats.count > 0 and math.isfinite(stats.cost) and stats.uc_loss > 0
