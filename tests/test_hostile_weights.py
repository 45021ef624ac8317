"""Numbers that cannot be weights, in .weights and .pt files: refused at load naming the layer,
the blob and (for .weights) the byte offset, before the network is touched; a .pt file's zip
CRCs and header ranges checked; negative or impossible ``seen`` refused; nothing written by
a refused ``convert``."""
from __future__ import annotations

import io
import logging
import os
import struct
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from darknet_py.cli import main
from darknet_py.convert import HEADER_KEY, load_state_dict, save_state_dict
from darknet_py.errors import WeightsError
from darknet_py.model import Darknet
from darknet_py.weights import ABSURD, Header, _layer_plan

from conftest import ROOT
from hostile import count, make_fifo, no_hang

CFG = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"
SCALE = float(os.environ.get("DARKNET_PY_FUZZ_EXAMPLES", "1"))
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
BAD = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "huge": 3e38, "absurd": ABSURD * 10}


@pytest.fixture(scope="module")
def good(tmp_path_factory, weights_for):
    path = weights_for("../tests/cfg/tiny-yolo.cfg", seed=5)
    return path, path.read_bytes()


def blob_offsets(net):
    """(layer, blob name, byte offset, float count) of every blob in file order."""
    plan, _ = _layer_plan(net, None, loading=True)
    offset, out = Header().size, []
    for i, blobs in plan:
        for blob in blobs:
            out.append((i, blob.name, offset, blob.tensor.numel()))
            offset += 4 * blob.tensor.numel()
    return out


def with_value(raw: bytes, offset: int, value: float) -> bytes:
    data = bytearray(raw)
    data[offset:offset + 4] = struct.pack("<f", value)
    return bytes(data)


def state_of(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def unchanged(net, before) -> bool:
    return all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("kind", sorted(BAD) + ["negative variance"])
def test_bad_values_in_a_weights_file_name_layer_blob_and_offset(good, tmp_path, kind):
    _, raw = good
    net = Darknet(CFG)
    blobs = blob_offsets(net)
    layer, name, offset, n = [b for b in blobs if b[1] == ("rolling_variance" if kind == "negative variance"
                                                          else "weights")][2]
    at = offset + 4 * (n // 2)
    path = tmp_path / "bad.weights"
    path.write_bytes(with_value(raw, at, -0.5 if kind == "negative variance" else BAD[kind]))
    before = state_of(net)
    with pytest.raises(WeightsError) as e:
        net.load_weights(path)
    message = str(e.value)
    assert str(path) in message and f"layer {layer} " in message and f"blob '{name}'" in message
    assert f"value {n // 2} of {n}" in message and f"byte offset {at}" in message
    assert unchanged(net, before), "a refused file changed the network"


def test_the_allow_flag_loads_bad_values_with_a_warning(good, tmp_path, monkeypatch, caplog):
    _, raw = good
    net = Darknet(CFG)
    layer, name, offset, n = blob_offsets(net)[0]
    path = tmp_path / "nan.weights"
    path.write_bytes(with_value(raw, offset, float("nan")))
    monkeypatch.setenv("DARKNET_PY_ALLOW_BAD_WEIGHTS", "1")
    with caplog.at_level(logging.WARNING):
        net.load_weights(path)
    assert f"layer {layer}" in caplog.text and "NaN" in caplog.text
    out = tmp_path / "again.weights"
    net.save_weights(out)
    assert out.read_bytes() == path.read_bytes()  # loaded as Darknet would, byte for byte


@pytest.mark.parametrize("header,seen_bytes", [((0, 1, 0), struct.pack("<i", -5)),
                                               ((0, 2, 0), struct.pack("<Q", 2**63 + 1))])
def test_a_negative_or_impossible_seen_is_refused(good, tmp_path, header, seen_bytes):
    _, raw = good
    net = Darknet(CFG)
    path = tmp_path / "seen.weights"  # version 0.1: a 4-byte signed seen; 0.2: 8 bytes
    path.write_bytes(struct.pack("<iii", *header) + seen_bytes + raw[20:])
    with pytest.raises(WeightsError, match=r"seen=-5|seen=9223372036854775809") as e:
        net.load_weights(path)
    assert "byte offset 12" in str(e.value) and str(path) in str(e.value)


def test_weights_that_are_not_regular_files_are_refused_at_once(tmp_path):
    net = Darknet(CFG)
    with no_hang(10):
        for path, what in ((make_fifo(tmp_path / "fifo.weights"), "FIFO"), ("/dev/zero", "character device"),
                           (tmp_path, "directory")):
            with pytest.raises(WeightsError, match=what):
                net.load_weights(path)


# --- .pt files ----------------------------------------------------------------------------------

@pytest.fixture
def pt(good, tmp_path):
    net = Darknet(CFG, init=False)
    net.load_weights(good[0])
    path = tmp_path / "good.pt"
    save_state_dict(net, path)
    return path


def rewrite_pt(path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize("kind", sorted(BAD) + ["negative variance"])
def test_bad_values_in_a_pt_file_are_refused(pt, kind, tmp_path):
    key = "layers.2.rolling_variance" if kind == "negative variance" else "layers.2.weights"

    def change(state):
        state[key].view(-1)[3] = -0.5 if kind == "negative variance" else BAD[kind]

    rewrite_pt(pt, change)
    net = Darknet(CFG)
    before = state_of(net)
    with pytest.raises(WeightsError) as e:
        load_state_dict(net, pt)
    assert "layer 2 " in str(e.value) and f"blob '{key.split('.')[-1]}'" in str(e.value)
    assert "value 3 " in str(e.value) and str(pt) in str(e.value)
    assert unchanged(net, before)
    out = tmp_path / "out.weights"
    assert main(["convert", str(CFG), str(pt), str(out)]) == 1
    assert not out.exists()


def test_a_pt_file_with_a_flipped_byte_fails_its_crc(pt, tmp_path, capsys):
    data = bytearray(pt.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(i for i in archive.infolist() if i.file_size > 1000)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0x10  # a bit in the middle of a tensor's bytes
    pt.write_bytes(bytes(data))
    out = tmp_path / "out.weights"
    assert main(["convert", str(CFG), str(pt), str(out)]) == 1
    err = capsys.readouterr().err
    assert "CRC" in err and str(pt) in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("header,field", [
    ([0, 2, 0, -1], "seen=-1"), ([2**31, 2, 0, 0], "major=2147483648"), ([0, -2**31 - 1, 0, 0], "minor"),
    ([0, 2, 2**40, 0], "revision"), ([0, 2, 0], "4 integers"), ([0.5, 2, 0, 0], "4 integers"),
])
def test_a_pt_header_out_of_range_is_refused(pt, tmp_path, header, field, capsys):
    dtype = torch.float32 if isinstance(header[0], float) else torch.int64
    rewrite_pt(pt, lambda s: s.__setitem__(HEADER_KEY, torch.tensor(header, dtype=dtype)))
    out = tmp_path / "out.weights"
    assert main(["convert", str(CFG), str(pt), str(out)]) == 1
    err = capsys.readouterr().err
    assert field in err and HEADER_KEY in err and "Traceback" not in err
    assert not out.exists()


def test_pt_files_that_are_not_state_dicts_are_refused(tmp_path):
    net = Darknet(CFG)
    cases = {"empty.pt": b"", "text.pt": b"hello", "zip-of-nothing.pt": _empty_zip()}
    buffer = io.BytesIO()
    torch.save({"a": 1}, buffer)
    cases["numbers.pt"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.save({1: torch.zeros(1)}, buffer)
    cases["int-keys.pt"] = buffer.getvalue()
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WeightsError) as e:
            load_state_dict(net, path)
        assert str(path) in str(e.value), name
    with no_hang(10), pytest.raises(WeightsError, match="FIFO"):
        load_state_dict(net, make_fifo(tmp_path / "fifo.pt"))


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w"):
        pass
    return buffer.getvalue()


def test_fuzz_values(good, tmp_path):
    """Any float at any position: loads (and saves back the same bytes) when every value is a
    plausible weight, else is refused naming the layer and the byte offset of that value."""
    _, raw = good
    net = Darknet(CFG)
    blobs = blob_offsets(net)
    floats = st.one_of(st.floats(width=32), st.sampled_from([3e38, -3e38, ABSURD * 2, -ABSURD * 2, -1e-30, 0.0]))

    @settings(FUZZ, max_examples=max(1, int(150 * SCALE)))
    @given(st.integers(0, len(blobs) - 1), st.integers(0, 10**6), floats)
    def run(which, position, value):
        layer, name, offset, n = blobs[which]
        at = offset + 4 * (position % n)
        path = tmp_path / "fuzzed.weights"
        path.write_bytes(with_value(raw, at, value))
        count("weights values", "tried")
        bad = not np.isfinite(value) or abs(value) > ABSURD or (name == "rolling_variance" and value < 0)
        try:
            net.load_weights(path)
        except WeightsError as e:
            assert bad, str(e)
            assert f"layer {layer} " in str(e) and f"byte offset {at}" in str(e), str(e)
            count("weights values", "refused")
            return
        assert not bad, f"{value} in {name} loaded"
        count("weights values", "loaded")

    run()
