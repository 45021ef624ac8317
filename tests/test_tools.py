"""Tool verbs: partial (Darknet's cut) and convert (.weights <-> .pt)."""
from __future__ import annotations

import struct

import pytest
import torch

from darknet_py.cli import main
from darknet_py.errors import WeightsError
from darknet_py.model import Darknet
from darknet_py.weights import Header, expected_size

from conftest import CFG


def test_partial_equals_a_cut_with_darknets_header(weights_for, tmp_path):
    full = weights_for("yolov3-tiny.cfg", seed=4)
    out = tmp_path / "tiny.conv.15"
    assert main(["partial", str(CFG / "yolov3-tiny.cfg"), str(full), str(out), "15"]) == 0
    net = Darknet(CFG / "yolov3-tiny.cfg", init=False)
    net.load_weights(full)
    net.seen = 123456  # Darknet's partial loads with clear=1: seen is written as 0
    cut = tmp_path / "cut.weights"
    net.save_weights(cut, cutoff=15, header=Header())
    assert out.read_bytes() != b"" and out.read_bytes() == cut.read_bytes()
    assert struct.unpack("<iiiQ", out.read_bytes()[:20]) == (0, 2, 0, 0)
    assert out.stat().st_size == expected_size(net, cutoff=15)


def test_convert_round_trips_byte_exactly(weights_for, tmp_path):
    src = weights_for("yolov3-tiny.cfg", seed=5)
    data = bytearray(src.read_bytes())
    data[12:20] = struct.pack("<Q", 987654321)  # a nonzero seen must survive the trip
    src = tmp_path / "seen.weights"
    src.write_bytes(bytes(data))
    pt, back = tmp_path / "tiny.pt", tmp_path / "back.weights"
    cfg = str(CFG / "yolov3-tiny.cfg")
    assert main(["convert", cfg, str(src), str(pt)]) == 0
    assert main(["convert", cfg, str(pt), str(back)]) == 0
    assert back.read_bytes() == src.read_bytes()
    state = torch.load(pt, weights_only=True)
    assert state["darknet.header"].tolist() == [0, 2, 0, 987654321]


def test_convert_refuses_a_state_dict_of_another_cfg(weights_for, tmp_path):
    net = Darknet(CFG / "yolov3-tiny.cfg")
    state = net.state_dict()
    state["layers.0.weights"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="layers.0.weights: shape"):
        from darknet_py.convert import load_state_dict
        load_state_dict(Darknet(CFG / "yolov3-tiny.cfg", init=False), tmp_path / "bad.pt")
    assert main(["convert", str(CFG / "yolov3.cfg"), str(tmp_path / "bad.pt"), str(tmp_path / "x.weights")]) == 1
    assert not (tmp_path / "x.weights").exists()
