"""Hostile files: mutated official cfgs (pjreddie's, AlexeyAB's, and cfg/yolov3-asff.cfg) and
weights files either load or are refused with the project's own error naming the place (file
and line, or byte offset and layer), never another exception, a hang, or an allocation beyond
the memory budget.

Mutations are drawn by hypothesis, derandomized so that CI tries the same inputs every run;
``DARKNET_PY_FUZZ_EXAMPLES`` scales the example counts. The counts per target (tried, loaded,
refused) are printed in pytest's terminal summary (see conftest.py).
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from darknet_py.cfg import parse_cfg
from darknet_py.errors import CfgError, DarknetError, WeightsError
from darknet_py.model import Darknet, plan_network
from darknet_py.registry import BUILDERS
from darknet_py.synthetic import write_random_weights
from darknet_py.weights import Header, _boundaries, expected_size, layers_in_file

from conftest import CFG, FUZZ_COUNTS, ROOT

SCALE = float(os.environ.get("DARKNET_PY_FUZZ_EXAMPLES", "1"))
BUDGET = 256 << 20  # bytes a fuzzed cfg may ask for; anything more must be refused before allocating
SMALL = ["yolov3-tiny.cfg", "yolov2-tiny.cfg", "yolov2-tiny-voc.cfg"]  # built and run
PJREDDIE = ["darknet19.cfg", "darknet53.cfg", "densenet201.cfg", "resnet50.cfg", "yolov1.cfg",
            "yolov2-tiny-voc.cfg", "yolov2-tiny.cfg", "yolov2-voc.cfg", "yolov2.cfg", "yolov3-openimages.cfg",
            "yolov3-spp.cfg", "yolov3-tiny.cfg", "yolov3-voc.cfg", "yolov3.cfg"]  # planned only
ALEXEYAB = sorted(f"alexeyab/{p.name}" for p in (CFG / "alexeyab").glob("*.cfg")) + ["yolov3-asff.cfg"]
PLAN_BUDGET = 4 << 30  # the default: planning allocates nothing, so the official sizes plan
FUZZ = settings(max_examples=1, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True)


def examples(n: int) -> settings:
    return settings(FUZZ, max_examples=max(1, int(n * SCALE)))


def count(target: str, outcome: str) -> None:
    FUZZ_COUNTS.setdefault(target, Counter())[outcome] += 1


# ---------------------------------------------------------------------------------------------
# cfg mutations
# ---------------------------------------------------------------------------------------------
def small_text(name: str) -> str:
    """The official cfg at 64 x 64 (so that a forward pass per example stays cheap)."""
    text = (CFG / name).read_text()
    text = re.sub(r"(?m)^width=\d+", "width=64", text)
    return re.sub(r"(?m)^height=\d+", "height=64", text)


def all_keys(names) -> list[str]:
    keys = set()
    for path in map(CFG.joinpath, names):
        keys.update(re.findall(r"(?m)^\s*([A-Za-z_]+)\s*=", path.read_text()))
    return sorted(keys)


KEYS = all_keys(PJREDDIE)
ALEXEYAB_KEYS = all_keys(PJREDDIE + ALEXEYAB)
HOSTILE_VALUES = st.one_of(
    st.sampled_from(["", "abc", "1.5", "-1", "0", "-2147483648", "2147483647", "2147483648",
                     "99999999999999999999", "9" * 5000, "1e999", "-1e999", "nan", "inf", "1,2,3",
                     "1,,2", ",", "0x10", "1_000", "\u0663", "\u00b2", "١.٥", "leaky", "linear",
                     "-1,-4", "1000000", "65536", "-65536", "1e-45", "#", "3#comment", "3;x"]),
    st.integers(-2**64, 2**64).map(str),
    st.lists(st.integers(-2**33, 2**33), min_size=1, max_size=20).map(lambda v: ",".join(map(str, v))),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


# option values AlexeyAB's cfgs use as words, for its string options
ALEXEYAB_VALUES = st.one_of(HOSTILE_VALUES, st.sampled_from([
    "mish", "swish", "logistic", "hard_mish", "normalize_channels_softmax", "per_feature", "per_channel",
    "softmax", "relu", "avg_relu", "ciou", "giou", "diou", "mse", "greedynms", "diounms", "cornersnms",
    "left_top", "sgdr", "-1,-2,-3", "0,1,2,3,4,5,6,7,8,9"]))


@st.composite
def mutation(draw, lines: list[str], keys=KEYS, values=HOSTILE_VALUES):
    kind = draw(st.sampled_from(["value"] * 4 + ["key"] * 2 + ["delete", "duplicate", "section", "junk",
                                                             "swap", "truncate"]))
    i = draw(st.integers(0, max(0, len(lines) - 1)) if draw(st.integers(0, 9)) == 0
             else st.integers(min(1, len(lines)), max(0, len(lines) - 1)))  # mostly after [net]
    if kind == "delete" and lines:
        del lines[i]
    elif kind == "duplicate" and lines:
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
    elif kind == "value":
        options = [j for j, line in enumerate(lines) if "=" in line]
        if options:
            j = draw(st.sampled_from(options))
            lines[j] = lines[j].split("=", 1)[0] + "=" + draw(values)
    elif kind == "key":
        lines.insert(i, f"{draw(st.sampled_from(keys))}={draw(values)}")
    elif kind == "section":
        names = sorted(BUILDERS) + ["net", "network", "bogus", "", "yolo]", "[route"]
        lines.insert(i, f"[{draw(st.sampled_from(names))}]")
    elif kind == "junk":
        junk = draw(st.binary(min_size=1, max_size=40)).decode("latin-1")
        lines.insert(i, junk if draw(st.booleans()) else lines[i][:3] + junk if lines else junk)
    elif kind == "swap" and len(lines) > 1:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "truncate":
        del lines[max(i, len(lines) // 2):]


@st.composite
def mutated(draw, text: str, keys=KEYS, values=HOSTILE_VALUES):
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        draw(mutation(lines, keys, values))
    body = "\n".join(lines)
    raw = body.encode("latin-1", "replace") if draw(st.booleans()) else body.encode("utf-8", "surrogatepass")
    return raw


_WORK = Path(tempfile.mkdtemp(prefix="darknet-py-fuzz-"))


def write_cfg(name: str, raw: bytes) -> Path:
    path = _WORK / name
    path.write_bytes(raw)
    return path


def check_refusal(e: DarknetError, path: Path) -> None:
    """The refusal names the file and, unless the whole file is at fault, the line."""
    assert isinstance(e, CfgError), repr(e)
    assert e.file == str(path) and str(path) in str(e), str(e)
    whole_file = ("no sections", "is not text", "has no layers", "cannot read")
    assert e.line is not None or any(w in str(e) for w in whole_file), str(e)


def plan_only(path: Path):
    return plan_network(parse_cfg(path), max_bytes=PLAN_BUDGET)


def build_and_run(path: Path):
    """Build within the budget; what is allocated must be what the budget counted, and the
    forward pass must produce the planned shapes."""
    net = Darknet(path, max_bytes=BUDGET)
    held = sum(t.numel() for t in net.parameters()) + sum(t.numel() for t in net.buffers())
    assert 4 * held <= BUDGET
    assert held == sum(s.n_params for s in net.specs), "n_params disagrees with the built layers"
    net.eval()
    x = torch.rand(1, *net.net_input_shape.__dict__.values())
    with torch.no_grad():
        outs = net.run(x, range(len(net.layers)))
    for i, spec in enumerate(net.specs):  # heads reshape to (anchors, values, h, w): compare sizes
        assert outs[i][0].numel() == spec.out.numel, net.describe(i)
    return net


def fuzz_once(target: str, path: Path, action) -> None:
    try:
        action(path)
    except DarknetError as e:
        check_refusal(e, path)
        count(target, "refused")
    else:
        count(target, "loaded")
    count(target, "tried")


@pytest.mark.parametrize("name", PJREDDIE)
def test_unmutated_cfgs_plan(name):
    """The fuzz starts from cfgs that load: a refusal is the mutation's doing."""
    plan_only(CFG / name)


@pytest.mark.parametrize("name", SMALL)
def test_fuzz_cfg_build(name):
    base = small_text(name)

    @examples(60)
    @given(mutated(base))
    def run(raw):
        fuzz_once(f"cfg build {name}", write_cfg(name, raw), build_and_run)

    run()


@pytest.mark.parametrize("name", PJREDDIE)
def test_fuzz_cfg_plan(name):
    base = (CFG / name).read_text()

    @examples(25)
    @given(mutated(base))
    def run(raw):
        fuzz_once(f"cfg plan {name}", write_cfg(name, raw), plan_only)

    run()


@pytest.mark.parametrize("name", ALEXEYAB)
def test_unmutated_alexeyab_cfgs_plan(name):
    plan_only(CFG / name)


@pytest.mark.parametrize("name", ALEXEYAB)
def test_fuzz_alexeyab_cfg_plan(name):
    """AlexeyAB's cfgs and the [asff] one, with AlexeyAB's option names and words among the
    mutations; planned only (they are large)."""
    base = (CFG / name).read_text()

    @examples(12)
    @given(mutated(base, ALEXEYAB_KEYS, ALEXEYAB_VALUES))
    def run(raw):
        fuzz_once(f"cfg plan {name}", write_cfg(Path(name).name, raw), plan_only)

    run()


NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"
HEAD_INPUT = "[convolutional]\nfilters=18\nsize=1\n"
HOSTILE = {  # name: (cfg text, the option the refusal names)
    "yolo num": (NET + HEAD_INPUT + "[yolo]\nclasses=1\nnum=2147483647\n", "num"),
    "yolo num with mask": (NET + HEAD_INPUT + "[yolo]\nclasses=1\nmask=0,1,2\nnum=2147483647\n", "num"),
    "yolo anchors": (NET + HEAD_INPUT + "[yolo]\nclasses=1\nnum=3\nanchors=" + "1," * 200000 + "\n", "anchors"),
    "region num": (NET + HEAD_INPUT + "[region]\nclasses=1\nnum=2147483647\n", "classes"),
    "detection side": (NET + HEAD_INPUT + "[detection]\nside=2147483647\n", "side"),
    "width": ("[net]\nwidth=2147483647\nheight=2147483647\nchannels=3\n[avgpool]\n", None),
    "channels": ("[net]\nwidth=64\nheight=64\nchannels=2147483647\n[avgpool]\n", None),
    "filters": (NET + "[convolutional]\nfilters=2147483647\nsize=3\n", None),
    "size": (NET + "[convolutional]\nfilters=1\nsize=2147483647\npadding=2147483647\n", None),
    # planned fine before, then PyTorch's convolution died of SIGFPE on the padding it implies
    "dilation": (NET + "[convolutional]\nfilters=1\nsize=3\npad=1\ndilation=2147483647\n", "dilation"),
    "dilation, size 5": (NET + "[convolutional]\nfilters=1\nsize=5\npad=1\ndilation=536870912\n", "dilation"),
    "connected": (NET + "[connected]\noutput=2147483647\n", None),
    "local": (NET + "[local]\nfilters=65536\nsize=1\n", None),
    "route list": (NET + HEAD_INPUT + "[route]\nlayers=" + "-1," * 20000 + "\n", None),
    "upsample": (NET + "[upsample]\nstride=2147483647\n", None),
    "maxpool padding": (NET + "[maxpool]\nsize=2147483647\nstride=1\npadding=2147483647\n", None),
    "maxpool compute": (NET + "[maxpool]\nsize=16384\nstride=1\npadding=16383\n", None),
    "5000 digits": (NET + "[convolutional]\nfilters=" + "9" * 5000 + "\n", "filters"),
    "above int32": (NET + "[convolutional]\nfilters=2147483648\n", "filters"),
    "unicode digits": (NET + "[convolutional]\nfilters=\u0663\n", "filters"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_numbers_are_refused_before_allocating(name):
    """Each is refused at its section's line; planning allocates next to nothing on the way."""
    import tracemalloc
    text, option = HOSTILE[name]
    path = write_cfg("hostile.cfg", text.encode())
    tracemalloc.start()
    try:
        with pytest.raises(CfgError) as e:
            plan_network(parse_cfg(path), max_bytes=BUDGET)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.file == str(path) and e.value.line is not None, str(e.value)
    if option:
        assert e.value.option == option, str(e.value)
    assert peak < 16 * len(text) + (8 << 20), peak


def test_training_budget_counts_the_batch(tmp_path):
    """batch / subdivisions images go through the network at once in training."""
    from darknet_py.model import check_budget
    net = Darknet(ROOT / "tests" / "cfg" / "tiny-yolo.cfg", init=False)
    check_budget(net, 8, 3)
    with pytest.raises(CfgError, match="2147483647 images per forward pass"):
        check_budget(net, 2147483647, 3)
    net.max_bytes = 64 << 20  # 8 images at 64 x 64 need 5 MiB, at 608 x 608 (random=1) 462 MiB
    check_budget(net, 8, 3)
    with pytest.raises(CfgError, match=r"at \(608, 608\)"):
        check_budget(net, 8, 3, (608, 608))


# ---------------------------------------------------------------------------------------------
# weights mutations
# ---------------------------------------------------------------------------------------------
WEIGHTS_CFGS = [ROOT / "tests" / "cfg" / "tiny-yolo.cfg", CFG / "yolov3-tiny.cfg"]


@pytest.fixture(scope="module", params=WEIGHTS_CFGS, ids=lambda p: p.name)
def weights_case(request):
    """(cfg, network, the bytes of a valid random weights file for it)."""
    path = _WORK / f"{request.param.stem}.weights"
    net = write_random_weights(request.param, path, seed=3)
    return request.param, net, path.read_bytes()


def load_or_refuse(target: str, net, raw: bytes, cutoff="auto") -> None:
    """Load ``raw`` (with the cutoff its size implies, as training does, or ``cutoff``); a load
    must save back the same bytes, a refusal must be a WeightsError naming the file and place."""
    path = _WORK / "fuzzed.weights"
    path.write_bytes(raw)
    count(target, "tried")
    try:
        if cutoff == "auto":
            cutoff = layers_in_file(net, path)
        net.load_weights(path, cutoff)
    except DarknetError as e:
        assert isinstance(e, WeightsError), repr(e)
        message = str(e)
        assert str(path) in message, message
        assert re.search(r"byte|layer|header", message), message
        count(target, "refused")
        return
    again = _WORK / "again.weights"
    net.save_weights(again, cutoff)
    assert again.read_bytes() == raw
    count(target, "loaded")


def test_weights_cut_at_every_layer_boundary(weights_case):
    """A file cut at a boundary loads as a partial file (its size names the layers); one byte
    either side of a boundary, or the whole cfg asked of a cut file, is refused naming the layer."""
    cfg, net, raw = weights_case
    target = f"weights cut {cfg.name}"
    header = Header().size
    boundaries = sorted(_boundaries(net, Header()))
    assert boundaries[-1] == len(raw) == expected_size(net)
    for end in [header] + boundaries:
        load_or_refuse(target, net, raw[:end])
        if end < len(raw):
            with pytest.raises(WeightsError, match=r"file ends inside layer \d+ .* byte offset \d+"):
                net.load_weights(_write(raw[:end]))
        for off in (-1, 1, -4, 4):
            if header <= end + off != len(raw) and end + off not in boundaries:
                load_or_refuse(target, net, (raw + b"\0" * off)[:end + off])
    assert FUZZ_COUNTS[target]["refused"] >= 4 * len(boundaries) - 4


def _write(raw: bytes) -> Path:
    path = _WORK / "fuzzed.weights"
    path.write_bytes(raw)
    return path


@st.composite
def mutated_weights(draw, raw: bytes):
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["header", "header", "truncate", "extend", "flip"]))
        if kind == "header":
            field = draw(st.integers(0, 4))
            value = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 10, 999, 1000, 1001, -1, 2**31 - 1, -2**31]),
                                   st.integers(-2**31, 2**31 - 1)))
            data[4 * field:4 * field + 4] = struct.pack("<i", value)
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
    return bytes(data)


def test_fuzz_weights(weights_case):
    cfg, net, raw = weights_case

    @examples(80)
    @given(mutated_weights(raw))
    def run(data):
        load_or_refuse(f"weights {cfg.name}", net, data)

    run()


def test_weights_that_are_not_files_are_refused(tmp_path, weights_case):
    _, net, _ = weights_case
    for path in (tmp_path / "missing.weights", tmp_path):
        with pytest.raises(WeightsError, match=re.escape(str(path))):
            net.load_weights(path)


# ---------------------------------------------------------------------------------------------
# no pickle from user files
# ---------------------------------------------------------------------------------------------
UNPICKLERS = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


def _unsafe_loads(source: str):
    """(line, what) for every way the code could unpickle: torch.load without
    weights_only=True, np.load with allow_pickle=True, an unpickling module, torch.jit.load."""
    import ast
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name and name.split(".")[0] in UNPICKLERS:
                    yield node.lineno, f"import {name}"
            if isinstance(node, ast.ImportFrom) and node.module == "torch" and "load" in names:
                yield node.lineno, "from torch import load (a bare load() escapes this check)"
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: k.value for k in node.keywords}
        safe = isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True
        if name.endswith("torch.load"):
            if not safe:
                yield node.lineno, f"{name}(...) without weights_only=True"
        elif name.endswith("jit.load") or name.endswith("torch.package.PackageImporter"):
            yield node.lineno, name
        elif name.split(".")[-1] in ("load", "loadtxt") and name.split(".")[0] in ("np", "numpy"):
            allow = keywords.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                yield node.lineno, f"{name}(..., allow_pickle=...)"


def test_no_pickle_from_user_files():
    """Every torch.load in the package passes weights_only=True; nothing else unpickles."""
    found = []
    for path in sorted((ROOT / "darknet_py").rglob("*.py")):
        found += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _unsafe_loads(path.read_text())]
    assert not found, "\n".join(found)
    loads = sum(p.read_text().count("torch.load(") for p in (ROOT / "darknet_py").rglob("*.py"))
    assert loads >= 2  # checkpoint.py and convert.py: the check sees them


def test_the_pickle_check_can_fail():
    bad = ("import pickle\nimport torch\nx = torch.load(p)\ny = torch.load(p, weights_only=False)\n"
           "z = torch.load(p, map_location='cpu', weights_only=True)\nimport numpy as np\n"
           "np.load(p, allow_pickle=True)\n")
    assert [line for line, _ in _unsafe_loads(bad)] == [1, 3, 4, 7]
