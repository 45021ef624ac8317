"""AlexeyAB's training data path against transcriptions of its C (data.c load_data_detection,
fill_truth_detection, blend_truth_mosaic; image_opencv.cpp image_data_augmentation; detector.c
train_detector's random sizes), hand-computed cases, pixels of mosaics, refusals by line, and
a short training run with mosaic=1."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from darknet_py.errors import CfgError
from darknet_py.image import from_bgr
from darknet_py.shapes import generate_shapes
from darknet_py.train import multiscale
from darknet_py.train.augment import Augment, rand_scale
from darknet_py.train.augment_alexeyab import (
    MOSAIC, AlexeyabAugment, ImageDraws, blend_truth, crop_offsets, fill_truth_detection,
    image_data_augmentation, to_mat)
from darknet_py.train.mosaic import Shifts, blend_truth_mosaic, draw_cut, paste, shifts
from darknet_py.train.trainer import Trainer, TrainOptions

from conftest import ROOT
from reference.data_alexeyab import c_blend_truth_mosaic, c_fill_truth_detection, c_mosaic_copy, c_offsets
from reference.detector_alexeyab import c_dims

f = np.float32
TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"


# -- boxes ------------------------------------------------------------------------------------
def rows(*boxes):
    out = np.zeros((len(boxes), 6), f)
    for i, (x, y, w, h, cls) in enumerate(boxes):
        out[i] = (x, y, w, h, cls, 1)
    return out


def test_blend_truth_mosaic_hand_computed():
    """128 x 128 cut at (32, 64): the top-left image moves left by 96/128 and up by 64/128
    (every value here is exact in float)."""
    old = rows((.875, .75, .125, .125, 1),  # lands at x 8..24: kept
               (.9375, .75, .25, .125, 2),  # x 8..40 crosses the cut: kept whole, or cut at 32
               (.25, .75, .125, .125, 3),  # off the canvas
               (.75, .75, .25, .125, 4))  # x -16..16: clipped to 0..16
    old = np.r_[old, np.zeros((4, 6), f)]  # truths come max_boxes rows long, zero after the last
    for bound, second in ((False, (.1875, .25, .25, .125, 2)), (True, (.15625, .25, .1875, .125, 2))):
        new = np.zeros((8, 6), f)
        new[0] = (.5, .5, .1, .1, 0, 1)  # a box already there stays first
        blend_truth_mosaic(new, old, 128, 128, 32, 64, 0, Shifts(0, 0, 0, 0), mosaic_bound=bound)
        np.testing.assert_array_equal(new[1:4, :5], [[.125, .25, .125, .125, 1], second,
                                                     [.0625, .25, .125, .125, 4]])
        assert not new[4:].any()


@pytest.mark.parametrize("mosaic_bound", [False, True])
def test_blend_truth_mosaic_matches_the_c(mosaic_bound):
    rng = np.random.default_rng(3)
    for trial in range(300):
        w, h = int(rng.choice([64, 96, 416])), int(rng.choice([64, 128, 320]))
        cut_x, cut_y = draw_cut(rng, w, h)
        k = int(rng.integers(4))
        s = Shifts(int(rng.integers(0, cut_x + 1)), int(rng.integers(0, w - cut_x + 1)),
                   int(rng.integers(0, cut_y + 1)), int(rng.integers(0, h - cut_y + 1)))
        boxes = 12
        existing = int(rng.integers(0, 5))
        new = np.zeros((boxes, 6), f)
        new[:existing] = np.c_[rng.uniform(.1, .9, (existing, 4)), rng.integers(0, 5, (existing, 1)), np.ones((existing, 1))]
        n_old = int(rng.integers(0, 12))
        old = np.zeros((boxes, 6), f)
        old[:n_old] = np.c_[rng.uniform(.01, .99, (n_old, 2)), rng.uniform(.001, .6, (n_old, 2)),
                            rng.integers(0, 5, (n_old, 1)), np.ones((n_old, 1))]
        expect = new.copy()
        c_blend_truth_mosaic(expect, boxes, old, w, h, cut_x, cut_y, k, s.left, s.right, s.top, s.bot, mosaic_bound)
        blend_truth_mosaic(new, old, w, h, cut_x, cut_y, k, s, mosaic_bound)
        np.testing.assert_array_equal(new, expect, err_msg=f"trial {trial}")


def test_fill_truth_detection_matches_the_c_and_drops_sub_pixel_boxes():
    labels = np.array([[0, .5, .5, .2, .3], [1, .1, .9, .005, .2], [2, 0, 0, .1, .1], [3, .95, .05, .3, .3],
                       [4, .3, .6, .4, .02], [0, .7, .2, .1, .1]], f)
    rng = np.random.default_rng(0)
    for trial in range(200):
        order = rng.permutation(len(labels))
        dx, dy = f(rng.uniform(-.3, .3)), f(rng.uniform(-.3, .3))
        sx, sy = f(rng.uniform(.6, 1.6)), f(rng.uniform(.6, 1.6))
        flip, num = bool(rng.integers(2)), int(rng.integers(1, 8))
        boxes = labels.copy()
        boxes6 = np.c_[boxes, np.ones(len(boxes), f)].astype(f)
        got, got_min = fill_truth_detection(boxes6, order, dx, dy, sx, sy, flip, num, 64, 48)
        want, want_min = c_fill_truth_detection(labels, order, dx, dy, sx, sy, flip, num, 64, 48)
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
        assert got_min == want_min
    # identity: the 0.005-wide box (0.32 px at 64), the 0.02-high one (0.96 px at 48) and the box
    # at (0, 0) are dropped; pjreddie's 0.001 limit would keep the first two
    got, min_w_h = fill_truth_detection(np.c_[labels, np.ones(6, f)].astype(f), np.arange(6), f(0), f(0), f(1), f(1),
                                        False, 10, 64, 48)
    assert [int(c) for c in got[:3, 4]] == [0, 3, 0] and not got[3:].any()
    assert min_w_h == 4  # the last box: 0.1 * 48 = 4.8 pixels high


def test_blend_truth_appends_as_many_as_fit():
    first, second = rows((.5, .5, .1, .1, 1), (.2, .2, .1, .1, 2)), rows((.3, .3, .1, .1, 3))
    a = np.zeros((3, 6), f)
    a[:2] = first
    b = np.zeros((3, 6), f)
    b[:1] = second
    blend_truth(a, b)
    assert list(a[:, 4]) == [1, 2, 3]
    b[:] = rows((.3, .3, .1, .1, 3), (.4, .4, .1, .1, 4), (.6, .6, .1, .1, 5))
    c = np.zeros((3, 6), f)
    c[:2] = first
    blend_truth(c, b)
    assert list(c[:, 4]) == [1, 2, 3]


# -- crop ----------------------------------------------------------------------------------------
def draws(r=(.5, .5, .5, .5), resize_r=(.5, .5), flip=False, corner=False):
    return ImageDraws(resize_r, r, flip, 0.0, 1.0, 1.0, 0, 0, corner)


def test_crop_offsets_hand_computed_letter_box():
    """200 x 100 into 64 x 64: jitter 0.2 gives dw = 40, dh = 20; r1 = 0, r2 = 1 -> pleft -40,
    pright 40; letter_box pads 50 rows above and below so the crop is square."""
    aug = AlexeyabAugment(jitter=.2, hue=0, saturation=1, exposure=1, letter_box=True)
    assert crop_offsets(draws(r=(0, 1, .5, .5)), aug, 200, 100, 64, 64, None) == (-40, 40, -50, -50)
    aug = AlexeyabAugment(jitter=.2, hue=0, saturation=1, exposure=1)
    assert crop_offsets(draws(r=(0, 1, .5, .5)), aug, 200, 100, 64, 64, None) == (-40, 40, 0, 0)


def test_crop_offsets_match_the_c():
    rng = np.random.default_rng(7)
    for trial in range(500):
        ow, oh = int(rng.integers(20, 700)), int(rng.integers(20, 700))
        w, h = int(rng.choice([64, 96, 416])), int(rng.choice([64, 160, 608]))
        jitter, resize = float(rng.choice([0, .1, .3])), float(rng.choice([1, .5, 1.5, 2]))
        letter_box, flip, corner = bool(rng.integers(2)), bool(rng.integers(2)), bool(rng.integers(2))
        k = None if rng.integers(2) else int(rng.integers(4))
        r, resize_r = tuple(f(v) for v in rng.random(4)), tuple(f(v) for v in rng.random(2))
        aug = AlexeyabAugment(jitter=jitter, hue=0, saturation=1, exposure=1, resize=resize, letter_box=letter_box)
        got = crop_offsets(ImageDraws(resize_r, r, flip, 0, 1, 1, 0, 0, corner), aug, ow, oh, w, h, k)
        assert got == c_offsets(ow, oh, w, h, jitter, resize, r, resize_r, letter_box, flip, k, corner), trial


def test_crop_pads_with_the_mean_and_resizes_with_opencv():
    mat = np.zeros((10, 10, 3), np.uint8)
    mat[:, :, 0] = 200
    mat[:5, :, 1] = 100  # mean of channel 1: 50
    out = image_data_augmentation(mat, 20, 10, -10, 0, 20, 10, False, 0, 1, 1, 0, 0, np.zeros((1, 6), f), None)
    assert out.shape == (3, 10, 20)
    padded = np.zeros((10, 20, 3), np.uint8)
    padded[:] = (200, 50, 0)
    padded[:, 10:] = mat
    np.testing.assert_array_equal(out, cv2.resize(padded, (20, 10)).transpose(2, 0, 1) / f(255))


def test_blur_keeps_boxes_sharp_and_noise_only_brightens():
    rng = np.random.default_rng(1)
    mat = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    plain = image_data_augmentation(mat, 64, 64, 0, 0, 64, 64, False, 0, 1, 1, 0, 0, np.zeros((1, 6), f), None)
    truth = np.zeros((2, 6), f)
    truth[0] = (.5, .5, .25, .25, 0, 1)  # pixels 24..40
    blurred = image_data_augmentation(mat, 64, 64, 0, 0, 64, 64, False, 0, 1, 1, 0, 1, truth, None)
    np.testing.assert_array_equal(blurred[:, 24:40, 24:40], plain[:, 24:40, 24:40])
    assert (blurred[:, :20] != plain[:, :20]).mean() > .9
    whole = image_data_augmentation(mat, 64, 64, 0, 0, 64, 64, False, 0, 1, 1, 0, 9, truth, None)
    assert (whole[:, 24:40, 24:40] != plain[:, 24:40, 24:40]).mean() > .9
    noisy = image_data_augmentation(mat, 64, 64, 0, 0, 64, 64, False, 0, 1, 1, 30, 0, truth, np.random.default_rng(2))
    assert (noisy >= plain).all() and .3 < (noisy > plain).mean() < .6  # randn into 8 bits: negatives are 0


# -- mosaic pixels -------------------------------------------------------------------------------
def test_paste_matches_the_c_memcpy():
    rng = np.random.default_rng(5)
    for trial in range(100):
        c, w, h = 3, int(rng.integers(10, 40)), int(rng.integers(10, 40))
        cut_x, cut_y = draw_cut(rng, w, h)
        s = Shifts(int(rng.integers(0, cut_x + 1)), int(rng.integers(0, w - cut_x + 1)),
                   int(rng.integers(0, cut_y + 1)), int(rng.integers(0, h - cut_y + 1)))
        canvas, flat = np.zeros((c, h, w), f), np.zeros(c * h * w, f)
        for k in range(4):
            ai = rng.random((c, h, w)).astype(f)
            paste(canvas, ai, k, cut_x, cut_y, s)
            c_mosaic_copy(flat, ai.ravel(), w, h, c, cut_x, cut_y, k, s.left, s.right, s.top, s.bot)
        np.testing.assert_array_equal(canvas.ravel(), flat, err_msg=f"trial {trial}")


def test_shifts_take_padding_out_of_view():
    # pleft -20 of a 100-wide image at net width 50: 10 pixels of padding on the left; flipped, on the right
    assert shifts(-20, 5, 0, -30, False, 100, 100, 50, 50, 30, 20) == Shifts(10, 0, 0, 15)
    assert shifts(-20, 5, 0, -30, True, 100, 100, 50, 50, 30, 20) == Shifts(0, 10, 0, 15)
    assert shifts(-90, 0, 0, 0, False, 100, 100, 50, 50, 30, 20).left == 30  # capped by the cut


def mosaic_seed(w, h):
    """A seed whose sample is a mosaic, and its cut point (the sample's first draws)."""
    for seed in range(100):
        rng = np.random.default_rng(seed)
        if rng.integers(2):
            return seed, draw_cut(rng, w, h)
    raise AssertionError("no mosaic in 100 seeds")


def test_mosaic_quadrants_come_from_the_four_images_at_the_cut():
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    images = [np.broadcast_to(np.array(col, f)[:, None, None] / f(255), (3, 30, 40)).copy() for col in colours]
    boxes = [np.array([[i, .5, .5, .9, .9]], f) for i in range(4)]
    aug = AlexeyabAugment(jitter=0, hue=0, saturation=1, exposure=1, use_mixup=MOSAIC)
    seed, (cut_x, cut_y) = mosaic_seed(64, 48)
    others = iter(zip(images[1:], boxes[1:]))
    out, truths = aug.sample(images[0], boxes[0], np.random.default_rng(seed), 64, 48, 10, lambda: next(others))
    quadrants = [out[:, :cut_y, :cut_x], out[:, :cut_y, cut_x:], out[:, cut_y:, :cut_x], out[:, cut_y:, cut_x:]]
    for k, (quadrant, col) in enumerate(zip(quadrants, colours)):
        np.testing.assert_array_equal(quadrant, np.broadcast_to(np.array(col, f)[:, None, None] / f(255),
                                                                quadrant.shape), err_msg=f"image {k}")
    n = int((truths[:, 0] > 0).sum())
    assert sorted(truths[:n, 4]) == [0, 1, 2, 3]  # each image's box, cut to its quadrant's reach


def test_sample_is_a_function_of_the_generator():
    rng = np.random.default_rng(0)
    images = [rng.random((3, 50, 70)).astype(f) for _ in range(5)]
    boxes = np.array([[0, .5, .5, .3, .3], [1, .2, .3, .2, .2]], f)
    aug = AlexeyabAugment(jitter=.3, hue=.1, saturation=1.5, exposure=1.5, blur=3, gaussian_noise=10,
                          use_mixup=MOSAIC)

    def make(seed):
        pick = np.random.default_rng(seed + 100)
        return aug.sample(images[0], boxes, np.random.default_rng(seed), 64, 64, 20,
                          lambda: (images[int(pick.integers(1, 5))], boxes))

    for seed in range(6):
        (a, ta), (b, tb) = make(seed), make(seed)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ta, tb)
        assert a.shape == (3, 64, 64) and a.dtype == f and 0 <= a.min() and a.max() <= 1


def test_to_mat_recovers_the_8_bit_image():
    bgr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_mat(from_bgr(bgr)), bgr[:, :, ::-1])


# -- random sizes --------------------------------------------------------------------------------


def test_random_sizes_match_the_c():
    assert multiscale.largest(1, 416, 416, 32) == (608, 608)  # round(1.4 * 13 + 1) * 32
    assert multiscale.largest(1.2, 416, 416, 32) == (544, 544)  # round(15.6 + 1) * 32
    for random, (w, h), step in [(1, (416, 416), 32), (1.2, (608, 320), 32), (1.5, (96, 64), 16), (.7, (64, 64), 32)]:
        for iteration in range(0, 1000, 10):
            rng = np.random.default_rng(iteration)
            got = multiscale.size_at(random, w, h, step, iteration + 3, 1000, rng)
            value = rand_scale(np.random.default_rng(iteration), multiscale.coefficient(random))
            assert got == c_dims(random, w, h, step, value, iteration == 0 or iteration > 900), (random, iteration)


# -- the trainer ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), 12, seed=5, size=96)


def net_cfg(tmp_path, *lines):
    """tiny-yolo.cfg with ``lines`` added at the end of [net]; returns (path, first added line)."""
    text = TINY.read_text().splitlines()
    at = text.index("exposure=1.5") + 1
    path = tmp_path / "tiny-ab.cfg"
    path.write_text("\n".join(text[:at] + list(lines) + text[at:]) + "\n")
    return path, at + 1


def opts(tmp_path, **kw):
    return TrainOptions(backup=str(tmp_path / "backup"), workers=0, progress=False, **kw)


@pytest.mark.parametrize("option", ["weights_reject_freq=10", "adversarial_lr=0.05", "track=1", "contrastive=1",
                                    "dynamic_minibatch=1", "try_fix_nan=1"])
def test_unimplemented_training_options_are_refused_by_name_and_line(shapes, tmp_path, option):
    cfg, line = net_cfg(tmp_path, "mosaic=1", option)
    with pytest.raises(CfgError) as e:
        Trainer(shapes, cfg, options=opts(tmp_path))
    key = option.split("=")[0]
    assert e.value.option == key and e.value.line == line + 1 and f"{cfg}:{line + 1}" in str(e.value)


def test_pipeline_options_need_alexeyab_and_mixup_is_0_to_4(shapes, tmp_path):
    cfg, line = net_cfg(tmp_path, "fork=pjreddie", "blur=1")
    with pytest.raises(CfgError, match="blur=1 is an option of AlexeyAB") as e:
        Trainer(shapes, cfg, options=opts(tmp_path))
    assert e.value.line == line + 1
    cfg, line = net_cfg(tmp_path, "mixup=5")
    with pytest.raises(CfgError, match="mixup=5") as e:
        Trainer(shapes, cfg, options=opts(tmp_path))
    assert e.value.line == line


def test_options_without_effect_on_training_are_accepted(shapes, tmp_path, caplog):
    cfg, line = net_cfg(tmp_path, "cutmix=1", "optimized_memory=1", "label_smooth_eps=0.1", "flip=0")
    with caplog.at_level(logging.WARNING):
        t = Trainer(shapes, cfg, overrides=["max_batches=1"], options=opts(tmp_path))
    assert f"{cfg}:{line}" in caplog.text and "cutmix" in caplog.text
    assert isinstance(t.samples.augment, AlexeyabAugment)
    assert t.samples.augment.use_mixup == 0 and t.samples.augment.flip is False


def test_flip_0_is_honoured_in_pjreddies_pipeline(shapes, tmp_path):
    cfg, _ = net_cfg(tmp_path, "fork=pjreddie", "flip=0")
    t = Trainer(shapes, cfg, overrides=["max_batches=1"], options=opts(tmp_path))
    assert isinstance(t.samples.augment, Augment) and t.samples.augment.flip is False


def test_mosaic_trains_through_the_trainer(shapes, tmp_path):
    cfg, _ = net_cfg(tmp_path, "mosaic=1", "blur=1", "gaussian_noise=10", "letter_box=1", "resize_step=16")
    text = cfg.read_text().replace("random=0", "random=1.2")
    cfg.write_text(text)
    t = Trainer(shapes, cfg, overrides=["max_batches=3"], options=opts(tmp_path, mixup=0.5))
    assert t.cfg.fork == "alexeyab" and t.samples.augment.use_mixup == MOSAIC
    assert t.samples.augment.letter_box and t.samples.augment.blur == 1
    assert t.size_at(0) == multiscale.largest(1.2, 64, 64, 16) == (96, 96)
    result = t.run()
    assert result.iteration == 3 and np.isfinite(result.losses).all()
