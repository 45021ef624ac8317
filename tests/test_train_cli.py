"""`darknet-py detector train` as users run it, alone and under torchrun (DDP, gloo)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from darknet_py.shapes import generate_shapes
from darknet_py.train.trainer import Trainer, TrainOptions

from conftest import ROOT

TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), 16, seed=9, size=96)


def cli(*args, torchrun=0, threads="1"):
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    if torchrun:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        head = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={torchrun}",
                "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "darknet_py.cli"]
    else:
        head = [sys.executable, "-m", "darknet_py.cli"]
    return subprocess.run(head + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=600)


def floats(path):
    return np.fromfile(path, dtype="<f4", offset=20)


def test_detector_train_cli_with_overrides(shapes, tmp_path):
    r = cli("detector", "train", shapes, TINY, "--set", "max_batches=3", "--set", "width=96",
            "--set", "height=96", "--backup", tmp_path, "--workers", "0", "--no-progress", "--last-every", "2")
    assert r.returncode == 0, r.stderr
    assert "iteration 3, seen 24" in r.stdout
    for name in ("tiny-yolo_final.weights", "tiny-yolo_last.weights", "tiny-yolo_train.csv", "tiny-yolo_chart.png"):
        assert (tmp_path / name).is_file(), name
    r = cli("detector", "train", shapes, TINY, "--set", "max_batches=abc", "--backup", tmp_path)
    assert r.returncode == 1 and "max_batches" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(shapes, tmp_path):
    """torchrun with 2 processes (gloo, synchronized BN) on the cfg's batch of 8 gives the
    same weights after one step as one process on all 8 images."""
    common = ["detector", "train", shapes, TINY, "--set", "max_batches=1", "--set", "burn_in=0",
              "--workers", "0", "--no-progress", "--sync-bn"]
    one = cli(*common, "--backup", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = cli(*common, "--backup", tmp_path / "two", torchrun=2)
    assert two.returncode == 0, two.stderr + two.stdout
    a = floats(tmp_path / "one" / "tiny-yolo_final.weights")
    b = floats(tmp_path / "two" / "tiny-yolo_final.weights")
    init = Trainer(shapes, TINY, overrides=["max_batches=1"], options=TrainOptions(workers=0)).net
    init.save_weights(tmp_path / "init.weights")
    start = floats(tmp_path / "init.weights")
    assert a.shape == b.shape == start.shape
    assert np.abs(a - start).max() > 1e-3  # the step did move the weights
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    # without synchronized BN each process normalises its 4 images alone: a different step
    unsynced = cli(*common[:-1], "--backup", tmp_path / "unsynced", torchrun=2)
    assert unsynced.returncode == 0, unsynced.stderr
    c = floats(tmp_path / "unsynced" / "tiny-yolo_final.weights")
    assert np.abs(c - a).max() > 1e-4
