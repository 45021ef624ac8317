"""Darknet's detection augmentation against slow, literal transcriptions of its C
(tests/reference/data_pjreddie.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darknet_py.train.augment import (
    Augment, Draws, apply_detection, detection_sample, distort_image, draw_detection, hsv_to_rgb,
    mixup, place_image, randomize_boxes, rgb_to_hsv,
)

from reference.data_pjreddie import (
    c_distort_image, c_hsv_to_rgb, c_load_data_detection, c_place_image, c_rgb_to_hsv, order_of,
)

F32 = np.float32
ONE = F32(1)
CFG = Path(__file__).resolve().parents[1] / "cfg"


# --- the tests ------------------------------------------------------------------------------

def sample_image(seed=0, c=3, h=5, w=7):
    rng = np.random.default_rng(seed)
    im = rng.random((c, h, w), dtype=F32)
    im[:, 0, 0] = 0.25   # grey: Darknet's hue is 0/0 there
    im[:, 0, 1] = 0      # black
    im[:, 1, 0] = (1, 0, 0)
    im[:, 1, 1] = (1, 1, 0)
    return im


ROWS = [(0, .5, .5, .4, .6), (2, .1, .2, .2, .1), (1, .9, .85, .3, .3), (0, .3, .7, .0005, .2),
        (1, .6, .05, .5, .2)]

CASES = [
    # nw, nh, dx, dy, hue, sat, exp, flip, randomize_boxes' draws, max_boxes, canvas w, h
    (13.0, 8.3, 0.0, 1.6, 0.05, 1.5, 0.8, False, [2, 0, 4, 4, 1], 90, 13, 11),
    (15.7, 12.2, -2.6, -0.4, -0.1, 0.7, 1.4, True, [1, 1, 0, 3, 2], 90, 13, 11),
    (9.4, 11.0, 3.9, 0.0, 0.45, 1.0, 1.0, True, [4, 3, 2, 1, 0], 3, 13, 11),
    (20.0, 5.5, 0.7, 9.9, -0.45, 1.2, 1.2, False, [0, 0, 0, 0, 0], 2, 16, 12),
]


@pytest.mark.parametrize("case", CASES)
def test_apply_detection_matches_the_c(case):
    nw, nh, dx, dy, hue, sat, exp, flip, indices, max_boxes, w, h = case
    orig = sample_image()
    draws = Draws(nw, nh, dx, dy, hue, sat, exp, flip, order_of(indices))
    image, truths = apply_detection(orig, np.array(ROWS, F32), w, h, draws, max_boxes)
    c_image, c_truth = c_load_data_detection(orig, ROWS, w, h, max_boxes, F32(nw), F32(nh), F32(dx), F32(dy),
                                             hue, sat, exp, flip, indices)
    np.testing.assert_array_equal(image, c_image)
    n = len(c_truth)
    np.testing.assert_array_equal(truths[:n, :5], c_truth)
    np.testing.assert_array_equal(truths[:n, 5], 1)
    assert not truths[n:].any() and truths.shape == (max_boxes, 6)


def test_place_image_matches_the_c_off_every_edge():
    orig = sample_image(h=6, w=9)
    for w, h, dx, dy in [(11, 7, -3, 2), (4, 13, 6, -5), (20, 20, -4, -4), (3, 2, 9, 0), (0, 5, 1, 1)]:
        ours, theirs = (np.full((3, 10, 8), 0.5, F32) for _ in range(2))
        place_image(orig, w, h, dx, dy, ours)
        c_place_image(orig, w, h, dx, dy, theirs)
        np.testing.assert_array_equal(ours, theirs)


def test_rgb_to_hsv_matches_the_c_and_round_trips():
    im = sample_image(seed=3, h=9, w=11)
    im[:, 2, 2] = 1.0
    im[:, 3, 3] = (0.2, 0.7, 0.7)   # ties between channels
    hsv, c_hsv = rgb_to_hsv(im), c_rgb_to_hsv(im)
    grey = np.isnan(c_hsv[0])
    assert grey.sum() == 2 and (hsv[0][grey] == 0).all()
    np.testing.assert_array_equal(hsv[:, ~grey], c_hsv[:, ~grey])
    np.testing.assert_array_equal(hsv[1:], c_hsv[1:])
    np.testing.assert_allclose(hsv_to_rgb(hsv), im, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(hsv_to_rgb(hsv), c_hsv_to_rgb(hsv))


def test_hue_of_exactly_one_takes_darknets_last_sector():
    hsv = np.array([1.0, 0.5, 0.8], F32).reshape(3, 1, 1)
    np.testing.assert_array_equal(hsv_to_rgb(hsv), c_hsv_to_rgb(hsv))
    np.testing.assert_allclose(hsv_to_rgb(hsv).ravel(), [0.8, 0.4, 0.8])


@pytest.mark.parametrize("hue, sat, val", [(0.3, 1.5, 0.7), (-0.2, 0.5, 1.6), (0.0, 1.0, 1.0)])
def test_distort_image_matches_the_c(hue, sat, val):
    im = sample_image(seed=5)
    np.testing.assert_array_equal(distort_image(im, hue, sat, val), c_distort_image(im, hue, sat, val))


def test_flip_mirrors_image_and_boxes():
    orig = sample_image(seed=7, h=8, w=8)
    rows = np.array([(0, .3, .4, .2, .3), (1, .8, .5, .3, .2)], F32)
    kept, flipped = (apply_detection(orig, rows, 12, 12, Draws(12, 12, 0, 0, 0.1, 1.2, 0.9, flip, np.arange(2)), 5)
                     for flip in (False, True))
    np.testing.assert_array_equal(flipped[0], kept[0][:, :, ::-1])
    np.testing.assert_allclose(flipped[1][:2, 0], 1 - kept[1][:2, 0], atol=1e-6)
    np.testing.assert_allclose(flipped[1][:2, 1:], kept[1][:2, 1:], atol=1e-6)  # 1 - right: rounding


def test_tiny_boxes_dropped_and_max_boxes_kept_after_the_shuffle():
    rows = np.array(ROWS, F32)
    draws = Draws(10, 10, 0, 0, 0, 1, 1, False, np.array([3, 0, 1, 2, 4]))
    _, truths = apply_detection(sample_image(), rows, 10, 10, draws, 3)
    # rows 3 (too narrow), 0, 1 are the first three; 3 is dropped and the rest packed
    np.testing.assert_allclose(truths[:, 4], [0, 2, 0])
    np.testing.assert_allclose(truths[0, :4], [.5, .5, .4, .6], atol=1e-6)
    assert not truths[2].any()


def test_box_centred_at_the_origin_is_darknets_no_box_marker():
    rows = np.array([(1, 0, 0, .4, .4), (0, .5, .5, .2, .2)], F32)
    _, truths = apply_detection(sample_image(), rows, 10, 10, Draws(10, 10, 0, 0, 0, 1, 1, False, np.arange(2)), 4)
    assert truths[0, 4] == 0 and not truths[1].any()


def test_randomize_boxes_is_darknets_swap_loop():
    indices = np.random.default_rng(11).integers(6, size=6)
    np.testing.assert_array_equal(randomize_boxes(np.random.default_rng(11), 6), order_of(list(indices)))
    assert len(randomize_boxes(np.random.default_rng(1), 0)) == 0


def test_draws_follow_load_data_detection():
    aug = Augment(jitter=0, hue=0, saturation=1, exposure=1, flip=False)
    d = draw_detection(np.random.default_rng(2), aug, ow=200, oh=100, w=64, h=48, n_boxes=3)
    assert (d.nw, d.nh) == (64, np.float32(32))        # scale 1, aspect kept, width fills
    assert 0 <= d.dy <= 48 - 32 and d.dx == 0
    assert (d.hue, d.saturation, d.exposure, d.flip) == (0, 1, 1, False)
    aug = Augment(jitter=.3, hue=.1, saturation=1.5, exposure=1.5)
    for seed in range(20):
        d = draw_detection(np.random.default_rng(seed), aug, 100, 100, 64, 64, 2)
        assert min(d.nw, d.nh) <= 64 and max(d.nw, d.nh) == 64
        assert -.1 <= d.hue <= .1 and 1 / 1.5 <= d.saturation <= 1.5 and 1 / 1.5 <= d.exposure <= 1.5


def test_detection_sample_is_a_function_of_the_generator():
    orig, rows = sample_image(), np.array(ROWS, F32)
    aug = Augment(jitter=.3, hue=.1, saturation=1.5, exposure=1.5)
    a = detection_sample(orig, rows, 16, 16, aug, np.random.default_rng(4), 10)
    b = detection_sample(orig, rows, 16, 16, aug, np.random.default_rng(4), 10)
    c = detection_sample(orig, rows, 16, 16, aug, np.random.default_rng(5), 10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32 and a[0].shape == (3, 16, 16) and 0 <= a[0].min() <= a[0].max() <= 1


def test_mixup_geometry_and_weights():
    a, b = np.ones((3, 4, 6), F32), np.full((3, 8, 2), 2, F32)
    image, boxes = mixup(a, np.array([(0, .5, .5, .5, .5)], F32), b, np.array([(1, .5, .5, 1, 1)], F32), 0.25)
    assert image.shape == (3, 8, 6)
    np.testing.assert_allclose(image[:, :4, :2], 0.25 + 1.5)
    np.testing.assert_allclose(image[:, :4, 2:], 0.25)
    np.testing.assert_allclose(image[:, 4:, :2], 1.5)
    np.testing.assert_array_equal(image[:, 4:, 2:], 0)
    np.testing.assert_allclose(boxes, [(0, .5, .25, .5, .25, .25), (1, 1 / 6, .5, 1 / 3, 1, .75)], rtol=1e-6)


def test_augment_from_the_network():
    from darknet_py.model import Darknet
    model = Darknet(CFG / "yolov3-tiny.cfg", init=False)
    aug = Augment.from_net(model.net, model.layers[model.heads[-1]])
    assert aug == Augment(jitter=.3, hue=.1, saturation=1.5, exposure=1.5, flip=True, mixup=0.0)
