"""AlexeyAB's layers against literal transcriptions of its C loops.

Each ``darknet_*`` reference (``reference/layers_alexeyab.py``, ``reference/blas.py``) follows
AlexeyAB/darknet loop by loop (``route_layer.c``, ``blas.c: shortcut_multilayer_cpu``, ``scale_channels_layer.c``, ``sam_layer.c``,
``maxpool_layer.c``, ``reorg_layer.c`` with ``blas.c: reorg_cpu``, ``representation_layer.c``,
``activations.c``, ``convolutional_layer.c``'s antialiasing blur, ``blas_kernels.cu:
normalize_kernel``) on flat float32 buffers. Inputs are tiny so the loops stay fast.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.activations import Activation
from darknet_py.cfg import parse_cfg_text
from darknet_py.errors import CfgError
from darknet_py.model import plan_network

from reference.blas import darknet_reorg_cpu
from reference.layers_alexeyab import (
    FLT_MAX, darknet_blur, darknet_normalize_channels, darknet_pool, darknet_route, darknet_scale_channels,
    darknet_shortcut_multilayer)

F32 = np.float32


def randn(seed, *shape, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F32)


def plan(body, w, h, c, net_extra=""):
    """Specs of a cfg: [net] of w x h x c, then ``body``."""
    _, specs, _ = plan_network(parse_cfg_text(f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n{net_extra}{body}"))
    return specs


def run_layer(spec, *arrays):
    module = spec.make().eval()
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
    with torch.no_grad():
        return module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)).numpy(), module


# --- [route] groups: forward_route_layer ---------------------------------------------------------


@pytest.mark.parametrize("groups,group_id", [(2, 1), (2, 0), (4, 3), (1, 0)])
def test_route_groups(groups, group_id):
    body = (f"[convolutional]\nfilters=8\n[convolutional]\nfilters=4\n"
            f"[route]\nlayers=-1,-2\ngroups={groups}\ngroup_id={group_id}\n")
    spec = plan(body, 3, 2, 2)[-1]
    a, b = randn(1, 2, 4, 2, 3), randn(2, 2, 8, 2, 3)
    got, _ = run_layer(spec, a, b)
    assert got.shape[1:] == (spec.out.c, spec.out.h, spec.out.w) == (12 // groups, 2, 3)
    np.testing.assert_array_equal(got.reshape(-1), darknet_route([a, b], groups, group_id))


def test_route_groups_refuse_uneven_channels_and_bad_group_id():
    with pytest.raises(CfgError, match="not divisible"):
        plan("[convolutional]\nfilters=3\n[route]\nlayers=-1\ngroups=2\n", 4, 4, 1)
    with pytest.raises(CfgError, match="group_id"):
        plan("[convolutional]\nfilters=4\n[route]\nlayers=-1\ngroups=2\ngroup_id=2\n", 4, 4, 1)


# --- [shortcut]: shortcut_multilayer_cpu ---------------------------------------------------------


@pytest.mark.parametrize("weights_type,normalization", [
    ("none", "none"), ("per_feature", "none"), ("per_feature", "relu"), ("per_layer", "softmax"),
    ("per_channel", "none"), ("per_channel", "avg_relu"), ("per_channel", "softmax")])
def test_shortcut_multilayer(weights_type, normalization, tmp_path):
    # layer 3's input: 4 x 4 x 3; from layers 0 (4 x 4 x 2: fewer values) and 1 (2 x 2 x 5)
    body = ("[convolutional]\nfilters=2\n[convolutional]\nfilters=5\nsize=2\nstride=2\n"
            "[convolutional]\nfilters=3\nsize=1\n[route]\nlayers=0\n[convolutional]\nfilters=3\n"
            f"[shortcut]\nfrom=0,1\nweights_type={weights_type}\nweights_normalization={normalization}\n"
            "activation=leaky\n")
    spec = plan(body, 4, 4, 2)[-1]
    assert spec.sources == (4, 0, 1)
    prev, f0, f1 = randn(1, 2, 3, 4, 4), randn(2, 2, 2, 4, 4), randn(3, 2, 5, 2, 2)
    module = spec.make().eval()
    weights = None
    if weights_type != "none":
        with torch.no_grad():
            module.weights.copy_(torch.from_numpy(randn(4, *module.weights.shape)))
        weights = module.weights.detach().numpy().reshape(-1).copy()
        assert weights.size == {"per_channel": 3 * 3}.get(weights_type, 3)
    with torch.no_grad():
        got = module(*(torch.from_numpy(a) for a in (prev, f0, f1))).numpy()
    ref = darknet_shortcut_multilayer(prev, [f0, f1], weights, {"avg_relu": "relu"}.get(normalization, normalization))
    ref = np.where(ref > 0, ref, F32(0.1) * ref)
    np.testing.assert_allclose(got.reshape(-1), ref, rtol=1e-5, atol=1e-6)


def test_shortcut_weights_are_in_the_file_after_the_layer(tmp_path):
    from darknet_py.model import Darknet
    from darknet_py.weights import expected_size
    cfg = tmp_path / "s.cfg"
    cfg.write_text("[net]\nwidth=4\nheight=4\nchannels=3\n[convolutional]\nfilters=3\n"
                   "[convolutional]\nfilters=3\n"
                   "[shortcut]\nfrom=-2\nweights_type=per_channel\nweights_normalization=softmax\n")
    net = Darknet(cfg)
    assert [b.name for b in net.layers[2].blobs()] == ["weights"]
    assert expected_size(net) == 20 + 4 * (2 * (3 + 3 * 3) + 2 * 3)


def test_shortcut_fork_alexeyab_adds_flat_prefix():
    """One ``from`` of another size: pjreddie samples at a stride, AlexeyAB adds the flat prefix."""
    body = "[convolutional]\nfilters=2\n[maxpool]\nsize=2\nstride=2\n[shortcut]\nfrom=-2\n"
    prev, frm = randn(5, 1, 2, 2, 2), randn(6, 1, 2, 4, 4)
    got, _ = run_layer(plan(body, 4, 4, 1, "fork=alexeyab\n")[-1], prev, frm)
    np.testing.assert_allclose(got.reshape(-1), darknet_shortcut_multilayer(prev, [frm], None, "none"))
    pj, _ = run_layer(plan(body, 4, 4, 1)[-1], prev, frm)
    assert not np.allclose(pj, got)


# --- [scale_channels], [sam] --------------------------------------------------------------------


@pytest.mark.parametrize("scale_wh", [0, 1])
def test_scale_channels(scale_wh):
    squeeze = "[avgpool]\n" if not scale_wh else "[convolutional]\nfilters=1\n"
    body = f"[convolutional]\nfilters=3\n{squeeze}[scale_channels]\nfrom=-2\nscale_wh={scale_wh}\nactivation=logistic\n"
    spec = plan(body, 3, 2, 2)[-1]
    scale = randn(1, 2, 1, 2, 3) if scale_wh else randn(1, 2, 3, 1, 1)
    frm = randn(2, 2, 3, 2, 3)
    got, _ = run_layer(spec, scale, frm)
    ref = 1 / (1 + np.exp(-darknet_scale_channels(scale, frm, scale_wh).astype(np.float64)))
    np.testing.assert_allclose(got.reshape(-1), ref, rtol=1e-6)


def test_sam_and_scale_channels_refusals():
    prev, frm = randn(1, 1, 3, 2, 2), randn(2, 1, 3, 2, 2)
    spec = plan("[convolutional]\nfilters=3\n[convolutional]\nfilters=3\n[sam]\nfrom=-2\n", 2, 2, 1)[-1]
    got, _ = run_layer(spec, prev, frm)
    np.testing.assert_array_equal(got.reshape(-1), (prev.reshape(-1) * frm.reshape(-1)))  # forward_sam_layer
    with pytest.raises(CfgError, match="mish"):
        plan("[convolutional]\nfilters=3\n[sam]\nfrom=-1\nactivation=mish\n", 2, 2, 1)
    with pytest.raises(CfgError, match="3 x 1 x 1"):
        plan("[convolutional]\nfilters=3\n[convolutional]\nfilters=3\n[scale_channels]\nfrom=-2\n", 2, 2, 1)


# --- [maxpool] AlexeyAB options and [local_avgpool]: forward_maxpool_layer / _local_avgpool_ ----


@pytest.mark.parametrize("kind", ["maxpool", "local_avgpool"])
@pytest.mark.parametrize("opts,size,sx,sy,pad", [
    ("size=3\nstride_x=2\nstride_y=1", 3, 2, 1, 2),
    ("size=2\nstride=1\nstride_y=2", 2, 1, 2, 1),
    ("size=3\nstride=2\npadding=3", 3, 2, 2, 3),
    ("stride=2", 2, 2, 2, 1),
])
def test_pool_strides(kind, opts, size, sx, sy, pad):
    spec = plan(f"[{kind}]\n{opts}\n", 7, 5, 2)[-1]
    x = randn(3, 2, 2, 5, 7)
    got, _ = run_layer(spec, x)
    ref = darknet_pool(x, size, sx, sy, pad, kind == "local_avgpool")
    assert (spec.out.c, spec.out.h, spec.out.w) == ref.shape[1:]
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("c,out_channels", [(6, 2), (5, 2), (3, 4)])
def test_maxpool_depth(c, out_channels):
    spec = plan(f"[maxpool]\nmaxpool_depth=1\nout_channels={out_channels}\nsize=2\nstride=2\n", 3, 2, c)[-1]
    x = randn(4, 2, c, 2, 3)
    got, _ = run_layer(spec, x)
    ref = np.full((2, out_channels, 2, 3), -FLT_MAX, F32)
    for g in range(out_channels):
        for k in range(g, c, out_channels):
            ref[:, g] = np.maximum(ref[:, g], x[:, k])
    np.testing.assert_array_equal(got, ref)


# --- antialiasing: the blur layer of make_convolutional_layer / make_maxpool_layer --------------


def test_maxpool_antialiasing():
    # only the size-keeping blur (antialiasing=1, stride 1) is accepted: test_fork.py
    spec = plan("[maxpool]\nsize=2\nstride=1\nantialiasing=1\n", 6, 5, 2)[-1]
    x = randn(7, 1, 2, 5, 6)
    got, _ = run_layer(spec, x)
    ref = darknet_blur(darknet_pool(x, 2, 1, 1, 1, False), 1, 1, 1)
    assert (spec.out.h, spec.out.w) == ref.shape[2:] == (5, 6)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_convolutional_antialiasing_stores_no_blur_weights():
    spec = plan("[convolutional]\nfilters=2\nsize=3\npad=1\nstride=1\nantialiasing=1\nactivation=linear\n", 6, 6, 1)[-1]
    x = randn(8, 1, 1, 6, 6)
    got, module = run_layer(spec, x)
    with torch.no_grad():
        plain = torch.nn.functional.conv2d(torch.from_numpy(x), module.weights, module.biases, 1, 1).numpy()
    np.testing.assert_allclose(got, darknet_blur(plain, 1, 1, 1), rtol=1e-5, atol=1e-6)
    assert [b.name for b in module.blobs()] == ["biases", "weights"]
    assert spec.n_params == 2 * 9 + 2


def test_convolutional_dilation_and_strides():
    spec = plan("[convolutional]\nfilters=2\nsize=3\npad=1\ndilation=2\nstride_x=2\nstride_y=1\n", 7, 6, 1)[-1]
    x = randn(9, 1, 1, 6, 7)
    got, module = run_layer(spec, x)
    w = module.weights.detach().numpy()
    # im2col_cpu_ext: pad * dilation, taps kernel_row * dilation, output sized as undilated
    ref = np.zeros((1, 2, 6, 4), F32)
    for n in range(2):
        for i in range(6):
            for j in range(4):
                acc = 0.0
                for ky in range(3):
                    for kx in range(3):
                        y, xx = i - 2 + 2 * ky, 2 * j - 2 + 2 * kx
                        if 0 <= y < 6 and 0 <= xx < 7:
                            acc += w[n, 0, ky, kx] * x[0, 0, y, xx]
                ref[0, n, i, j] = acc
    ref = 1 / (1 + np.exp(-ref))  # default activation: logistic; biases 0 after reset
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(CfgError, match="dilation"):
        plan("[convolutional]\nfilters=2\nsize=3\npadding=0\ndilation=2\n", 7, 7, 1)


# --- [reorg3d]: forward_reorg_layer -> reorg_cpu(input, out_w, out_h, out_c, ...) --------------

@pytest.mark.parametrize("reverse,c,h,w", [(0, 3, 4, 6), (0, 2, 2, 2), (1, 16, 2, 3)])
def test_reorg3d(reverse, c, h, w):
    spec = plan(f"[reorg3d]\nstride=2\nreverse={reverse}\n", w, h, c)[-1]
    x = randn(10, 2, c, h, w)
    got, _ = run_layer(spec, x)
    o = spec.out
    ref = darknet_reorg_cpu(x.reshape(-1), o.w, o.h, o.c, 2, 2, reverse)
    assert got.shape[1:] == (o.c, o.h, o.w)
    np.testing.assert_array_equal(got.reshape(-1), ref)


# --- [implicit], [empty] ------------------------------------------------------------------------

def test_implicit_and_empty():
    specs = plan("[convolutional]\nfilters=2\n[implicit]\nfilters=3\natoms=2\nmean=1\nstd=.1\n[empty]\n", 2, 2, 1)
    imp = specs[1]
    assert (imp.out.c, imp.out.h, imp.out.w) == (3, 2, 1) and imp.n_params == 6
    module = imp.make()
    module.reset_parameters()
    w = module.weights.detach().numpy()
    assert ((w >= 0.9) & (w <= 1.1)).all()
    with torch.no_grad():
        out = module(torch.zeros(4, 2, 2, 2)).numpy()
    np.testing.assert_array_equal(out, np.broadcast_to(w, (4, 3, 2, 1)))
    assert specs[2].out == imp.out


# --- activations: activate_array_normalize_channels(_softmax) ----------------------------------


@pytest.mark.parametrize("name,softmax,maxval", [("normalize_channels", 0, 0),
                                                  ("normalize_channels_softmax", 1, 0),
                                                  ("normalize_channels_softmax_maxval", 1, 1)])
def test_normalize_channels(name, softmax, maxval):
    x = randn(11, 2, 4, 3, 2, scale=3.0)
    with torch.no_grad():
        got = Activation(name)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, darknet_normalize_channels(x, softmax, maxval), rtol=1e-5, atol=1e-7)
    plan(f"[convolutional]\nfilters=2\nactivation={name}\n", 2, 2, 1)
    with pytest.raises(CfgError, match="across channels"):
        plan(f"[convolutional]\nfilters=2\n[shortcut]\nfrom=-1\nactivation={name}\n", 2, 2, 2)


# --- batch norm: which fork's denominator -------------------------------------------------------

@pytest.mark.parametrize("fork,formula", [
    ("pjreddie", lambda x, m, v: (x - m) / (np.sqrt(v) + F32(1e-6))),          # normalize_cpu
    ("alexeyab", lambda x, m, v: (x - m) / np.sqrt(v + F32(1e-5))),           # normalize_kernel
])
def test_batch_norm_formula_follows_fork(fork, formula):
    spec = plan("[convolutional]\nfilters=3\nbatch_normalize=1\nactivation=linear\n", 2, 2, 3,
                f"fork={fork}\n")[-1]
    module = spec.make().eval()
    with torch.no_grad():
        module.weights.copy_(torch.eye(3).view(3, 3, 1, 1))
        module.biases.zero_()
        module.scales.fill_(1)
        module.rolling_mean.copy_(torch.tensor([0.5, -1.0, 0.0]))
        module.rolling_variance.copy_(torch.tensor([1e-6, 0.25, 4.0]))
        x = randn(12, 1, 3, 2, 2)
        got = module(torch.from_numpy(x)).numpy()
    m, v = (a.numpy().reshape(1, 3, 1, 1) for a in (module.rolling_mean, module.rolling_variance))
    np.testing.assert_allclose(got, formula(x, m, v), rtol=1e-6)


def test_alexeyab_batch_norm_trains_as_cudnn():
    """fork=alexeyab trains batch norm as cuDNN does in AlexeyAB's GPU builds: the biased batch
    variance under sqrt(var + 1e-5), the exact gradient, running statistics .99/.01 with the
    unbiased variance: PyTorch's own F.batch_norm (momentum .01, eps 1e-5) in every number."""
    spec = plan("[convolutional]\nfilters=3\nbatch_normalize=1\nactivation=linear\n", 2, 2, 3,
                "fork=alexeyab\n")[-1]
    module = spec.make().train()
    torch.manual_seed(0)
    with torch.no_grad():
        module.weights.copy_(torch.eye(3).view(3, 3, 1, 1))
        module.biases.uniform_(-1, 1)
        module.scales.uniform_(0.5, 1.5)
        module.rolling_mean.uniform_(-1, 1)
        module.rolling_variance.uniform_(0.5, 2)
    running = module.rolling_mean.clone(), module.rolling_variance.clone()
    x = torch.from_numpy(randn(7, 5, 3, 2, 2))
    x[:, 0] *= 1e-3  # small variance: where eps and the variance's divisor matter
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(5, 3, 2, 2)
    out = module(xa)
    out.backward(grad)
    scales, biases = module.scales.detach().clone().requires_grad_(), module.biases.detach().clone().requires_grad_()
    want = torch.nn.functional.batch_norm(xb, *running, scales, biases, True, 0.01, 1e-5)
    want.backward(grad)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(module.rolling_mean, running[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(module.rolling_variance, running[1], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(module.scales.grad, scales.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(module.biases.grad, biases.grad, rtol=1e-5, atol=1e-5)


def test_unknown_fork_refused():
    with pytest.raises(CfgError, match="fork"):
        plan("[maxpool]\n", 2, 2, 1, "fork=darknet2\n")


@pytest.mark.parametrize("body,key", [
    ("[convolutional]\nfilters=2\nsize=3\nsway=1\n", "sway"),
    ("[convolutional]\nfilters=2\nassisted_excitation=1\n", "assisted_excitation"),
    ("[maxpool]\nsize=2\nstride=2\nmaxpool_zero_nonmax=1\n", "maxpool_zero_nonmax"),
    ("[shortcut]\nfrom=-1\nweights_type=per_pixel\n", "weights_type"),
])
def test_unimplemented_options_are_refused(body, key):
    with pytest.raises(CfgError, match=key):
        plan("[convolutional]\nfilters=2\n" + body, 4, 4, 1)
