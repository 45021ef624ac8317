"""Layer modules against slow, literal transcriptions of Darknet's C loops.

Each ``darknet_*`` function below follows pjreddie/darknet's C code loop by loop and index by
index (``maxpool_layer.c``, ``blas.c``, ``local_layer.c``, ``im2col.c``, ``softmax_layer.c``,
``region_layer.c``, ``yolo_layer.c``, ``detection_layer.c``, ``activations.h``, ``image.c``;
AlexeyAB's fork for the activations pjreddie lacks). They work on flat float32 buffers with
numpy float32 scalars where the C code uses ``float``, and Python floats (double) where it
calls ``exp``/``floor`` or uses a double constant. Inputs are tiny so the loops stay fast.

Comparisons are exact where Darknet's arithmetic is reproducible (maxpool, reorg, nearest
upsample, resize_image, letterbox_image); elsewhere within float32 rounding of the reference.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darknet_py import letterbox
from darknet_py.activations import ACTIVATIONS, Activation
from darknet_py.cfg import parse_cfg_text
from darknet_py.image import letterbox_geometry, resize_image
from darknet_py.layers.conv import Local
from darknet_py.layers.heads import Detection, DetectionSettings, Region, RegionSettings, Yolo, YoloSettings
from darknet_py.layers.merge import Shortcut
from darknet_py.layers.pool import MaxPool
from darknet_py.layers.resample import Reorg, Upsample
from darknet_py.layers.simple import Softmax
from darknet_py.model import plan_network
from darknet_py.registry import Shape

from reference import batchnorm as bn_ref
from reference.blas import darknet_reorg_cpu

F32 = np.float32
FLT_MAX = F32(np.finfo(np.float32).max)


# ---------------------------------------------------------------------------------------------
# helpers


def c_div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def c_rem(a: int, b: int) -> int:
    """C's ``%`` (sign of the dividend)."""
    return a - b * c_div(a, b)


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
# activations: pjreddie's activations.h, and AlexeyAB's activations.h/.c/_kernels.cu for the rest.
# Each formula is written as in C. Sub-expressions C evaluates in float (``x - n``, ``x + 4``,
# AlexeyAB's ``x * x / 2 + x``) use float32; ``exp``/``tanh``/``log`` and double constants are
# evaluated in double, i.e. the exact value that Darknet's own float/double evaluation rounds.


def _exp(v: float) -> float:
    """C's ``exp`` (double; +inf on overflow instead of Python's OverflowError)."""
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _logistic(x):           # 1./(1. + exp(-x))
    return 1.0 / (1.0 + _exp(-x))


def _f(v) -> float:
    """A value rounded to float, as C stores it."""
    return float(F32(v))


def _stair(x):
    n = math.floor(x)       # int n = floor(x);
    if c_rem(n, 2) == 0:
        return math.floor(x / 2.0)
    return _f(F32(x) - F32(n)) + math.floor(x / 2.0)    # (x - n) is float - int: float


def _hardtan(x):
    if x < -1:
        return -1.0
    if x > 1:
        return 1.0
    return x


def _plse(x):
    if x < -4:
        return .01 * _f(F32(x) + F32(4))
    if x > 4:
        return .01 * _f(F32(x) - F32(4)) + 1
    return .125 * x + .5


def _lhtan(x):
    if x < 0:
        return .001 * x
    if x > 1:
        return .001 * _f(F32(x) - F32(1)) + 1
    return x


def _leaky(x):               # (x>0) ? x : .1*x
    return x if x > 0 else .1 * x


def _alexey_tanh(x):         # tanh_activate: 2 / (1 + expf(-2 * x)) - 1
    return 2.0 / (1.0 + _exp(-2.0 * x)) - 1.0


def _softplus(x, threshold):
    if x > threshold:
        return x             # too large
    if x < -threshold:
        return _exp(x)       # too small
    return math.log(_exp(x) + 1)


def _hard_mish(x):           # hard_mish_yashas, all float
    if x > 0:
        return x
    if x > -2:
        x = F32(x)
        return _f(x * x / F32(2) + x)
    return 0.0


DARKNET_ACTIVATIONS = {
    # pjreddie/darknet src/activations.h
    "linear": lambda x: x,
    "logistic": _logistic,
    "loggy": lambda x: 2.0 / (1.0 + _exp(-x)) - 1,
    "relu": lambda x: x * (x > 0),
    "elu": lambda x: (x >= 0) * x + (x < 0) * (_exp(x) - 1),
    "selu": lambda x: (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (_exp(x) - 1),
    "relie": lambda x: x if x > 0 else .01 * x,
    "ramp": lambda x: x * (x > 0) + .1 * x,
    "leaky": _leaky,
    "tanh": lambda x: (_exp(2 * x) - 1) / (_exp(2 * x) + 1),
    "plse": _plse,
    "stair": _stair,
    "hardtan": _hardtan,
    "lhtan": _lhtan,
    # AlexeyAB/darknet
    "relu6": lambda x: min(max(x, 0.0), 6.0),          # relu6_activate_kernel: min(max(x, 0), 6)
    "swish": lambda x: x * _logistic(x),               # activate_array_swish
    "mish": lambda x: x * _alexey_tanh(_softplus(x, 20)),  # activate_array_mish, MISH_THRESHOLD 20
    "hard_mish": _hard_mish,
    "gelu": lambda x: 0.5 * x * (1 + math.tanh(0.797885 * x + 0.035677 * x ** 3)),
    # activate(): `case REVLEAKY: case LEAKY: return leaky_activate(x);` and on the GPU
    # `a == LEAKY || a == REVLEAKY` -> activate_array_leaky_kernel. Only the gradient differs
    # (gradient_array_revleaky_kernel divides delta by leaky_gradient).
    "revleaky": _leaky,
}


def darknet_activate_array(flat: np.ndarray, name: str) -> np.ndarray:
    """``activate_array``: x[i] = activate(x[i], a), the float result of a scalar formula."""
    fn = DARKNET_ACTIVATIONS[name]
    return np.array([F32(fn(float(v))) for v in flat.reshape(-1)], dtype=F32).reshape(flat.shape)


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
    assert not missing, f"activations without a Darknet reference in this file: {missing}"


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


def darknet_maxpool(x, size, stride, padding):
    batch, c, l_h, l_w = x.shape
    out_w = c_div(l_w + padding - size, stride) + 1     # make_maxpool_layer
    out_h = c_div(l_h + padding - size, stride) + 1
    inp = x.reshape(-1)
    output = np.zeros(batch * c * out_h * out_w, dtype=F32)
    w_offset = c_div(-padding, 2)                        # int w_offset = -l.pad/2;
    h_offset = c_div(-padding, 2)
    h, w = out_h, out_w
    for b in range(batch):
        for k in range(c):
            for i in range(h):
                for j in range(w):
                    out_index = j + w * (i + h * (k + c * b))
                    mx = -FLT_MAX
                    for n in range(size):
                        for m in range(size):
                            cur_h = h_offset + i * stride + n
                            cur_w = w_offset + j * stride + m
                            index = cur_w + l_w * (cur_h + l_h * (k + b * c))
                            valid = 0 <= cur_h < l_h and 0 <= cur_w < l_w
                            val = inp[index] if valid else -FLT_MAX
                            mx = val if val > mx else mx
                    output[out_index] = mx
    return output.reshape(batch, c, out_h, out_w)


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


def darknet_reorg(x, stride, reverse):
    batch, c, h, w = x.shape
    flat = darknet_reorg_cpu(x.reshape(-1), w, h, c, batch, stride, 1 if reverse else 0)
    s2 = stride * stride
    shape = (batch, c // s2, h * stride, w * stride) if reverse else (batch, c * s2, h // stride, w // stride)
    return flat.reshape(shape)


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


def darknet_shortcut(prev, frm, alpha, beta, activation):
    batch, c2, h2, w2 = prev.shape      # the layer's output = the previous layer's shape
    _, c1, h1, w1 = frm.shape           # l.w, l.h, l.c: the `from` layer's shape
    out = prev.reshape(-1).copy()
    add = frm.reshape(-1)
    s1, s2 = F32(alpha), F32(beta)
    stride = c_div(w1, w2)
    sample = c_div(w2, w1)
    assert stride == c_div(h1, h2)
    assert sample == c_div(h2, h1)
    if stride < 1:
        stride = 1
    if sample < 1:
        sample = 1
    minw = min(w1, w2)
    minh = min(h1, h2)
    minc = min(c1, c2)
    for b in range(batch):
        for k in range(minc):
            for j in range(minh):
                for i in range(minw):
                    out_index = i * sample + w2 * (j * sample + h2 * (k + c2 * b))
                    add_index = i * stride + w1 * (j * stride + h1 * (k + c1 * b))
                    out[out_index] = s1 * out[out_index] + s2 * add[add_index]
    return darknet_activate_array(out, activation).reshape(prev.shape)


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


def darknet_upsample_cpu(in_, w, h, c, batch, stride, forward, scale, out):
    scale = F32(scale)
    for b in range(batch):
        for k in range(c):
            for j in range(h * stride):
                for i in range(w * stride):
                    in_index = b * w * h * c + k * w * h + (j // stride) * w + i // stride
                    out_index = (b * w * h * c * stride * stride + k * w * h * stride * stride
                                 + j * w * stride + i)
                    if forward:
                        out[out_index] = scale * in_[in_index]
                    else:
                        in_[in_index] += scale * out[out_index]


def darknet_upsample(x, stride, scale, reverse):
    batch, c, h, w = x.shape
    if reverse:                      # make_upsample_layer: stride < 0 -> out = in / stride
        out_w, out_h = w // stride, h // stride
        output = np.zeros(batch * c * out_h * out_w, dtype=F32)       # fill_cpu(..., 0, ...)
        darknet_upsample_cpu(output, out_w, out_h, c, batch, stride, 0, scale, x.reshape(-1))
    else:
        out_w, out_h = w * stride, h * stride
        output = np.zeros(batch * c * out_h * out_w, dtype=F32)
        darknet_upsample_cpu(x.reshape(-1), w, h, c, batch, stride, 1, scale, output)
    return output.reshape(batch, c, out_h, out_w)


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


def im2col_get_pixel(im, height, width, channels, row, col, channel, pad):
    row -= pad
    col -= pad
    if row < 0 or col < 0 or row >= height or col >= width:
        return F32(0)
    return im[col + width * (row + height * channel)]


def darknet_im2col_cpu(data_im, channels, height, width, ksize, stride, pad):
    height_col = c_div(height + 2 * pad - ksize, stride) + 1
    width_col = c_div(width + 2 * pad - ksize, stride) + 1
    channels_col = channels * ksize * ksize
    data_col = np.zeros(channels_col * height_col * width_col, dtype=F32)
    for c in range(channels_col):
        w_offset = c % ksize
        h_offset = (c // ksize) % ksize
        c_im = c // ksize // ksize
        for h in range(height_col):
            for w in range(width_col):
                im_row = h_offset + h * stride
                im_col = w_offset + w * stride
                col_index = (c * height_col + h) * width_col + w
                data_col[col_index] = im2col_get_pixel(data_im, height, width, channels,
                                                       im_row, im_col, c_im, pad)
    return data_col


def darknet_gemm_nn(M, N, K, ALPHA, A, a0, lda, B, b0, ldb, C, c0, ldc):
    for i in range(M):
        for k in range(K):
            A_PART = F32(ALPHA) * A[a0 + i * lda + k]
            for j in range(N):
                C[c0 + i * ldc + j] += A_PART * B[b0 + k * ldb + j]


def darknet_gemm(TA, TB, M, N, K, ALPHA, A, a0, lda, B, b0, ldb, BETA, C, c0, ldc):
    assert (TA, TB) == (0, 0)
    for i in range(M):
        for j in range(N):
            C[c0 + i * ldc + j] *= F32(BETA)
    darknet_gemm_nn(M, N, K, ALPHA, A, a0, lda, B, b0, ldb, C, c0, ldc)


def local_out_size(size_in, size, stride, pad):   # local_out_height / local_out_width
    size_in -= 1 if pad else size
    return c_div(size_in, stride) + 1


def darknet_local(x, weights, biases, n, size, stride, pad, activation):
    batch, c, h, w = x.shape
    out_h, out_w = local_out_size(h, size, stride, pad), local_out_size(w, size, stride, pad)
    locations = out_h * out_w
    outputs = out_h * out_w * n
    inp = x.reshape(-1)
    output = np.zeros(batch * outputs, dtype=F32)
    for i in range(batch):
        output[i * outputs:(i + 1) * outputs] = biases         # copy_cpu(l.outputs, l.biases, ...)
    for i in range(batch):
        col_image = darknet_im2col_cpu(inp[i * w * h * c:], c, h, w, size, stride, pad)
        for j in range(locations):
            m, nn, k = n, 1, size * size * c
            darknet_gemm(0, 0, m, nn, k, 1, weights, j * size * size * c * n, k,
                         col_image, j, locations, 1, output, i * outputs + j, locations)
    return darknet_activate_array(output, activation).reshape(batch, n, out_h, out_w)


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


def darknet_softmax(inp, i0, n, temp, stride, output, o0):
    total = F32(0)
    largest = -FLT_MAX
    temp = F32(temp)
    for i in range(n):
        if inp[i0 + i * stride] > largest:
            largest = inp[i0 + i * stride]
    for i in range(n):
        e = F32(_exp(float(inp[i0 + i * stride] / temp - largest / temp)))
        total += e
        output[o0 + i * stride] = e
    for i in range(n):
        output[o0 + i * stride] /= total


def darknet_softmax_cpu(inp, i0, n, batch, batch_offset, groups, group_offset, stride, temp, output, o0):
    for b in range(batch):
        for g in range(groups):
            off = b * batch_offset + g * group_offset
            darknet_softmax(inp, i0 + off, n, temp, stride, output, o0 + off)


def darknet_softmax_layer(x, groups, temperature):
    batch = x.shape[0]
    inputs = x[0].size
    output = np.zeros(x.size, dtype=F32)
    darknet_softmax_cpu(x.reshape(-1), 0, inputs // groups, batch, inputs, groups, inputs // groups,
                        1, temperature, output, 0)
    return output.reshape(x.shape)


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


def darknet_yolo(x, n, classes):
    """forward_yolo_layer (CPU): logistic on x, y and on objectness + classes."""
    batch, _, h, w = x.shape
    outputs = x[0].size
    output = x.reshape(-1).copy()

    def entry_index(b, location, entry):
        nn, loc = location // (w * h), location % (w * h)
        return b * outputs + nn * w * h * (4 + classes + 1) + entry * w * h + loc

    for b in range(batch):
        for nn in range(n):
            for entry, span in ((0, 2 * w * h), (4, (1 + classes) * w * h)):
                index = entry_index(b, nn * w * h, entry)
                output[index:index + span] = darknet_activate_array(output[index:index + span], "logistic")
    return output


def darknet_region(x, n, classes, coords, softmax, background):
    """forward_region_layer (CPU, no tree)."""
    batch, _, h, w = x.shape
    inputs = outputs = x[0].size
    net_input = x.reshape(-1)
    output = net_input.copy()

    def entry_index(b, location, entry):
        nn, loc = location // (w * h), location % (w * h)
        return b * outputs + nn * w * h * (coords + classes + 1) + entry * w * h + loc

    def logistic(index, count):
        output[index:index + count] = darknet_activate_array(output[index:index + count], "logistic")

    for b in range(batch):
        for nn in range(n):
            logistic(entry_index(b, nn * w * h, 0), 2 * w * h)
            if not background:
                logistic(entry_index(b, nn * w * h, coords), w * h)
            if not softmax:
                logistic(entry_index(b, nn * w * h, coords + 1), classes * w * h)
    if softmax:
        index = entry_index(0, 0, coords + (not background))
        darknet_softmax_cpu(net_input, index, classes + background, batch * n, inputs // n,
                            w * h, 1, w * h, 1, output, index)
    return output


def darknet_detection(x, side, classes, softmax):
    """forward_detection_layer: softmax over each cell's classes, the rest copied."""
    batch = x.shape[0]
    inputs = x[0].size
    locations = side * side
    output = x.reshape(-1).copy()
    if softmax:
        for b in range(batch):
            index = b * inputs
            for i in range(locations):
                offset = i * classes
                darknet_softmax(output, index + offset, classes, 1, 1, output, index + offset)
    return output


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


def im_get_pixel(m, mw, mh, mc, x, y, c):
    assert x < mw and y < mh and c < mc     # get_pixel's assert (no lower bound)
    return m[c * mh * mw + y * mw + x]


def im_set_pixel(m, mw, mh, mc, x, y, c, val):
    if x < 0 or y < 0 or c < 0 or x >= mw or y >= mh or c >= mc:
        return
    m[c * mh * mw + y * mw + x] = val


def im_add_pixel(m, mw, mh, mc, x, y, c, val):
    assert x < mw and y < mh and c < mc
    m[c * mh * mw + y * mw + x] += val


def darknet_resize_image(im, w, h):
    im_c, im_h, im_w = im.shape
    data = im.reshape(-1)
    resized = np.zeros(w * h * im_c, dtype=F32)      # make_image: calloc
    part = np.zeros(w * im_h * im_c, dtype=F32)
    with np.errstate(divide="ignore", invalid="ignore"):   # w == 1: the scale is never used
        w_scale = F32(im_w - 1) / F32(w - 1)         # (float)(im.w - 1) / (w - 1)
        h_scale = F32(im_h - 1) / F32(h - 1)
    one = F32(1)
    for k in range(im_c):
        for r in range(im_h):
            for c in range(w):
                if c == w - 1 or im_w == 1:
                    val = im_get_pixel(data, im_w, im_h, im_c, im_w - 1, r, k)
                else:
                    sx = F32(c) * w_scale
                    ix = int(sx)
                    dx = sx - F32(ix)
                    val = ((one - dx) * im_get_pixel(data, im_w, im_h, im_c, ix, r, k)
                           + dx * im_get_pixel(data, im_w, im_h, im_c, ix + 1, r, k))
                im_set_pixel(part, w, im_h, im_c, c, r, k, val)
    for k in range(im_c):
        for r in range(h):
            sy = F32(r) * h_scale
            iy = int(sy)
            dy = sy - F32(iy)
            for c in range(w):
                val = (one - dy) * im_get_pixel(part, w, im_h, im_c, c, iy, k)
                im_set_pixel(resized, w, h, im_c, c, r, k, val)
            if r == h - 1 or im_h == 1:
                continue
            for c in range(w):
                val = dy * im_get_pixel(part, w, im_h, im_c, c, iy + 1, k)
                im_add_pixel(resized, w, h, im_c, c, r, k, val)
    return resized.reshape(im_c, h, w)


def darknet_embed_image(source, dest, dest_w, dest_h, dx, dy):
    sc, sh, sw = source.shape
    src = source.reshape(-1)
    for k in range(sc):
        for y in range(sh):
            for x in range(sw):
                val = im_get_pixel(src, sw, sh, sc, x, y, k)
                im_set_pixel(dest, dest_w, dest_h, sc, dx + x, dy + y, k, val)


def darknet_letterbox_size(im_w, im_h, w, h):
    new_w, new_h = im_w, im_h
    if F32(w) / F32(im_w) < F32(h) / F32(im_h):   # ((float)w/im.w) < ((float)h/im.h)
        new_w = w
        new_h = c_div(im_h * w, im_w)
    else:
        new_h = h
        new_w = c_div(im_w * h, im_h)
    return new_w, new_h


def darknet_letterbox_image(im, w, h):
    im_c, im_h, im_w = im.shape
    new_w, new_h = darknet_letterbox_size(im_w, im_h, w, h)
    resized = darknet_resize_image(im, new_w, new_h)
    boxed = np.zeros(w * h * im_c, dtype=F32)
    boxed[:] = F32(.5)                               # fill_image(boxed, .5)
    darknet_embed_image(resized, boxed, w, h, c_div(w - new_w, 2), c_div(h - new_h, 2))
    return boxed.reshape(im_c, h, w)


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
