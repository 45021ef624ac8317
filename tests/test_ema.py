"""AlexeyAB's ``ema_alpha`` against a transcription of its C: train_network_waitkey's EMA block,
is_ema_initialized, ema_update, ema_apply and save_weights_upto(..., save_ema=1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.errors import CfgError
from darknet_py.model import Darknet
from darknet_py.shapes import generate_shapes
from darknet_py.train.checkpoint import state_path
from darknet_py.train.ema import WeightsEma
from darknet_py.train.trainer import Trainer, TrainOptions

from conftest import ROOT
from reference.ema_alexeyab import CLayer, after_update, is_ema_initialized, save_weights_upto_ema

TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"
F32 = np.float32
ALPHA = 0.9998

# conv with BN, conv without, a conv sharing layer 1's weights (share_index), a connected layer
MIXED = """[net]
batch=2
width=8
height=8
channels=3
max_batches={max_batches}
ema_alpha={alpha}

[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky

[convolutional]
filters=4
size=3
pad=1
activation=linear

[convolutional]
share_index=1
filters=4
size=3
pad=1
activation=linear

[maxpool]
size=2
stride=2

[connected]
output=5
batch_normalize=1
activation=linear
"""


# -- the network as the C's layers (reference/ema_alexeyab.py) --------------------------------
def c_layers(net):
    """The network's arrays, copied, as the C's layers."""
    layers = []
    for spec, layer in zip(net.specs, net.layers):
        arrays = {"weights": np.zeros(0, F32), "biases": np.zeros(0, F32), "scales": None}
        if hasattr(layer, "biases"):
            arrays = {k: getattr(layer, k).detach().numpy().copy() for k in ("weights", "biases")}
            bn = getattr(layer, "batch_normalize", False)
            for k in ("scales", "rolling_mean", "rolling_variance"):
                arrays[k] = getattr(layer, k).detach().numpy().copy() if bn else None
        layers.append(CLayer(spec.kind.upper(), arrays, shared=hasattr(layer, "share_index")))
    return layers


# -- helpers ------------------------------------------------------------------------------------
def mixed_net(tmp_path, max_batches, alpha=ALPHA, seed=0):
    cfg = tmp_path / "mixed.cfg"
    cfg.write_text(MIXED.format(max_batches=max_batches, alpha=alpha))
    torch.manual_seed(seed)
    net = Darknet(cfg)
    with torch.no_grad():
        for layer in net.layers:
            for p in layer.parameters():
                p.normal_()
    return net


@torch.no_grad()
def perturb(net, layers, rng):
    """A stand-in for update_network: the same random step on both sides."""
    for layer, l in zip(net.layers, layers):
        if l.shared:
            continue
        for name in ("weights", "biases", "scales", "rolling_mean"):
            p = getattr(layer, name, None)
            if p is None or getattr(l, name, None) is None:
                continue
            step = rng.standard_normal(tuple(p.shape)).astype(F32) * F32(0.01)
            p.add_(torch.from_numpy(step))
            getattr(l, name)[...] += step


def conv_state(layers):
    return [a for l in layers if l.weights_ema is not None
            for a in (l.weights_ema, l.biases_ema) + ((l.scales_ema,) if l.scales_ema is not None else ())]


def assert_same(net, ema, layers):
    for got, want in zip(ema.averages, conv_state(layers)):
        assert np.array_equal(got.numpy(), want)
    for layer, l in zip(net.layers, layers):
        if hasattr(layer, "share_index") or not hasattr(layer, "biases"):
            continue
        assert np.array_equal(layer.weights.detach().numpy(), l.weights)
        assert np.array_equal(layer.biases.detach().numpy(), l.biases)


# -- the update ---------------------------------------------------------------------------------
def test_what_is_averaged(tmp_path):
    """Weights, biases and scales of [convolutional] layers that own them; nothing of the
    shared convolution or the [connected] layer; no rolling statistics."""
    net = mixed_net(tmp_path, 2006)
    ema = WeightsEma(net, ALPHA)
    conv0, conv1 = net.layers[0], net.layers[1]
    tracked = [conv0.weights, conv0.biases, conv0.scales, conv1.weights, conv1.biases]
    assert len(ema.params) == len(tracked) and all(a is b for a, b in zip(ema.params, tracked))
    assert (ema.start, ema.apply_point) == (1003, 1006)


def test_update_and_apply_match_the_c_over_iterations(tmp_path):
    """Iterations 1000..1010 of max_batches=2006: nothing before 1003, initialisation and an
    update at 1003, updates to 1005, ema_apply at 1006, nothing after; bit for bit."""
    net = mixed_net(tmp_path, 2006)
    ema = WeightsEma(net, ALPHA)
    layers = c_layers(net)
    rng = np.random.default_rng(0)
    for iteration in range(1000, 1011):
        perturb(net, layers, rng)
        before = [p.detach().clone() for p in ema.params]
        ema.step(iteration)
        after_update(layers, iteration, 2006, ALPHA)
        assert_same(net, ema, layers)
        assert ema.initialized() == bool(is_ema_initialized(layers)) == (iteration >= 1003)
        changed = any(not torch.equal(a, b) for a, b in zip(before, ema.params))
        assert changed == (iteration == 1006), iteration


def test_update_rounds_as_float32_products(tmp_path):
    """The C's float arithmetic, not a float64 or fused average: the transcription and the
    module agree, and a float64 average of the same values would not."""
    net = mixed_net(tmp_path, 2006)
    ema = WeightsEma(net, ALPHA)
    ema.update(0.0)
    w_old = net.layers[1].weights.detach().numpy().copy()
    with torch.no_grad():
        net.layers[1].weights.mul_(1.5)
    ema.update(ALPHA)
    w_new = net.layers[1].weights.detach().numpy()
    c = F32(ALPHA) * w_old + (F32(1) - F32(ALPHA)) * w_new
    double = (ALPHA * w_old.astype(np.float64) + (1 - ALPHA) * w_new.astype(np.float64)).astype(F32)
    got = ema.averages[3].numpy()
    assert np.array_equal(got, c) and not np.array_equal(got, double)


def test_zero_weights_count_as_uninitialised(tmp_path):
    """is_ema_initialized looks at the weights' averages only: with every convolution weight 0
    the average is initialised again at each iteration, as in the C."""
    net = mixed_net(tmp_path, 2006)
    with torch.no_grad():
        net.layers[0].weights.zero_()
        net.layers[1].weights.zero_()
    ema = WeightsEma(net, ALPHA)
    layers = c_layers(net)
    for iteration in (1003, 1004):
        with torch.no_grad():
            net.layers[0].biases.add_(1.0)
        layers[0].biases += F32(1.0)
        ema.step(iteration)
        after_update(layers, iteration, 2006, ALPHA)
        assert not ema.initialized()
        assert_same(net, ema, layers)


def test_short_runs_only_initialise(tmp_path):
    """max_batches < 2000: the apply point (max_batches - 1000) precedes the start
    (max_batches / 2); the average is the weights at the start and never moves."""
    net = mixed_net(tmp_path, 7)
    ema = WeightsEma(net, ALPHA)
    layers = c_layers(net)
    rng = np.random.default_rng(1)
    for iteration in range(1, 8):
        perturb(net, layers, rng)
        ema.step(iteration)
        after_update(layers, iteration, 7, ALPHA)
        assert_same(net, ema, layers)
    assert ema.start == 3
    snapshot = [p.detach().clone() for p in ema.params]
    assert not all(torch.equal(a, s) for a, s in zip(ema.averages, snapshot))


# -- the file -----------------------------------------------------------------------------------
def test_ema_file_is_save_weights_upto_with_save_ema(tmp_path):
    """The averages where the convolutions' biases, scales and weights go, the live rolling
    statistics, the [connected] layer as it is, nothing for the shared layer; the network's
    own weights untouched by the save."""
    net = mixed_net(tmp_path, 2006)
    net.seen = 2012
    ema = WeightsEma(net, ALPHA)
    layers = c_layers(net)
    rng = np.random.default_rng(2)
    for iteration in range(1003, 1006):
        perturb(net, layers, rng)
        ema.step(iteration)
        after_update(layers, iteration, 2006, ALPHA)
    raw = tmp_path / "raw.weights"
    net.save_weights(raw)
    ema.save(tmp_path / "ema.weights")
    again = tmp_path / "again.weights"
    net.save_weights(again)
    header = raw.read_bytes()[:20]  # major, minor, revision (int32), seen (uint64): as _last's
    assert np.frombuffer(header, "<i4", 2)[1] == 2 and np.frombuffer(header[12:], "<u8")[0] == 2012
    assert (tmp_path / "ema.weights").read_bytes() == save_weights_upto_ema(layers, header)
    assert again.read_bytes() == raw.read_bytes()


# -- through the trainer ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), 16, seed=5, size=96)


def ema_cfg(tmp_path, alpha=ALPHA, extra=()):
    text = TINY.read_text().replace("exposure=1.5\n", f"exposure=1.5\nema_alpha={alpha}\n" +
                                    "".join(f"{line}\n" for line in extra), 1)
    path = tmp_path / "tiny-ema.cfg"
    path.write_text(text)
    return path


def opts(tmp_path, **kw):
    return TrainOptions(backup=str(tmp_path / "backup"), workers=0, progress=False, last_every=1,
                        valid_every=0, **kw)


def start_file(cfg, tmp_path, iteration):
    """Random weights whose ``seen`` puts training at ``iteration``."""
    torch.manual_seed(3)
    net = Darknet(cfg)
    net.seen = iteration * net.net.batch
    path = tmp_path / "start.weights"
    net.save_weights(path)
    return path


class Stop(KeyboardInterrupt):
    pass


def stop_at(n):
    def callback(trainer):
        if trainer.iteration == n:
            raise Stop
    return callback


def record_steps(monkeypatch):
    """(iteration, parameters before, parameters after) of every EMA step."""
    calls = []
    original = WeightsEma.step

    def step(self, iteration):
        before = [p.detach().numpy().copy() for p in self.params]
        original(self, iteration)
        calls.append((iteration, before, [p.detach().numpy().copy() for p in self.params]))
    monkeypatch.setattr(WeightsEma, "step", step)
    return calls


def test_trainer_averages_applies_and_writes_the_ema_file(shapes, tmp_path, monkeypatch):
    """max_batches=2004 from iteration 1001: 1002 initialises and updates, 1003 updates, 1004
    applies, 1005 trains on from the averaged weights; stopped there, _last holds the training
    weights and _ema the averages."""
    cfg = ema_cfg(tmp_path)
    calls = record_steps(monkeypatch)
    t = Trainer(shapes, cfg, start_file(cfg, tmp_path, 1001), overrides=["max_batches=2004"],
                options=opts(tmp_path, callback=stop_at(1005)))
    assert t.cfg.fork == "alexeyab" and t.ema is not None and not t.ema.initialized()
    with pytest.raises(Stop):
        t.run()
    assert [c[0] for c in calls] == [1002, 1003, 1004, 1005]
    a, b = F32(ALPHA), F32(1) - F32(ALPHA)
    expected = [F32(0) * np.zeros_like(p) + F32(1) * p for p in calls[0][1]]  # ema_update(net, 0)
    expected = [a * e + b * p for e, p in zip(expected, calls[0][1])]
    expected = [a * e + b * p for e, p in zip(expected, calls[1][1])]
    for got, want in zip(t.ema.averages, expected):
        assert np.array_equal(got.numpy(), want)
    for i in (0, 1, 3):  # only ema_apply touches the weights
        assert all(np.array_equal(x, y) for x, y in zip(calls[i][1], calls[i][2]))
    assert all(np.array_equal(p, e) for p, e in zip(calls[2][2], expected))
    backup = tmp_path / "backup"
    last, ema_file = backup / "tiny-ema_last.weights", backup / "tiny-ema_ema.weights"
    net = Darknet(cfg, init=False)
    net.load_weights(last)
    assert net.seen == 1005 * 8
    for p, want in zip(WeightsEma(net, ALPHA).params, calls[3][2]):
        assert np.array_equal(p.detach().numpy(), want)
    net.load_weights(ema_file)
    for p, want in zip(WeightsEma(net, ALPHA).params, expected):
        assert np.array_equal(p.detach().numpy(), want)
    for name in ("rolling_mean", "rolling_variance"):  # the live statistics
        assert torch.equal(getattr(net.layers[0], name), getattr(t.net.layers[0], name))


def test_resume_after_interrupt_repeats_the_uninterrupted_run(shapes, tmp_path):
    """max_batches=2012 from iteration 1004: start at 1006, apply at 1012. Stopped at 1007
    and resumed, the run ends at 1013 with the same _last and _ema bytes as one that was not;
    _ema.weights appears only once the average exists; the sidecar carries it."""
    cfg = ema_cfg(tmp_path)
    start = start_file(cfg, tmp_path, 1004)
    overrides = ["max_batches=2012"]
    seen_files = {}

    def watch(trainer):
        seen_files[trainer.iteration] = (trainer.backup / "tiny-ema_ema.weights").exists()
        if trainer.iteration == 1013:
            raise Stop

    with pytest.raises(Stop):
        Trainer(shapes, cfg, start, overrides=overrides, options=opts(tmp_path / "full", callback=watch)).run()
    assert seen_files[1005] is False and seen_files[1006] is True

    with pytest.raises(Stop):
        Trainer(shapes, cfg, start, overrides=overrides, options=opts(tmp_path / "cut", callback=stop_at(1007))).run()
    last = tmp_path / "cut" / "backup" / "tiny-ema_last.weights"
    resumed = Trainer(shapes, cfg, last, overrides=overrides, options=opts(tmp_path / "cut", callback=stop_at(1013)))
    assert resumed.iteration == 1007 and resumed.ema.initialized()
    state = torch.load(state_path(last), weights_only=True)
    for got, saved in zip(resumed.ema.averages, state["ema"]):
        assert torch.equal(got, saved)
    with pytest.raises(Stop):
        resumed.run()
    for name in ("tiny-ema_last.weights", "tiny-ema_ema.weights"):
        full, cut = tmp_path / "full" / "backup" / name, tmp_path / "cut" / "backup" / name
        assert full.read_bytes() == cut.read_bytes(), name


def test_without_its_sidecar_the_average_starts_again(shapes, tmp_path):
    """As AlexeyAB's restart: no average in memory, initialised again from the weights."""
    cfg = ema_cfg(tmp_path)
    start = start_file(cfg, tmp_path, 1005)
    with pytest.raises(Stop):
        Trainer(shapes, cfg, start, overrides=["max_batches=2012"],
                options=opts(tmp_path, callback=stop_at(1006))).run()
    last = tmp_path / "backup" / "tiny-ema_last.weights"
    state_path(last).unlink()
    t = Trainer(shapes, cfg, last, overrides=["max_batches=2012"], options=opts(tmp_path / "b"))
    assert not t.ema.initialized()


@pytest.mark.parametrize("lines, option, message", [
    (["ema_alpha=1.5"], "ema_alpha", "0..1"),
    (["fork=pjreddie"], "ema_alpha", "fork=pjreddie"),
])
def test_bad_ema_alpha_is_refused_by_line(shapes, tmp_path, lines, option, message):
    text = TINY.read_text().replace("exposure=1.5\n", "exposure=1.5\n" + "".join(f"{x}\n" for x in lines), 1)
    if "ema_alpha" not in text:
        text = text.replace("exposure=1.5\n", f"exposure=1.5\nema_alpha={ALPHA}\n", 1)
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    with pytest.raises(CfgError, match=message) as e:
        Trainer(shapes, cfg, options=opts(tmp_path))
    assert e.value.option == option and e.value.line == text.splitlines().index("exposure=1.5") + 2
