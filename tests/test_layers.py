"""Layer modules against slow, literal transcriptions of Darknet's C loops.

Each ``darknet_*`` reference (``reference/layers_pjreddie.py``, ``reference/activations.py``,
``reference/image_pjreddie.py``) follows pjreddie/darknet's C code loop by loop and index by
index (``maxpool_layer.c``, ``blas.c``, ``local_layer.c``, ``im2col.c``, ``softmax_layer.c``,
``region_layer.c``, ``yolo_layer.c``, ``detection_layer.c``, ``activations.h``, ``image.c``;
AlexeyAB's fork for the activations pjreddie lacks). They work on flat float32 buffers with
numpy float32 scalars where the C code uses ``float``, and Python floats (double) where it
calls ``exp``/``floor`` or uses a double constant. Inputs are tiny so the loops stay fast.

Comparisons are exact where Darknet's arithmetic is reproducible (maxpool, reorg, nearest
upsample, resize_image, letterbox_image); elsewhere within float32 rounding of the reference.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py import letterbox
from darknet_py.activations import ACTIVATIONS, Activation
from darknet_py.cfg import parse_cfg_text
from darknet_py.image import letterbox_geometry, resize_image
from darknet_py.layers.base import DarknetBatchNorm
from darknet_py.layers.conv import Local
from darknet_py.layers.heads import Detection, DetectionSettings, Region, RegionSettings, Yolo, YoloSettings
from darknet_py.layers.merge import Shortcut
from darknet_py.layers.pool import MaxPool
from darknet_py.layers.resample import Reorg, Upsample
from darknet_py.layers.simple import Softmax
from darknet_py.model import plan_network
from darknet_py.registry import Shape

from reference import batchnorm as bn_ref
from reference.activations import DARKNET_ACTIVATIONS, darknet_activate_array
from reference.cmath import c_div
from reference.image_pjreddie import darknet_letterbox_image, darknet_letterbox_size, darknet_resize_image
from reference.layers_pjreddie import (
    FLT_MAX, darknet_detection, darknet_local, darknet_maxpool, darknet_region, darknet_reorg, darknet_shortcut,
    darknet_softmax_layer, darknet_upsample, darknet_yolo, local_out_size)

F32 = np.float32


# ---------------------------------------------------------------------------------------------
# helpers


def randn(seed, *shape, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + shift).astype(F32)


def run(module, *arrays):
    """numpy float32 in, numpy float32 out, in eval mode and without autograd."""
    module.eval()
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
    assert out.dtype == torch.float32
    return out.numpy()


def assert_close(got, ref, rtol=1e-6, atol=1e-7):
    got = np.asarray(got)
    assert got.size == ref.size, (got.shape, ref.shape)
    np.testing.assert_allclose(got.reshape(-1), np.asarray(ref).reshape(-1), rtol=rtol, atol=atol)


def assert_sums_close(got, ref, magnitude, rel=2e-6):
    """For sums Darknet accumulates in another order: the error may be a few float32 ulps of
    the sum of the terms' magnitudes (``magnitude``, the same loop run on absolute values)."""
    got, ref, magnitude = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (got, ref, magnitude))
    assert got.size == ref.size
    err = np.abs(got - ref)
    bound = rel * magnitude + 1e-6 * np.abs(ref) + 1e-7
    bad = err > bound
    assert not bad.any(), f"{bad.sum()} of {bad.size} differ; worst {err[bad][:5]} > {bound[bad][:5]}"


# ---------------------------------------------------------------------------------------------
# activations: against reference/activations.py (both forks' formulas as written in C)


# |x| <= 100: beyond x ~ 354.9 pjreddie's tanh_activate computes exp(2x) = inf, inf/inf = NaN.
ACTIVATION_GRID = np.unique(np.concatenate([
    np.array([-100, -88, -50, -30, -20.5, -20, -19.5, -18, -10, -6, -5, -4.5, -4, -3.5, -2.5,
              -2.0001, -2, -1.9999, -1e-3, -1e-6, -1e-30, 0, 1e-30, 1e-6, 1e-3, 0.9999, 1.0001,
              5.9999, 6.0001, 6.5, 10, 18, 19.5, 20, 20.5, 30, 50, 88, 100]),
    np.arange(-8, 8.001, 0.25),                     # integers and halves: every kink and stair
    np.random.default_rng(0).uniform(-12, 12, 200),
]).astype(F32))

def test_every_darknet_py_activation_has_a_reference():
    missing = sorted(set(ACTIVATIONS) - set(DARKNET_ACTIVATIONS))
    assert not missing, f"activations without a Darknet reference in reference/activations.py: {missing}"


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_darknet_formula(name):
    ref = darknet_activate_array(ACTIVATION_GRID, name)
    got = run(Activation(name), ACTIVATION_GRID)
    assert got.shape == ACTIVATION_GRID.shape
    # 1e-6 relative; 1e-7 absolute covers float32 cancellation (loggy, gelu near their zeros)
    bad = np.abs(got.astype(np.float64) - ref) > 1e-6 * np.abs(ref) + 1e-7
    if bad.any():
        rows = [f"x={x:.9g}: darknet_py {g:.9g}, Darknet {r:.9g}"
                for x, g, r in zip(ACTIVATION_GRID[bad][:6], got[bad][:6], ref[bad][:6])]
        pytest.fail(f"{name}: {bad.sum()} of {bad.size} values differ:\n" + "\n".join(rows))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_keeps_shape_and_is_elementwise(name):
    x = randn(1, 2, 3, 4, 5, scale=4.0)
    got = run(Activation(name), x)
    assert got.shape == x.shape
    flat = run(Activation(name), x.reshape(-1))
    np.testing.assert_array_equal(got.reshape(-1), flat)


# ---------------------------------------------------------------------------------------------
# [maxpool]: forward_maxpool_layer


MAXPOOL_CASES = [  # size, stride, padding, h, w
    (2, 1, 1, 5, 5),    # yolov3-tiny's 13x13 -> 13x13 (pads one column/row after only)
    (2, 1, 1, 4, 6),
    (2, 1, 1, 1, 1),
    (2, 2, 1, 5, 5),    # default padding, odd size
    (2, 2, 1, 4, 4),    # default padding, even size
    (2, 2, 1, 7, 4),
    (2, 2, 1, 1, 3),
    (2, 2, 0, 5, 5),
    (2, 2, 0, 6, 3),
    (3, 2, 0, 5, 5),
    (3, 2, 0, 6, 7),
    (3, 2, 1, 5, 5),
    (3, 2, 1, 6, 4),
    (3, 2, 2, 5, 5),    # default padding for size 3
    (3, 2, 2, 6, 7),
    (3, 1, 2, 1, 1),
    (3, 3, 2, 7, 5),
    (5, 1, 4, 6, 5),    # yolov3-spp
    (1, 2, 0, 5, 4),
]


@pytest.mark.parametrize("size,stride,padding,h,w", MAXPOOL_CASES)
def test_maxpool(size, stride, padding, h, w):
    x = randn(size * 100 + h * 10 + w, 2, 3, h, w, shift=-3.0)  # mostly negative: padding must lose
    ref = darknet_maxpool(x, size, stride, padding)
    got = run(MaxPool(size, stride, padding), x)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("path", ["direct", "quadrants"])
def test_maxpool_2x2_paths_give_darknets_values_channels_last(monkeypatch, path):
    """Inference may run a 2x2 stride-2 [maxpool] as the maximum of four strided quadrants where
    the tuner timed it faster; either path gives forward_maxpool_layer's values. (Not for NaN:
    Darknet's ``val > max`` skips it, both paths propagate it.)"""
    from darknet_py import tuner
    stub = tuner.Tuner(timer=lambda paths: tuner.Timing({
        name: [1.0 if name == path else 2.0] for name in paths}))
    monkeypatch.setattr(tuner, "_default", stub)
    x = randn(11, 2, 5, 6, 8, shift=-3.0)
    x[1, 0, 4, 6] = x[1, 0, 5, 7] = -np.inf
    x[0, 1, 2, 2:4] = 0.5  # ties
    ref = darknet_maxpool(x, 2, 2, 1)
    layer = MaxPool(2, 2, 1).eval()
    with torch.no_grad():
        got = layer(torch.from_numpy(x).contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last) and list(layer._paths.values()) == [path]
    np.testing.assert_array_equal(got.numpy(), ref)
    assert stub.timed == 1


def test_maxpool_window_wholly_outside_the_image_gives_minus_flt_max():
    # [maxpool] size=2 stride=2 padding=3 is accepted by build_maxpool (padding//2 < size);
    # on a 3x3 input the third window covers rows/columns 3..4, all outside.
    x = randn(7, 1, 2, 3, 3)
    ref = darknet_maxpool(x, 2, 2, 3)
    assert ref.shape == (1, 2, 3, 3) and (ref == -FLT_MAX).any()
    np.testing.assert_array_equal(run(MaxPool(2, 2, 3), x), ref)


@pytest.mark.parametrize("body,size,stride,padding", [
    ("stride=2", 2, 2, 1),                 # size defaults to stride, padding to size-1
    ("stride=1\nsize=2", 2, 1, 1),
    ("size=3\nstride=2", 3, 2, 2),
    ("size=3\nstride=2\npadding=0", 3, 2, 0),
    ("stride=3", 3, 3, 2),
    ("size=5\nstride=1", 5, 1, 4),
])
@pytest.mark.parametrize("h,w", [(7, 5), (6, 6)])
def test_maxpool_section_defaults(body, size, stride, padding, h, w):
    _, specs, _ = plan_network(parse_cfg_text(
        f"[net]\nwidth={w}\nheight={h}\nchannels=2\n[maxpool]\n{body}\n"))
    module = specs[0].make()
    assert (module.size, module.stride, module.padding) == (size, stride, padding)
    x = randn(h * w, 1, 2, h, w, shift=-2.0)
    ref = darknet_maxpool(x, size, stride, padding)
    assert (specs[0].out.c, specs[0].out.h, specs[0].out.w) == ref.shape[1:]
    np.testing.assert_array_equal(run(module, x), ref)


# ---------------------------------------------------------------------------------------------
# [reorg]: forward_reorg_layer -> reorg_cpu(net.input, l.w, l.h, l.c, l.batch, l.stride, fwd, out)


@pytest.mark.parametrize("stride,reverse,c,h,w", [
    (2, False, 4, 4, 6),
    (2, False, 8, 2, 2),
    (2, False, 12, 6, 4),
    (3, False, 9, 3, 6),
    (1, False, 3, 2, 5),
    (2, True, 4, 4, 6),
    (2, True, 8, 3, 2),
    (2, True, 12, 1, 1),
    (3, True, 18, 2, 3),
    (1, True, 3, 2, 5),
])
def test_reorg(stride, reverse, c, h, w):
    x = randn(c * 100 + h * 10 + w, 2, c, h, w)
    ref = darknet_reorg(x, stride, reverse)
    assert not np.isnan(ref).any()          # reorg_cpu wrote every output cell
    got = run(Reorg(stride, reverse), x)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------------------------------
# [shortcut]: copy_cpu(prev -> output); shortcut_cpu(l.batch, l.w, l.h, l.c, from, l.out_w,
#             l.out_h, l.out_c, l.alpha, l.beta, l.output); activate_array


@pytest.mark.parametrize("prev_shape,from_shape", [
    ((2, 3, 4, 4), (2, 3, 4, 4)),       # same shape
    ((2, 3, 4, 4), (2, 3, 8, 8)),       # from larger by 2x: sampled every 2nd cell
    ((1, 3, 6, 4), (1, 3, 12, 8)),
    ((1, 3, 8, 6), (1, 3, 4, 3)),       # from smaller by 2x: spread every 2nd cell
    ((2, 2, 4, 4), (2, 2, 2, 2)),
    ((1, 4, 3, 3), (1, 2, 3, 3)),       # fewer channels in from: the rest passes through
    ((1, 2, 3, 5), (1, 5, 3, 5)),       # more channels in from: the extra ones are unused
    ((1, 4, 4, 4), (1, 2, 8, 8)),       # larger and fewer channels
    ((1, 2, 6, 6), (1, 5, 3, 3)),       # smaller and more channels
    ((1, 2, 4, 4), (1, 2, 6, 6)),       # non-integer ratio: stride = sample = 1 on the overlap
])
@pytest.mark.parametrize("alpha,beta,activation", [
    (1.0, 1.0, "linear"),
    (0.5, -2.0, "linear"),
    (1.0, 1.0, "leaky"),
    (-0.25, 0.75, "logistic"),
])
def test_shortcut(prev_shape, from_shape, alpha, beta, activation):
    prev = randn(sum(prev_shape), *prev_shape)
    frm = randn(sum(from_shape) + 50, *from_shape)
    ref = darknet_shortcut(prev, frm, alpha, beta, activation)
    got = run(Shortcut(alpha, beta, activation), prev, frm)
    assert got.shape == ref.shape
    assert_close(got, ref)


# ---------------------------------------------------------------------------------------------
# [upsample]: forward_upsample_layer -> upsample_cpu


@pytest.mark.parametrize("stride,scale,reverse,h,w", [
    (2, 1.0, False, 3, 4),
    (2, 1.0, False, 1, 1),
    (3, 0.5, False, 2, 3),
    (2, -1.5, False, 4, 2),
    (2, 1.0, True, 4, 6),
    (2, 0.25, True, 6, 4),
    (3, 1.0, True, 3, 6),
    (3, -2.0, True, 6, 3),
])
def test_upsample(stride, scale, reverse, h, w):
    x = randn(stride * 100 + h * 10 + w, 2, 3, h, w)
    ref = darknet_upsample(x, stride, scale, reverse)
    got = run(Upsample(stride, scale, reverse), x)
    assert got.shape == ref.shape
    if reverse:   # Darknet sums scale*x in scan order; summing first then scaling rounds differently
        assert_sums_close(got, ref, darknet_upsample(np.abs(x), stride, abs(scale), reverse))
    else:
        np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------------------------------
# [local]: forward_local_layer (biases, im2col_cpu, one gemm per location)


@pytest.mark.parametrize("c,h,w,n,size,stride,pad", [
    (2, 4, 4, 3, 3, 1, 1),
    (1, 5, 4, 2, 3, 2, 0),
    (3, 4, 5, 2, 1, 1, 0),
    (2, 6, 5, 2, 5, 1, 2),
    (2, 5, 5, 2, 2, 2, 0),
    (1, 5, 6, 3, 3, 2, 1),
])
@pytest.mark.parametrize("activation", ["linear", "leaky", "logistic"])
def test_local(c, h, w, n, size, stride, pad, activation):
    out = Shape(n, local_out_size(h, size, stride, pad), local_out_size(w, size, stride, pad))
    # the cases are ones where local_out_height (pad as a flag) and im2col (pad as an amount) agree
    assert out.h == (h + 2 * pad - size) // stride + 1 and out.w == (w + 2 * pad - size) // stride + 1
    module = Local(c, n, size, stride, pad, out, activation)
    locations, k = out.h * out.w, c * size * size
    assert tuple(module.weights.shape) == (locations, n, k)
    assert tuple(module.biases.shape) == (n, out.h, out.w)
    weights = randn(c * h * w + n, locations, n, k)
    biases = randn(size * stride + pad, n, out.h, out.w)
    with torch.no_grad():
        module.weights.copy_(torch.from_numpy(weights))
        module.biases.copy_(torch.from_numpy(biases))
    x = randn(n * 7 + size, 2, c, h, w)
    ref = darknet_local(x, weights.reshape(-1), biases.reshape(-1), n, size, stride, pad, activation)
    got = run(module, x)
    assert got.shape == ref.shape
    magnitude = darknet_local(np.abs(x), np.abs(weights).reshape(-1), np.abs(biases).reshape(-1),
                              n, size, stride, pad, "linear")
    assert_sums_close(got, ref, magnitude)   # every activation used here is 1-Lipschitz


# ---------------------------------------------------------------------------------------------
# [softmax]: softmax_cpu(net.input, l.inputs/l.groups, l.batch, l.inputs, l.groups,
#            l.inputs/l.groups, 1, l.temperature, l.output)


@pytest.mark.parametrize("shape,groups,temperature,scale", [
    ((2, 10, 1, 1), 1, 1.0, 1.0),
    ((1, 12, 2, 2), 3, 1.0, 3.0),
    ((2, 12, 2, 2), 48, 1.0, 1.0),     # groups of one: all ones
    ((2, 6, 1, 1), 2, 0.5, 2.0),
    ((1, 8, 1, 1), 4, 2.5, 1.0),
    ((2, 9, 1, 1), 1, 1.0, 60.0),      # large logits: needs the subtraction of the largest
])
def test_softmax(shape, groups, temperature, scale):
    x = randn(sum(shape) + groups, *shape, scale=scale)
    ref = darknet_softmax_layer(x, groups, temperature)
    got = run(Softmax(groups, temperature), x)
    assert got.shape == ref.shape
    assert_close(got, ref, rtol=2e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# [yolo], [region], [detection] heads in eval mode


@pytest.mark.parametrize("n,classes,h,w", [(3, 2, 2, 3), (1, 1, 1, 1), (2, 4, 3, 2)])
def test_yolo_head(n, classes, h, w):
    x = randn(n * 10 + classes, 2, n * (5 + classes), h, w, scale=3.0)
    module = Yolo(n, classes, [10.0, 14.0] * (n + 1), list(range(n)), YoloSettings())
    ref = darknet_yolo(x, n, classes)
    got = run(module, x)
    assert got.size == ref.size
    assert_close(got, ref)


@pytest.mark.parametrize("softmax,background", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("n,classes,coords,h,w", [(2, 3, 4, 2, 3), (1, 2, 5, 3, 3), (3, 1, 4, 1, 2)])
def test_region_head(softmax, background, n, classes, coords, h, w):
    x = randn(n * 10 + classes + coords, 2, n * (coords + 1 + classes), h, w, scale=3.0)
    module = Region(n, classes, coords, [1.0, 2.0] * n, bool(softmax), bool(background), RegionSettings())
    ref = darknet_region(x, n, classes, coords, softmax, background)
    got = run(module, x)
    assert got.size == ref.size
    assert_close(got, ref, rtol=2e-6)


@pytest.mark.parametrize("softmax", [0, 1])
@pytest.mark.parametrize("side,classes,n,coords", [(2, 3, 2, 4), (3, 5, 1, 4), (1, 2, 3, 1)])
def test_detection_head(softmax, side, classes, n, coords):
    inputs = side * side * ((1 + coords) * n + classes)
    x = randn(inputs + softmax, 2, inputs, 1, 1, scale=3.0)
    module = Detection(side, classes, bool(softmax), DetectionSettings(n=n, coords=coords))
    ref = darknet_detection(x, side, classes, softmax)
    got = run(module, x)
    assert got.size == ref.size
    assert_close(got, ref, rtol=2e-6)


def test_heads_training_mode_returns_raw_input():
    x = randn(5, 1, 2 * 7, 2, 2)
    for module in (Yolo(2, 2, [1.0] * 4, [0, 1], YoloSettings()), Region(2, 2, 4, [1.0] * 4, True, False, RegionSettings())):
        module.train()
        with torch.no_grad():
            out = module(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(out.reshape(-1), x.reshape(-1))


# ---------------------------------------------------------------------------------------------
# image.c: resize_image, letterbox_image, embed_image


def random_image(seed, c, h, w):
    return np.random.default_rng(seed).random((c, h, w), dtype=np.float32)


RESIZE_CASES = [  # (c, h, w) -> (w, h)
    ((3, 4, 5), 9, 7),       # upscale
    ((3, 9, 8), 4, 3),       # downscale
    ((2, 5, 12), 7, 10),     # down in width, up in height
    ((1, 6, 6), 6, 6),       # same size
    ((3, 17, 23), 32, 32),
    ((3, 37, 29), 16, 20),
    ((1, 3, 3), 2, 2),
    ((3, 1, 1), 4, 3),       # 1x1 source
    ((2, 1, 6), 5, 4),       # one-row source
    ((2, 6, 1), 3, 5),       # one-column source
    ((2, 5, 6), 1, 4),       # one-column target
    ((1, 1, 7), 1, 3),
    ((2, 4, 3), 5, 38),      # last row: sy = 2.9999998, dy ~ 1, and Darknet adds no second term
    ((1, 4, 5), 7, 22),      # last row: sy = 3.0000002 (dy > 0 past the last source row)
]


@pytest.mark.parametrize("shape,w,h", RESIZE_CASES)
def test_resize_image(shape, w, h):
    im = random_image(sum(shape) * 31 + w * h, *shape)
    ref = darknet_resize_image(im, w, h)
    got = resize_image(im, w, h)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


LETTERBOX_CASES = [  # (c, h, w) -> (w, h)
    ((3, 10, 20), 8, 8),      # width-limited
    ((3, 20, 10), 8, 8),      # height-limited
    ((3, 3, 5), 16, 16),      # upscale, width-limited
    ((3, 7, 4), 12, 10),      # upscale, height-limited
    ((3, 4, 8), 16, 8),       # same aspect: Darknet takes the else branch
    ((3, 7, 11), 13, 9),
    ((1, 3, 7), 10, 10),      # odd offsets
    ((2, 19, 13), 6, 7),      # downscale, height-limited
    ((3, 5, 1), 6, 8),        # one-column source -> one-column resized image
    ((3, 1, 1), 5, 7),        # 1x1 source
    ((3, 2, 5), 6, 6),
    ((3, 416, 416), 32, 32),  # square to square, exact fit
    ((3, 4, 2), 20, 38),      # resized to 19x38: the last-row quirk of resize_image
    ((3, 2, 30), 8, 8),       # new_h = 2*8/30 = 0: nothing embedded, all 0.5
]


@pytest.mark.parametrize("shape,w,h", LETTERBOX_CASES)
def test_letterbox(shape, w, h):
    im = random_image(sum(shape) * 17 + w + h, *shape)
    ref = darknet_letterbox_image(im, w, h)
    got = letterbox(im, w, h)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("w,h", [(32, 32), (13, 9), (416, 416), (608, 352), (7, 40)])
def test_letterbox_geometry(w, h):
    for im_w in range(1, 61):
        for im_h in range(1, 61):
            new_w, new_h = darknet_letterbox_size(im_w, im_h, w, h)
            expected = (new_w, new_h, c_div(w - new_w, 2), c_div(h - new_h, 2))
            assert letterbox_geometry(im_w, im_h, w, h) == expected, (im_w, im_h)


def test_letterbox_tensor_in_tensor_out():
    im = random_image(3, 3, 6, 9)
    got = letterbox(torch.from_numpy(im), 8, 8)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), darknet_letterbox_image(im, 8, 8))


# --- batch norm in training mode: forward_batchnorm_layer (mean, variance, normalize) ---------

@pytest.mark.parametrize("kind", ["convolutional", "connected"])
def test_batchnorm_training_matches_darknet_forward_and_backward(kind):
    """Training-mode BN against forward_batchnorm_layer (batch mean, unbiased variance,
    (x - mean)/(sqrt(var) + .000001), scale, bias, rolling statistics .99/.01) and
    backward_batchnorm_layer (backward_bias, backward_scale_cpu, mean_delta_cpu,
    variance_delta_cpu, normalize_delta_cpu: sqrt(var + .00001) and 1/(batch*spatial)), which
    is not the exact gradient of that forward."""
    section = ("[convolutional]\nbatch_normalize=1\nfilters=3\nsize=1\nactivation=linear\n"
               if kind == "convolutional" else "[connected]\nbatch_normalize=1\noutput=3\nactivation=linear\n")
    net = plan_network(parse_cfg_text("[net]\nwidth=6\nheight=5\nchannels=2\n" + section), None, None)
    layer = net[1][0].make()
    torch.manual_seed(3)
    layer.reset_parameters()
    with torch.no_grad():
        layer.weights[0] *= 1e-2  # a channel of small batch variance: there the epsilons differ most
        layer.scales.uniform_(0.5, 1.5)
        layer.biases.uniform_(-1, 1)
        layer.rolling_mean.uniform_(-1, 1)
        layer.rolling_variance.uniform_(0.5, 2)
    p = {k: getattr(layer, k).detach().clone().numpy()
         for k in ("weights", "scales", "biases", "rolling_mean", "rolling_variance")}
    x = torch.randn(8, 2, 5, 6)
    conv = kind == "convolutional"
    pre = (torch.nn.functional.conv2d(x, layer.weights.detach()) if conv
           else torch.nn.functional.linear(x.flatten(1), layer.weights.detach())).numpy()
    layer.train()
    xg = x.clone().requires_grad_()
    out = layer(xg).reshape(pre.shape)  # [connected] returns (batch, outputs, 1, 1)
    expected, x_norm, mean, variance, new_mean, new_var = bn_ref.forward_batchnorm(
        pre, p["scales"], p["biases"], p["rolling_mean"], p["rolling_variance"])
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.rolling_mean.numpy(), new_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.rolling_variance.numpy(), new_var, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(out)
    out.backward(grad)
    # Darknet's delta is the negative gradient; every backward step is linear in it
    delta_in, bias_updates, scale_updates = bn_ref.backward_batchnorm(pre, x_norm, mean, variance,
                                                                      p["scales"], -grad.numpy())
    np.testing.assert_allclose(-layer.biases.grad.numpy(), bias_updates, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(-layer.scales.grad.numpy(), scale_updates, rtol=1e-4, atol=1e-5)
    w = torch.from_numpy(p["weights"]).double().view(3, -1)
    want = -torch.from_numpy(delta_in).double()
    want = torch.einsum("bfhw,fc->bchw", want, w) if conv else want @ w  # through the weights to x
    scale = want.abs().max().item()
    np.testing.assert_allclose(xg.grad.double().numpy(), want.reshape(xg.shape).numpy(), rtol=0, atol=2e-5 * scale)
    # ... which is not the exact gradient of the forward
    xs = x.clone().requires_grad_()
    ref_in = (torch.nn.functional.conv2d(xs, layer.weights.detach()) if conv
              else torch.nn.functional.linear(xs.flatten(1), layer.weights.detach()))
    dims = (0, 2, 3) if conv else (0,)
    m, v = ref_in.mean(dims, keepdim=True), ref_in.var(dims, unbiased=True, keepdim=True)
    ((ref_in - m) / (v.sqrt() + .000001)).backward(grad * layer.scales.detach().view((1, -1) + (1,) * (grad.dim() - 2)))
    assert (xs.grad - xg.grad).abs().max().item() > 1e-3 * scale


def test_batchnorm_synced_backward_equals_local(tmp_path):
    """--sync-bn's backward (statistics and sums over a process group, here of one process)
    gives what the local one (ATen's fused backward) gives."""
    import torch.distributed as dist
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        group = dist.new_group([0])
        grads = []
        for sync in (None, group):
            torch.manual_seed(5)
            x = (torch.randn(4, 3, 5, 6) * 2 + 1).requires_grad_()
            scales, biases = (torch.rand(3) + 0.5).requires_grad_(), torch.randn(3).requires_grad_()
            out, _, _ = DarknetBatchNorm.apply(x, scales, biases, "pjreddie", sync)
            out.backward(torch.randn_like(out))
            grads.append((x.grad, scales.grad, biases.grad))
        for local, synced in zip(*grads):
            torch.testing.assert_close(synced, local, rtol=1e-5, atol=1e-5)
    finally:
        dist.destroy_process_group()
