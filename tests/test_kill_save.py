"""kill -9 while a checkpoint is being written leaves a complete checkpoint at the final path.

A child process resumes from ``_last.weights`` (when there is one) as ``detector train`` does,
reports the iteration, ``seen`` and momentum it resumed with, then writes checkpoints in a loop,
each with every parameter, statistic and momentum value set to its step number k. It is
killed with SIGKILL 20 times: half after a seeded random delay, half a moment after a
temporary file appears (inside a write, which a fast disk makes rare by chance). After each
kill the file is exactly the size the cfg needs, holds one step's values throughout, and the
next child resumes at that step's iteration and ``seen``, with the momentum of that step when
the sidecar belongs to it.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from darknet_py.model import Darknet
from darknet_py.shapes import generate_shapes
from darknet_py.train.checkpoint import load_state, state_path
from darknet_py.weights import expected_size

from conftest import CFG, ROOT

KILLS = 20
CFG_FILE = CFG / "yolov3-tiny.cfg"  # a 35 MB file: a kill lands mid-write often
OVERRIDES = ["batch=2", "subdivisions=1", "max_batches=1000000", "width=64", "height=64"]
BATCH = 2

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from darknet_py.train.trainer import Trainer, TrainOptions

    data, cfg, backup = sys.argv[1:4]
    last = Path(backup) / (Path(cfg).stem + "_last.weights")
    t = Trainer(data, cfg, last if last.is_file() else None, overrides=sys.argv[4:],
                options=TrainOptions(backup=backup, workers=0, progress=False))
    momentum = [s["momentum_buffer"] for s in t.optimizer.state.values()]
    print("resumed", t.iteration, t.net.seen, float(momentum[0].flatten()[0]) if momentum else "none",
          flush=True)
    if not momentum:  # give every parameter a momentum buffer
        for p in t.net.parameters():
            p.grad = torch.zeros_like(p)
        t.optimizer.step()
    t.backup.mkdir(parents=True, exist_ok=True)
    k = t.iteration
    while True:
        k += 1
        with torch.no_grad():
            for tensor in [*t.net.parameters(), *t.net.buffers()]:
                tensor.fill_(k)
            for state in t.optimizer.state.values():
                state["momentum_buffer"].fill_(k)
        t.net.seen = k * t.batch
        t.checkpoint("last")
        print("saved", k, flush=True)
""")


def start_child(data, backup):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(CFG_FILE), str(backup), *OVERRIDES],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def wait_for_temporary(backup, child, timeout=60.0):
    """Return as soon as a checkpoint's temporary file exists (a write is under way)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and child.poll() is None:
        if any(p.name.endswith(".tmp") for p in backup.iterdir()):
            return
    raise AssertionError("the child never started writing a checkpoint")


def values_of(path):
    """The single step number every value of the file holds, and the header's seen."""
    net = Darknet(CFG_FILE, init=False)
    net.load_weights(path)
    values = torch.cat([t.flatten() for t in net.state_dict().values()]).unique()
    assert len(values) == 1, f"{path} mixes the values of several steps: {values[:5]}"
    return int(values[0]), net.seen


@pytest.mark.slow
def test_kill_during_checkpoint_write_leaves_a_complete_checkpoint(tmp_path):
    data = generate_shapes(tmp_path / "shapes", 4, seed=1, size=64)
    backup = tmp_path / "backup"
    last = backup / "yolov3-tiny_last.weights"
    size = expected_size(Darknet(CFG_FILE, init=False))
    rng = random.Random(20)
    expected_resume = (0, 0, "none")
    mid_write = 0
    for kill in range(KILLS):
        child = start_child(data, backup)
        resumed = child.stdout.readline().split()
        assert resumed[:1] == ["resumed"], child.stderr.read()
        iteration, seen, momentum = int(resumed[1]), int(resumed[2]), resumed[3]
        assert (iteration, seen) == expected_resume[:2], f"kill {kill}: resumed at {resumed}"
        assert momentum == expected_resume[2], f"kill {kill}: momentum {momentum}, want {expected_resume[2]}"
        saves = 0
        while saves < 1 + kill % 3:  # let it write one to three checkpoints first
            line = child.stdout.readline()
            assert line.startswith("saved"), line + child.stderr.read()
            saves += 1
        child.stdout.close()  # from here the child writes without waiting for us to read
        if kill % 2:  # anywhere in the save loop
            time.sleep(rng.uniform(0.0, 0.4))
        else:  # inside a write: a fast disk makes these rare by chance alone
            wait_for_temporary(backup, child)
            time.sleep(rng.uniform(0.0, 0.002))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        temporaries = [p for p in backup.iterdir() if p.name.endswith(".tmp")]
        mid_write += bool(temporaries)
        for p in temporaries:  # what a killed writer leaves behind; never the final path
            p.unlink()
        assert last.stat().st_size == size
        k, file_seen = values_of(last)
        assert file_seen == k * BATCH
        state = load_state(last, file_seen)
        if state is None:  # the sidecar is a step ahead: written first, the weights were not renamed yet
            assert torch.load(state_path(last), weights_only=True)["seen"] == (k + 1) * BATCH
            expected_resume = (k, k * BATCH, "none")
        else:
            momentum = [s["momentum_buffer"] for s in state["optimizer"]["state"].values()]
            assert all(bool((m == k).all()) for m in momentum)
            expected_resume = (k, k * BATCH, str(float(k)))
    assert mid_write >= KILLS // 4, f"only {mid_write} of {KILLS} kills landed during a write"
