"""Which fork a cfg gets (``fork=auto``) and what follows from it: letterbox or plain resize in
detection (AlexeyAB's test_detector / validate_detector_map), correct_yolo_boxes' ``letter``."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.cfg import parse_cfg, parse_cfg_text
from darknet_py.detect import detect, detections_from_outputs, uses_letterbox
from darknet_py.errors import CfgError
from darknet_py.image import letterbox
from darknet_py.model import plan_network
from darknet_py.netcfg import alexeyab_feature
from darknet_py.postprocess import correct_boxes
from darknet_py.validate import validation_detections

from conftest import CFG
from reference.gaussian_yolo_layer import c_correct_gaussian_yolo_boxes
from reference.image_pjreddie import darknet_resize_image
from reference.yolo_layer_alexeyab import c_correct_yolo_boxes

F32 = np.float32
PJREDDIE_CFGS = sorted(p.name for p in CFG.glob("*.cfg"))
ALEXEYAB_ONLY = ["Gaussian_yolov3_BDD.cfg", "csdarknet53-omega.cfg", "efficientnet_b0.cfg", "yolov4.cfg",
                 "yolov4-tiny.cfg", "yolov4-tiny-3l.cfg", "yolov4-csp.cfg", "yolov4-csp-swish.cfg",
                 "yolov4-p5.cfg", "yolov4x-mish.cfg", "yolov4-custom.cfg", "yolov4-sam-mish-csp-reorg-bfm.cfg",
                 "yolov7.cfg", "yolov7-tiny.cfg"]


def fork_of(body, net_extra=""):
    net, _, _ = plan_network(parse_cfg_text(f"[net]\nwidth=8\nheight=8\nchannels=3\n{net_extra}{body}"))
    return net.fork


# --- fork=auto ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PJREDDIE_CFGS)
def test_pjreddie_cfgs_resolve_to_pjreddie(name):
    assert alexeyab_feature(parse_cfg(CFG / name)) is None


@pytest.mark.parametrize("name", ALEXEYAB_ONLY)
def test_alexeyab_cfgs_resolve_to_alexeyab(name):
    assert alexeyab_feature(parse_cfg(CFG / "alexeyab" / name)) is not None


def test_cfgs_of_alexeyab_that_pjreddie_reads_stay_pjreddie():
    # yolov3-tiny_3l and -prn use nothing pjreddie's parser lacks (prn's shortcuts of another
    # channel count add the same channels under both rules)
    for name in ("yolov3-tiny_3l.cfg", "yolov3-tiny-prn.cfg"):
        assert alexeyab_feature(parse_cfg(CFG / "alexeyab" / name)) is None


@pytest.mark.parametrize("body,net_extra", [
    ("[convolutional]\nfilters=3\n[sam]\nfrom=-1\n", ""),
    ("[convolutional]\nfilters=4\nactivation=mish\n", ""),
    ("[conv]\nfilters=4\nstride_x=2\n", ""),
    ("[convolutional]\nfilters=4\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n", ""),
    ("[convolutional]\nfilters=3\n[convolutional]\nfilters=3\n[shortcut]\nfrom=-1,-2\n", ""),
    ("[convolutional]\nfilters=3\n[max]\nsize=2\nstride=1\nantialiasing=1\n", ""),
    ("[convolutional]\nfilters=3\n", "letter_box=1\n"),
    ("[convolutional]\nfilters=3\n", "policy=sgdr\nmax_batches=10\n"),
    ("[convolutional]\nfilters=3\n", "learning_rate_min=0.0001\n"),
    ("[convolutional]\nfilters=18\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=1,1,2,2,3,3\nclasses=1\n"
     "num=3\nscale_x_y=1.05\n", ""),
])
def test_alexeyab_only_features_select_alexeyab(body, net_extra):
    assert fork_of(body, net_extra) == "alexeyab"
    assert fork_of(body, net_extra + "fork=pjreddie\n") == "pjreddie"  # an explicit fork wins


def test_plain_cfg_is_pjreddie_and_explicit_fork_wins():
    body = "[convolutional]\nfilters=3\nbatch_normalize=1\nactivation=leaky\n[shortcut]\nfrom=-1\n"
    assert fork_of(body) == "pjreddie"
    assert fork_of(body, "fork=auto\n") == "pjreddie"
    assert fork_of(body, "fork=alexeyab\n") == "alexeyab"
    with pytest.raises(CfgError, match="auto, pjreddie, alexeyab"):
        fork_of(body, "fork=darknet2\n")


def test_resolved_fork_is_exposed_logged_and_reaches_the_layers(caplog):
    with caplog.at_level(logging.INFO, logger="darknet_py.netcfg"):
        net = darknet_py.Darknet(CFG / "alexeyab" / "yolov4-tiny.cfg", init=False)
    assert net.fork == net.net.fork == "alexeyab"
    assert "fork=alexeyab (auto: groups=2 in [route]" in caplog.text
    assert all(layer.fork == "alexeyab" for layer in net.layers if hasattr(layer, "rolling_mean"))
    pj = darknet_py.Darknet(CFG / "yolov3-tiny.cfg", init=False)
    assert pj.fork == "pjreddie"
    assert all(layer.fork == "pjreddie" for layer in pj.layers if hasattr(layer, "rolling_mean"))


# --- detection: letterbox or resize ---------------------------------------------------------------

@pytest.mark.parametrize("letter", [0, 1])
@pytest.mark.parametrize("size", [(640, 427), (300, 700), (97, 131)])
def test_correct_boxes_match_alexeyab(letter, size):
    rng = np.random.default_rng(sum(size) + letter)
    boxes = rng.uniform(0.01, 1.0, (200, 4)).astype(F32)
    w, h = size
    np.testing.assert_array_equal(correct_boxes(boxes, w, h, 416, 288, True, bool(letter)),
                                  c_correct_yolo_boxes(boxes, w, h, 416, 288, letter))
    np.testing.assert_array_equal(correct_boxes(boxes, w, h, 416, 288, False, bool(letter)),
                                  c_correct_gaussian_yolo_boxes(boxes, w, h, 416, 288, letter))
    if not letter:  # the network saw the whole image: boxes relative to it are already right
        np.testing.assert_array_equal(correct_boxes(boxes, w, h, 416, 288, True, False), boxes)


YOLO_HEAD = ("[convolutional]\nsize=1\nfilters=18\nactivation=linear\n"
             "[yolo]\nmask=0,1,2\nanchors=3,4,8,6,12,14\nclasses=1\nnum=3\n")


def tiny_yolo(tmp_path, net_extra="", yolo_extra=""):
    cfg = tmp_path / "t.cfg"
    cfg.write_text(f"[net]\nwidth=32\nheight=24\nchannels=3\n{net_extra}"
                   "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
                   f"{YOLO_HEAD}{yolo_extra}")
    torch.manual_seed(0)
    net = darknet_py.Darknet(cfg).eval()
    with torch.no_grad():
        net.layers[1].biases.copy_(torch.linspace(-1, 1, 18))
    return net


@pytest.mark.parametrize("net_extra,yolo_extra,fork,letter", [
    ("", "", "pjreddie", True),                          # pjreddie: always letterboxed
    ("", "scale_x_y=1.05\n", "alexeyab", False),         # AlexeyAB's test_detector: resize_image
    ("letter_box=1\n", "", "alexeyab", True),            # ... unless [net] letter_box=1
    ("fork=alexeyab\n", "", "alexeyab", False),
])
def test_detect_feeds_the_image_as_the_fork_does(tmp_path, net_extra, yolo_extra, fork, letter):
    net = tiny_yolo(tmp_path, net_extra, yolo_extra)
    assert net.fork == fork and uses_letterbox(net) is letter
    image = np.random.default_rng(1).random((3, 19, 45), dtype=np.float32)
    seen = []
    hook = net.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        got = detect(net, image, thresh=0.05)
        forced = [detect(net, image, thresh=0.05, letterbox=flag) for flag in (True, False)]
    finally:
        hook.remove()
    want = letterbox(image, 32, 24) if letter else darknet_resize_image(image, 32, 24)
    assert np.array_equal(seen[0][0].float().numpy(), want)          # bit for bit
    assert np.array_equal(seen[1][0].float().numpy(), letterbox(image, 32, 24))
    assert np.array_equal(seen[2][0].float().numpy(), darknet_resize_image(image, 32, 24))
    with torch.no_grad():
        outputs = net(seen[0])
    same = detections_from_outputs(net, outputs, [(45, 19)], 0.05, 0.45, letterbox=letter)[0]
    assert len(got) > 0
    np.testing.assert_array_equal(got.boxes, same.boxes)
    np.testing.assert_array_equal(got.probs, same.probs)
    np.testing.assert_array_equal(forced[0 if letter else 1].boxes, got.boxes)


class _Images:
    """The ``source`` interface validation reads: ``len``, ``load(i)``, ``paths``."""

    def __init__(self, images):
        self.images, self.paths = images, [f"{i}.jpg" for i in range(len(images))]

    def __len__(self):
        return len(self.images)

    def load(self, i):
        return self.images[i], np.zeros((0, 5), F32)


@pytest.mark.parametrize("net_extra", ["", "fork=alexeyab\n", "fork=alexeyab\nletter_box=1\n"])
def test_validation_pass_follows_the_fork(tmp_path, net_extra):
    net = tiny_yolo(tmp_path, net_extra)
    rng = np.random.default_rng(2)
    images = [rng.random((3, 20, 50), dtype=np.float32), rng.random((3, 40, 16), dtype=np.float32)]
    dets, _, _ = validation_detections(net, _Images(images), batch_size=2, progress=False)
    for det, image in zip(dets, images):
        want = detect(net, image, thresh=0.005).rows(0.0)
        np.testing.assert_array_equal(det[:, 2:], want[:, 1:5])
    letter = uses_letterbox(net)
    other, _, _ = validation_detections(net, _Images(images), batch_size=2, progress=False, letterbox=not letter)
    assert not all(len(a) == len(b) and np.array_equal(a, b) for a, b in zip(dets, other))
    assert math.isfinite(float(sum(d[:, 1].sum() for d in dets)))


# --- antialiasing: only a blur that keeps the size ----------------------------------------------

@pytest.mark.parametrize("body", [
    "[convolutional]\nfilters=2\nsize=3\npad=1\nstride=2\nantialiasing=1\n",
    "[convolutional]\nfilters=2\nsize=3\npad=1\nstride_x=2\nstride_y=1\nantialiasing=1\n",
    "[convolutional]\nfilters=2\nsize=3\npad=1\nantialiasing=2\n",
    "[maxpool]\nsize=2\nstride=2\nantialiasing=1\n",
    "[maxpool]\nsize=2\nstride=1\nantialiasing=2\n",
])
def test_antialiasing_that_changes_the_size_is_refused(body):
    # make_convolutional_layer / make_maxpool_layer keep the stride-1 out_w, out_h while the
    # forward pass memcpy's the smaller blurred output over the front of that buffer
    with pytest.raises(CfgError, match=r"antialiasing.*stride-1 size"):
        fork_of(body)


def test_antialiasing_that_keeps_the_size_is_darknets_recorded_size():
    net, specs, _ = plan_network(parse_cfg_text(
        "[net]\nwidth=9\nheight=7\nchannels=3\n[convolutional]\nfilters=2\nsize=3\npad=1\nantialiasing=1\n"
        "[maxpool]\nsize=3\nstride=1\nantialiasing=1\n[route]\nlayers=-1,-2\n"))
    assert [(s.out.c, s.out.h, s.out.w) for s in specs] == [(2, 7, 9), (2, 7, 9), (4, 7, 9)]


# --- [convolutional] share_index ---------------------------------------------------------------

SHARE = """[net]
width=16
height=16
channels=3
{net}
[convolutional]
filters=3
size=3
pad=1
batch_normalize=1
activation=leaky
[convolutional]
filters=3
size=3
stride=2
pad=1
batch_normalize=1
activation=mish
{share}
"""


def _share_net(tmp_path, share="share_index=-1", net=""):
    cfg = tmp_path / "share.cfg"
    cfg.write_text(SHARE.format(share=share, net=net))
    return darknet_py.Darknet(cfg)


def test_share_index_uses_the_other_layers_parameters_and_stores_nothing(tmp_path):
    shared = _share_net(tmp_path)
    owner, user = shared.layers
    for name in ("weights", "biases", "scales", "rolling_mean", "rolling_variance"):
        assert getattr(user, name) is getattr(owner, name)
    assert [n for n, _ in shared.named_parameters()] == ["layers.0.weights", "layers.0.biases", "layers.0.scales"]
    assert user.blobs() == [] and shared.specs[1].n_params == 0
    # make_convolutional_layer: weights, biases, scales, rolling mean and variance come from the owner
    assert darknet_py.weights.expected_size(shared) == 20 + 4 * (3 + 3 * 3 + 3 * 3 * 3 * 3)
    (tmp_path / "plain.cfg").write_text(SHARE.format(share="", net=""))
    twin = darknet_py.Darknet(tmp_path / "plain.cfg")
    with torch.no_grad():
        for layer in twin.layers:
            for name in ("weights", "biases", "scales", "rolling_mean", "rolling_variance"):
                getattr(layer, name).copy_(getattr(owner, name))
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(shared.eval()(x)[0], twin.eval()(x)[0])


def test_share_index_file_round_trip_and_training_updates_one_set(tmp_path):
    net = _share_net(tmp_path)
    from darknet_py.synthetic import fill_random
    fill_random(net, 4)
    path, back = tmp_path / "a.weights", tmp_path / "b.weights"
    net.save_weights(path)
    assert path.stat().st_size == darknet_py.weights.expected_size(net)
    loaded = darknet_py.load(tmp_path / "share.cfg", path, device="cpu")
    assert loaded.layers[1].weights is loaded.layers[0].weights
    assert torch.equal(loaded.layers[1].rolling_variance, net.layers[0].rolling_variance)
    loaded.save_weights(back)
    assert back.read_bytes() == path.read_bytes()
    loaded.train()
    before = loaded.layers[0].rolling_mean.clone()
    loaded(torch.rand(2, 3, 16, 16))[0].sum().backward()
    # the batch statistics go into the owner's rolling mean, the only one there is
    assert not torch.equal(loaded.layers[0].rolling_mean, before)
    assert loaded.layers[1].rolling_mean is loaded.layers[0].rolling_mean
    assert loaded.layers[0].weights.grad is not None


@pytest.mark.parametrize("share,match", [
    ("share_index=5", "layer index 5"),
    ("share_index=-2", "resolves to -1"),
])
def test_share_index_outside_the_earlier_layers_is_refused(tmp_path, share, match):
    with pytest.raises(CfgError, match=match):
        _share_net(tmp_path, share)


def test_share_index_of_another_shape_or_kind_is_refused(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\n"
                   "[convolutional]\nfilters=4\nsize=3\npad=1\nshare_index=0\n")
    with pytest.raises(CfgError, match=r"share_index.*\(4, 3, 3, 3\).*\(4, 4, 3, 3\)"):
        darknet_py.Darknet(cfg)
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=3\nsize=1\n"
                   "[convolutional]\nfilters=3\nsize=1\nbatch_normalize=1\nshare_index=0\n")
    with pytest.raises(CfgError, match="no batch norm"):
        darknet_py.Darknet(cfg)
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[maxpool]\nsize=1\nstride=1\n"
                   "[convolutional]\nfilters=3\nsize=1\nshare_index=0\n")
    with pytest.raises(CfgError, match="not a \\[convolutional\\]"):
        darknet_py.Darknet(cfg)


# --- weights header: seen's width per fork -----------------------------------------------------

def c_seen_bytes(major, minor, fork):
    """load_weights_upto: pjreddie reads a size_t seen when (major*10 + minor) >= 2 && major < 1000
    && minor < 1000, else an int; AlexeyAB when (major*10 + minor) >= 2, else a uint32_t."""
    if fork == "alexeyab":
        return 8 if major * 10 + minor >= 2 else 4
    return 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4


@pytest.mark.parametrize("major,minor", [(0, 1), (0, 2), (1, 0), (0, 1000), (1000, 0), (1001, 2), (0, 1001)])
@pytest.mark.parametrize("fork", ["pjreddie", "alexeyab"])
def test_weights_header_follows_the_forks_seen_rule(tmp_path, major, minor, fork):
    net = _share_net(tmp_path, net=f"fork={fork}")
    from darknet_py.synthetic import fill_random
    fill_random(net, 1)
    path = tmp_path / "h.weights"
    seen = 3_000_000_000 if fork == "alexeyab" or c_seen_bytes(major, minor, fork) == 8 else 123456
    net.save_weights(path, header=darknet_py.Header(major, minor, 7, seen))
    data = path.read_bytes()
    width = c_seen_bytes(major, minor, fork)
    assert len(data) == 12 + width + darknet_py.weights.expected_size(net) - net.header.size
    fmt = {8: "<Q", 4: "<I" if fork == "alexeyab" else "<i"}[width]
    import struct
    assert struct.unpack_from("<iii" + fmt[1], data) == (major, minor, 7, seen)
    loaded = darknet_py.Darknet(tmp_path / "share.cfg", init=False)
    header = loaded.load_weights(path)
    assert (header.major, header.minor, header.seen, header.size) == (major, minor, seen, 12 + width)
    assert torch.equal(loaded.layers[0].weights, net.layers[0].weights)
    loaded.save_weights(tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == data


# --- YOLOR's implicit knowledge in converted cfgs ----------------------------------------------

YOLOR_HEAD = """[net]
width=16
height=16
channels=3
[convolutional]
filters=4
size=3
stride=2
pad=1
batch_normalize=1
activation=leaky
[implicit_add]
filters=4
[implicit_mul]
filters=6
[route]
layers=0
[shift_channels]
from=1
[convolutional]
filters=6
size=1
activation=linear
[control_channels]
from=-4
"""


def test_yolor_implicit_layers_match_their_pytorch_and_file_layout(tmp_path):
    cfg = tmp_path / "yolor.cfg"
    cfg.write_text(YOLOR_HEAD)
    torch.manual_seed(3)
    net = darknet_py.Darknet(cfg).eval()
    conv1, ia, im, conv2 = net.layers[0], net.layers[1], net.layers[2], net.layers[5]
    assert net.fork == "pjreddie"  # YOLOR's sections are not AlexeyAB's parser's
    # init: ImplicitA ~ N(0, .02), ImplicitM ~ N(1, .02)
    assert abs(float(ia.weights.detach().mean())) < 0.1 and abs(float(im.weights.detach().mean()) - 1) < 0.1
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        got = net(x)[0]
        # models.py of YOLOR: ShiftChannel a.expand_as(x) + x, ControlChannel a.expand_as(x) * x
        a = ia.weights.view(1, 4, 1, 1)
        m = im.weights.view(1, 6, 1, 1)
        h = conv1(x)
        want = conv2(a.expand_as(h) + h)
        want = m.expand_as(want) * want
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # file: the implicit values (filters floats) at their layers' places between the convolutions
    from darknet_py.synthetic import fill_random
    fill_random(net, 2)
    path, back = tmp_path / "a.weights", tmp_path / "b.weights"
    net.save_weights(path)
    floats = np.frombuffer(path.read_bytes()[20:], "<f4")
    first = 4 + 3 * 4 + 4 * 3 * 9  # biases, scales, mean, variance, weights
    assert len(floats) == first + 4 + 6 + (6 + 6 * 4)
    np.testing.assert_array_equal(floats[first:first + 4], ia.weights.detach().numpy().ravel())
    np.testing.assert_array_equal(floats[first + 4:first + 10], im.weights.detach().numpy().ravel())
    loaded = darknet_py.load(cfg, path, device="cpu")
    loaded.save_weights(back)
    assert back.read_bytes() == path.read_bytes()


def test_yolor_channel_ops_refuse_what_does_not_broadcast():
    with pytest.raises(CfgError, match="does not broadcast"):
        fork_of("[implicit_add]\nfilters=5\n[convolutional]\nfilters=4\n[shift_channels]\nfrom=0\n")
    with pytest.raises(CfgError, match="required"):
        fork_of("[implicit_mul]\n")
