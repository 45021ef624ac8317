"""Shared test fixtures: where the reference material lives, and cached random weights files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DARKNET_SHARED", ROOT.parent / "shared" / "darknet"))
ORACLE = SHARED / "oracle"
CFG = ROOT / "cfg"
FUZZ_COUNTS: dict = {}  # target -> Counter of outcomes, filled by test_fuzz.py
# Every layer Winograd can take runs as Winograd in the tests (the oracles check the kernel, and
# no test waits on the tuner timing its paths); test_tuner.py checks the tuned choice itself.
os.environ.setdefault("DARKNET_PY_WINOGRAD", "force")


def pytest_terminal_summary(terminalreporter):
    """The fuzz suite's counts, printed even with -q."""
    for target, counts in sorted(FUZZ_COUNTS.items()):
        terminalreporter.write_line(f"fuzz {target}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def pytest_collection_modifyitems(config, items):
    if not SHARED.is_dir():
        skip = pytest.mark.skip(reason=f"reference material not found at {SHARED}")
        for item in items:
            if "shared" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def weights_for(tmp_path_factory):
    """``weights_for("yolov3.cfg", seed=1)`` -> path of a random Darknet-layout file (cached)."""
    from darknet_py.synthetic import write_random_weights
    made = {}
    folder = tmp_path_factory.mktemp("weights")

    def make(cfg_name, seed=1, cutoff=None):
        key = (cfg_name, seed, cutoff)
        if key not in made:
            path = folder / f"{Path(cfg_name).stem}-{seed}-{cutoff}.weights"
            write_random_weights(CFG / cfg_name, path, seed=seed, cutoff=cutoff)
            made[key] = path
        return made[key]

    return make
