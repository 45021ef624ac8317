"""Winograd F(4x4, 3x3) inference convolution (layers/winograd.py, native/winograd.c) against
``F.conv2d``: odd sizes, channel counts off the kernel's blocks of 16 and 32, both ways of
splitting the work across threads, the epilogue (bias, batch norm, activations), bfloat16 input
and output, and the fallback to direct convolution when the kernel cannot be built."""
import math
import platform
import warnings

import pytest
import torch
import torch.nn.functional as F

import darknet_py
from darknet_py import native
from darknet_py.activations import ACTIVATIONS
from darknet_py.layers import winograd
from darknet_py.layers.conv import Convolutional
from darknet_py.registry import Shape

from conftest import CFG

pytestmark = pytest.mark.skipif(winograd._kernel() is None, reason="no C compiler for the native kernel")

# Rounding only: each output is a sum of 9 C products; the transforms' coefficients (up to 8
# and 1/24) cost a few bits. Measured worst case over the cases below: 8.6e-6 of max |y|
# (2.1e-5 before the transforms' shared terms were written out; direct convolution in float32
# vs float64: 5e-7). A wrong coefficient or a tile off by one
# gives errors of order max |y|.
REL_TOL = 6e-5


def reference(x, w, alpha=None, beta=None, activation="linear"):
    y = F.conv2d(x.double(), w.double(), None, 1, 1)
    if alpha is not None:
        y = y * alpha.double().view(1, -1, 1, 1)
    if beta is not None:
        y = y + beta.double().view(1, -1, 1, 1)
    return ACTIVATIONS[activation](y)


def case(n, c, k, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weights = torch.randn(k, c, 3, 3, generator=g) / math.sqrt(9 * c)
    return x, weights, g


def assert_close(y, ref):
    err = (y.double() - ref).abs().max().item()
    assert err <= REL_TOL * ref.abs().max().item(), (err, ref.abs().max().item())


@pytest.mark.parametrize("shape", [
    (1, 32, 32, 12, 12),    # one tile row per 4 pixels, K one block
    (1, 40, 70, 13, 17),    # C off 16, K off 32, H and W off the tile size
    (2, 64, 96, 26, 26),    # batch: tiles cross images
    (1, 3, 5, 7, 5),        # tiny: fewer pixels than one tile in places
    (3, 128, 33, 19, 8),
])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_direct_convolution(shape, threads):
    n, c, k, h, w = shape
    x, weights, _ = case(n, c, k, h, w)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = winograd.Winograd(weights)(x, None, None, "linear")
    finally:
        torch.set_num_threads(before)
    assert y.shape == (n, k, h, w) and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, reference(x, weights))


def test_both_ways_of_splitting_the_work():
    """Few tiles (13 x 13: 16 of them) split the output channels across threads; many split
    the tiles. Both give the one-thread result."""
    for h, expect_by_tiles in ((13, False), (52, True)):
        tiles = (-(-h // 4)) ** 2
        parts = winograd._split(tiles, 4, 2)
        assert (parts[0][1] < tiles) == expect_by_tiles
        x, weights, _ = case(1, 64, 128, h, h, seed=h)
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            y = winograd.Winograd(weights)(x, None, None, "linear")
        finally:
            torch.set_num_threads(before)
        assert_close(y, reference(x, weights))


@pytest.mark.parametrize("activation", ["linear", "leaky", "relu"])
def test_epilogue_affine_and_activation(activation):
    x, weights, g = case(2, 48, 64, 15, 21, seed=3)
    alpha, beta = torch.rand(64, generator=g) + 0.5, torch.randn(64, generator=g)
    y = winograd.Winograd(weights)(x, alpha, beta, activation)
    assert_close(y, reference(x, weights, alpha, beta, activation))
    y = winograd.Winograd(weights)(x, None, beta, activation)
    assert_close(y, reference(x, weights, None, beta, activation))


@pytest.mark.parametrize("activation", ["leaky", "mish", "logistic", "linear"])
@pytest.mark.parametrize("batch_normalize", [0, 1])
def test_convolutional_inference_uses_it_and_agrees_with_training_path(activation, batch_normalize):
    """A [convolutional] layer's inference path (Winograd for this shape) against its autograd
    path (``F.conv2d`` and Darknet's batch norm): activations the kernel lacks run after it."""
    torch.manual_seed(0)
    layer = Convolutional(64, 64, 3, 1, 1, 1, batch_normalize, activation)
    layer.reset_parameters()
    with torch.no_grad():
        layer.biases.normal_()
        if batch_normalize:
            layer.scales.uniform_(0.5, 1.5)
            layer.rolling_mean.normal_()
            layer.rolling_variance.uniform_(0.5, 2)
    x = torch.randn(1, 64, 20, 20).contiguous(memory_format=torch.channels_last)
    layer.eval()
    expected = layer(x.clone().requires_grad_()).detach()
    layer.prepare_inference(torch.float32, fold=False, input_shape=Shape(64, 20, 20))
    assert layer.winograd is not None and layer.packed is None
    with torch.no_grad():
        got = layer(x)
    assert_close(got, expected.double())
    layer.winograd.u.zero_()  # the inference pass must have used these
    with torch.no_grad():
        assert not torch.allclose(layer(x), got)


@pytest.mark.parametrize("c, k", [(64, 80), (37, 45)])  # and channels off the 8-lane vectors
def test_bfloat16_input_and_output(c, k):
    """fast precision: bfloat16 in and out, float32 inside; within bfloat16's rounding of the
    output (2^-8 relative: 8 significant bits) of the float64 convolution of the bfloat16 input."""
    x, weights, g = case(2, c, k, 30, 27, seed=5)
    x = x.bfloat16().contiguous(memory_format=torch.channels_last)
    beta = torch.randn(k, generator=g)
    y = winograd.Winograd(weights, torch.bfloat16)(x, None, beta, "leaky")
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    ref = reference(x.float(), weights, None, beta, "leaky")
    err = (y.double() - ref).abs()
    assert (err <= 2 ** -8 * ref.abs() + REL_TOL * ref.abs().max()).all()
    # float32 Winograd's own error (1e-5) moves a value across a bfloat16 rounding boundary rarely
    assert (y == ref.float().bfloat16()).float().mean() > 0.99


def test_switch_off(monkeypatch):
    layer = Convolutional(64, 64, 3, 1, 1, 1, 0, "leaky").eval()
    for switch, path in (("0", "direct"), ("force", "winograd")):
        monkeypatch.setenv("DARKNET_PY_WINOGRAD", switch)
        layer.prepare_inference(torch.float32, fold=False, input_shape=Shape(64, 52, 52))
        assert layer.path == path and (layer.winograd is not None) == (path == "winograd")
    assert winograd.available(torch.bfloat16) and not winograd.available(torch.float16)
    monkeypatch.setenv("DARKNET_PY_WINOGRAD", "0")
    assert not winograd.available()


def test_no_compiler_falls_back_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("DARKNET_PY_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="native kernel 'winograd' unavailable"):
        assert native.load("winograd") is None
    assert not winograd.available()  # direct convolution instead
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind


def test_build_is_cached(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("DARKNET_PY_CACHE", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = native._build("winograd")
        assert native._build("winograd") == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_thread_count_does_not_change_the_result():
    """Each output's arithmetic is the same however the work is split (threads, and the tile
    groups of each variant the tuner may pick): bit-identical."""
    x, weights, _ = case(2, 256, 96, 30, 22, seed=7)
    winograd_conv = winograd.Winograd(weights)
    before = torch.get_num_threads()
    results = []
    try:
        for variant in winograd.GROUP_FLOATS:
            winograd_conv.variant = variant
            for threads in (1, 2, 3):
                torch.set_num_threads(threads)
                results.append(winograd_conv(x, None, None, "leaky"))
    finally:
        torch.set_num_threads(before)
    assert len(results) == 3 * len(winograd.GROUP_FLOATS)
    assert all(torch.equal(results[0], r) for r in results[1:])
    assert winograd_conv.variants(2, 30, 22, 1) == list(winograd.GROUP_FLOATS)  # their groups differ here


def test_memory_budget_leaves_the_transformed_weights_out(weights_for):
    """Winograd's weights are 4 x the layer's: counted against the budget before they are
    made; a network that fits only without them runs by direct convolution, with a warning."""
    path = weights_for("yolov3-tiny.cfg", seed=2)
    roomy = darknet_py.load(CFG / "yolov3-tiny.cfg", path)
    tight = darknet_py.load(CFG / "yolov3-tiny.cfg", path, max_bytes=roomy.need().bytes + 2**20)
    x = torch.rand(1, 3, 416, 416)
    with torch.no_grad():
        expected = roomy(x)
        with pytest.warns(RuntimeWarning, match="Winograd's transformed weights"):
            got = tight(x)

    def transformed(net):
        return [m for m in net.modules() if isinstance(m, Convolutional) and m.winograd is not None]
    assert transformed(roomy) and not transformed(tight)
    for a, b in zip(expected, got):
        assert torch.allclose(a, b, atol=1e-4)


def test_cache_folder_falls_back_to_a_private_temporary_one(monkeypatch, tmp_path):
    """An unusable cache folder (here: below a file), or one others may write to (code is
    loaded from it), gives way to one in the temporary directory."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    for unusable in (blocker / "cache", shared):
        monkeypatch.setenv("DARKNET_PY_CACHE", str(unusable))
        built = native._build("winograd")
        assert built.parent == tmp_path / "tmp" / f"darknet_py-{native.os.getuid()}"
    assert not list(shared.iterdir())


def test_isa_switch_changes_the_build(monkeypatch):
    """DARKNET_PY_NATIVE_ISA=avx2 (the benchmark's --isa avx2) builds without AVX-512, as a
    separate cached library and tuning file; an unknown value is refused."""
    native_key = native.build_key("winograd")
    monkeypatch.setenv("DARKNET_PY_NATIVE_ISA", "avx2")
    assert "-mno-avx512f" in native.flags() and native.build_key("winograd") != native_key
    monkeypatch.setenv("DARKNET_PY_NATIVE_ISA", "avx1024")
    with pytest.raises(ValueError, match="DARKNET_PY_NATIVE_ISA"):
        native.flags()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the plain build's flags are x86's")
def test_portable_build_matches(monkeypatch):
    """DARKNET_PY_NATIVE_ISA=plain builds the portable C loops (no AVX2 intrinsics: what CPUs
    without AVX2 and FMA run) with their own weight layout; they compute the same convolution,
    float32 and bfloat16, within rounding of the AVX2/AVX-512 build's."""
    cases = [case(1, 40, 70, 13, 17, seed=3), case(2, 64, 96, 26, 26, seed=4)]
    fast = [winograd.Winograd(w)(x, None, None, "leaky") for x, w, _ in cases]
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("DARKNET_PY_NATIVE_ISA", "plain")
    assert winograd._kernel() is not None
    for (x, w, _), y_fast in zip(cases, fast):
        y = winograd.Winograd(w)(x, None, None, "leaky")
        ref = reference(x, w, activation="leaky")
        assert_close(y, ref)
        assert (y - y_fast).abs().max() <= REL_TOL * ref.abs().max()
        y16 = winograd.Winograd(w, torch.bfloat16)(x.bfloat16(), None, None, "leaky")
        assert (y16.double() - ref).abs().max() <= 2 ** -7 * ref.abs().max()
