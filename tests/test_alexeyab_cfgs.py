"""Every cfg of AlexeyAB's set in cfg/alexeyab builds, holds the published files' exact sizes,
loads generated weights, runs forward and saves them back byte for byte."""
from pathlib import Path

import pytest
import torch

import darknet_py
from darknet_py.synthetic import write_random_weights
from darknet_py.weights import expected_size

from conftest import CFG, SHARED

ALEXEYAB = sorted(p.name for p in (CFG / "alexeyab").glob("*.cfg"))
# Weights files over ~100 MB take seconds each to write, load and compare: slow.
LARGE = {"Gaussian_yolov3_BDD.cfg", "csdarknet53-omega.cfg", "yolov4-csp-swish.cfg", "yolov4-csp.cfg",
         "yolov4-custom.cfg", "yolov4-p5.cfg", "yolov4-sam-mish-csp-reorg-bfm.cfg", "yolov4.cfg",
         "yolov4x-mish.cfg", "yolov7.cfg"}

# The sizes of the files AlexeyAB publishes (header 20 bytes, version 0.2.5).
PUBLISHED = [("yolov4.cfg", None, 257_717_640), ("yolov4-tiny.cfg", None, 24_251_276),
             ("yolov4.cfg", 137, 170_038_676), ("yolov4-tiny.cfg", 29, 19_789_716)]


def test_the_set_is_complete():
    assert len(ALEXEYAB) == 16


@pytest.mark.shared
def test_cfg_folder_is_an_unchanged_copy():
    theirs = SHARED / "cfg" / "alexeyab"
    assert sorted(p.name for p in theirs.glob("*.cfg")) == ALEXEYAB
    for name in ALEXEYAB:
        assert (CFG / "alexeyab" / name).read_bytes() == (theirs / name).read_bytes(), name


@pytest.mark.parametrize("name,cutoff,size", PUBLISHED)
def test_published_weights_sizes(name, cutoff, size):
    assert expected_size(darknet_py.Darknet(CFG / "alexeyab" / name, init=False), cutoff) == size


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n
                                  for n in ALEXEYAB])
def test_alexeyab_cfg_loads_runs_and_round_trips(name, tmp_path):
    cfg = CFG / "alexeyab" / name
    path, back = tmp_path / "a.weights", tmp_path / "b.weights"
    write_random_weights(cfg, path, seed=3)
    net = darknet_py.load(cfg, path, width=64, height=64, device="cpu")
    x = torch.rand(2, net.net.channels, 64, 64)
    with torch.no_grad():
        outs = net(x)
    assert len(outs) == max(1, len(net.heads))
    for i, out in zip(net.outputs, outs):
        assert out.shape[0] == 2 and out[0].numel() == net.specs[i].out.numel
        assert torch.isfinite(out).all()
    net.save_weights(back)
    assert back.read_bytes() == path.read_bytes()


def test_alexeyab_net_options_are_kept():
    net = darknet_py.Darknet(CFG / "alexeyab" / "yolov4.cfg", init=False).net
    assert (net.mosaic, net.mixup, net.cutmix, net.flip, net.letter_box) == (1, 0, 0, 1, 0)
    assert net.fork == "alexeyab" and net.sequential_subdivisions == net.subdivisions
    assert darknet_py.Darknet(CFG / "alexeyab" / "efficientnet_b0.cfg", init=False).net.blur == 1
    bdd = darknet_py.Darknet(CFG / "alexeyab" / "Gaussian_yolov3_BDD.cfg", init=False).net
    assert bdd.max_epochs > 0
    csp = darknet_py.Darknet(CFG / "alexeyab" / "yolov4-csp.cfg", init=False, overrides=["fork=alexeyab"])
    assert csp.net.ema_alpha == pytest.approx(0.9998) and csp.net.fork == "alexeyab"
    assert all(layer.fork == "alexeyab" for layer in csp.layers if hasattr(layer, "rolling_mean"))
