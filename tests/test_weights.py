"""Weights files: exact sizes, byte-identical round trips, header variants, refusals."""
import os
import re
import struct

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.errors import WeightsError
from darknet_py.weights import Header, expected_size

from conftest import CFG, SHARED


def published_sizes():
    """Rows of the official-file table in the shared README: (file, cfg, layers, bytes)."""
    readme = SHARED / "README.md"
    if not readme.is_file():
        return []
    rows = re.findall(r"^\| (\S+) \| (\S+\.cfg) \| (all|first \d+) \| ([\d,]+) \|", readme.read_text(), re.M)
    return [(f, c, None if n == "all" else int(n.split()[1]), int(b.replace(",", ""))) for f, c, n, b in rows]


PJREDDIE = [row for row in published_sizes() if not row[1].startswith("alexeyab/")]


@pytest.mark.shared
def test_table_was_found():
    assert len(PJREDDIE) >= 4


@pytest.mark.shared
@pytest.mark.parametrize("file,cfg,cutoff,size", PJREDDIE, ids=[r[0] for r in PJREDDIE])
def test_official_file_sizes_follow_from_the_cfgs(file, cfg, cutoff, size):
    net = darknet_py.Darknet(SHARED / "cfg" / cfg, init=False)
    assert expected_size(net, cutoff) == size


def independent_file(path, n_floats, header=(0, 2, 0), seen=123_456_789_012, seed=0):
    """Header + random finite floats, written without darknet_py's writer."""
    major, minor, revision = header
    seen_fmt = "<Q" if (major * 10 + minor >= 2 and major < 1000 and minor < 1000) else "<i"
    floats = np.random.default_rng(seed).standard_normal(n_floats).astype("<f4")
    path.write_bytes(struct.pack("<iii", *header) + struct.pack(seen_fmt, seen) + floats.tobytes())
    return floats


def n_floats(net, cutoff=None):
    return (expected_size(net, cutoff) - 20) // 4


@pytest.mark.parametrize("cfg,cutoff", [
    ("yolov3.cfg", None), ("yolov3-tiny.cfg", None), ("yolov3-spp.cfg", None), ("yolov2.cfg", None),
    ("darknet53.cfg", 74),
])
def test_byte_identical_round_trip(cfg, cutoff, tmp_path, monkeypatch):
    monkeypatch.setenv("DARKNET_PY_ALLOW_BAD_WEIGHTS", "1")  # N(0, 1) floats hold negative variances
    net = darknet_py.Darknet(CFG / cfg, init=False)
    src, out = tmp_path / "in.weights", tmp_path / "out.weights"
    independent_file(src, n_floats(net, cutoff))
    net.load_weights(src, cutoff)
    assert net.seen == 123_456_789_012
    net.save_weights(out, cutoff)
    assert out.read_bytes() == src.read_bytes()


CONNECTED_CFG = "[net]\nwidth=4\nheight=4\nchannels=2\n[convolutional]\nbatch_normalize=1\nfilters=3\n" \
                "size=3\npad=1\n[connected]\noutput=5\nbatch_normalize=1\nactivation=linear\n"


@pytest.mark.parametrize("header,header_bytes,transposed", [
    ((0, 1, 0), 16, False),      # minor 1: 4-byte seen
    ((0, 0, 0), 16, False),
    ((0, 2, 5), 20, False),      # AlexeyAB's revision 5
    ((1, 0, 0), 20, False),
    ((0, 1001, 0), 16, True),    # minor > 1000: 4-byte seen and transposed connected weights
    ((1001, 0, 0), 16, True),
])
def test_header_variants_round_trip(header, header_bytes, transposed, tmp_path, monkeypatch):
    monkeypatch.setenv("DARKNET_PY_ALLOW_BAD_WEIGHTS", "1")  # N(0, 1) floats hold negative variances
    cfg = tmp_path / "c.cfg"
    cfg.write_text(CONNECTED_CFG)
    net = darknet_py.Darknet(cfg, init=False)
    count = n_floats(net)
    src, out = tmp_path / "in.weights", tmp_path / "out.weights"
    floats = independent_file(src, count, header=header, seen=77)
    assert src.stat().st_size == header_bytes + 4 * count
    loaded = net.load_weights(src)
    assert (loaded.major, loaded.minor, loaded.revision, loaded.seen) == (*header, 77)
    conv_floats = 3 + 3 * 3 + 3 * 2 * 9
    weights = floats[conv_floats + 5: conv_floats + 5 + 5 * 48]
    expected = weights.reshape(48, 5).T if transposed else weights.reshape(5, 48)
    assert np.array_equal(net.layers[1].weights.detach().numpy(), expected)
    net.save_weights(out)
    assert out.read_bytes() == src.read_bytes()


def test_new_network_writes_darknet_header(tmp_path):
    net = darknet_py.load(CFG / "yolov3-tiny.cfg")
    net.seen = 64
    net.save_weights(tmp_path / "w.weights")
    data = (tmp_path / "w.weights").read_bytes()
    assert struct.unpack("<iiiQ", data[:20]) == (0, 2, 0, 64)
    assert len(data) == 35_434_956


def test_partial_file_initialises_the_first_layers(tmp_path, weights_for):
    conv74 = weights_for("darknet53.cfg", seed=2, cutoff=74)
    assert conv74.stat().st_size == 162_482_580
    full = darknet_py.load(CFG / "darknet53.cfg", conv74, cutoff=74)
    yolo = darknet_py.load(CFG / "yolov3.cfg", conv74, cutoff=74)
    for i in range(74):
        for a, b in zip(full.layers[i].state_dict().values(), yolo.layers[i].state_dict().values()):
            assert torch.equal(a, b)
    out = tmp_path / "cut.weights"
    yolo.save_weights(out, cutoff=74)
    assert out.read_bytes() == conv74.read_bytes()


@pytest.fixture(scope="module")
def tiny(weights_for):
    path = weights_for("yolov3-tiny.cfg", seed=4)
    return path, path.read_bytes()


def refused(tmp_path, data, cfg="yolov3-tiny.cfg", **kw):
    path = tmp_path / "bad.weights"
    path.write_bytes(data)
    net = darknet_py.Darknet(CFG / cfg)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(WeightsError) as e:
        net.load_weights(path, **kw)
    for k, v in net.state_dict().items():  # a refused file changes nothing
        assert torch.equal(v, before[k]), k
    assert "bad.weights" in str(e.value)
    return str(e.value)


def test_truncated_file_names_the_layer_and_counts(tmp_path, tiny):
    _, data = tiny
    message = refused(tmp_path, data[:20_000_000])
    net = darknet_py.Darknet(CFG / "yolov3-tiny.cfg", init=False)
    position, layer = 20, None
    for i, spec in enumerate(net.specs):  # walk the per-layer sizes independently of the loader
        if position + 4 * spec.n_params > 20_000_000:
            layer = i
            break
        position += 4 * spec.n_params
    assert f"file ends inside layer {layer} ([convolutional] at " in message
    assert f"at byte offset {position}, only {20_000_000 - position} remain" in message
    assert "needs 35434956 bytes in all, the file has 20000000" in message


def test_padded_file(tmp_path, tiny):
    message = refused(tmp_path, tiny[1] + b"\0" * 1000)
    assert "1000 bytes left over after the last layer" in message
    assert "needs exactly 35434956 bytes, the file has 35435956" in message


@pytest.mark.parametrize("size", [0, 10, 12, 19])
def test_empty_and_tiny_files(tmp_path, tiny, size):
    message = refused(tmp_path, tiny[1][:size])
    assert f"file is {size} bytes" in message and "header" in message


def test_header_only(tmp_path, tiny):
    assert "file ends inside layer 0" in refused(tmp_path, tiny[1][:20])


def test_wrong_cfg(tmp_path, tiny):
    message = refused(tmp_path, tiny[1], cfg="yolov2-tiny.cfg")
    assert "needs 44948600 bytes" in message and "the file has 35434956" in message


def test_partial_file_without_cutoff_suggests_it(tmp_path, weights_for):
    conv74 = weights_for("darknet53.cfg", seed=2, cutoff=74)
    message = refused(tmp_path, conv74.read_bytes(), cfg="darknet53.cfg")
    assert "ends exactly after layer 73" in message and "cutoff=74" in message


def test_bad_cutoff(tmp_path, tiny):
    assert "cutoff=99 is outside 0..24" in refused(tmp_path, tiny[1], cutoff=99)


def test_dontload_and_dontsave_skip_the_layer(tmp_path):
    cfg = tmp_path / "c.cfg"
    cfg.write_text("[net]\nwidth=4\nheight=4\nchannels=1\n[convolutional]\nfilters=2\ndontsave=1\n"
                   "[convolutional]\nfilters=3\n")
    net = darknet_py.load(cfg)
    net.save_weights(tmp_path / "w.weights")
    assert (tmp_path / "w.weights").stat().st_size == 20 + 4 * (3 + 3 * 2)


def test_seen_that_does_not_fit_a_4_byte_header():
    with pytest.raises(WeightsError, match="does not fit the 4-byte field"):
        Header(0, 1, 0, seen=2**31).pack()


def test_saved_files_get_the_usual_permissions(tmp_path):
    net = darknet_py.Darknet(CFG / "yolov3-tiny.cfg")
    old = os.umask(0o022)
    try:
        net.save_weights(tmp_path / "a.weights")
    finally:
        os.umask(old)
    assert (tmp_path / "a.weights").stat().st_mode & 0o777 == 0o644
