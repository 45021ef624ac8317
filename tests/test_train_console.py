"""Training a person can watch: Darknet's lines equal the CSV, the resume banner and average loss,
a clean Ctrl-C whose resume repeats the uninterrupted run, TensorBoard events, one voice under
torchrun."""
from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from darknet_py.shapes import generate_shapes
from darknet_py.train.console import AverageLoss
from darknet_py.train.interrupt import Interrupted, TrainingInterrupted
from darknet_py.train.trainer import Trainer, TrainOptions, train

from conftest import ROOT

TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"
LINE = re.compile(r"^ (\d+): (-?[\d.]+|nan), (-?[\d.]+|nan) avg loss, ([\d.]+) rate, ([\d.]+) seconds, (\d+) images, "
                  r"(-?[\d.]+) hours left$")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), 16, seed=9, size=96, n_valid=4)


def cli(*args, env_extra=None, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "darknet_py.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, **kw)


def csv_rows(folder):
    with open(folder / "tiny-yolo_train.csv", newline="") as f:
        return list(csv.DictReader(f))


def lines(stdout):
    return [LINE.match(line).groups() for line in stdout.splitlines() if LINE.match(line)]


def test_lines_equal_the_csv_and_a_resume_continues_the_average(shapes, tmp_path):
    options = ["--workers", "0", "--backup", tmp_path, "--last-every", "1", "--valid-every", "0"]
    r = cli("detector", "train", shapes, TINY, *options, "--set", "max_batches=4", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "tiny-yolo" and "starting from scratch" in out and f"backup folder: {tmp_path}" in out
    assert any(line.startswith("train: 16 images from ") for line in out)
    printed = lines(r.stdout)
    rows = csv_rows(tmp_path)
    assert len(printed) == len(rows) == 4
    for (it, loss, avg, rate, seconds, images, hours), row in zip(printed, rows):
        assert (it, loss, avg, rate, seconds, images) == (row["iteration"], row["loss"], row["avg_loss"], row["rate"],
                                                          row["seconds"], row["seen"])
    assert printed[0][6] == "-1.000000" and float(printed[1][6]) >= 0  # AlexeyAB's estimate, from the 2nd line
    assert printed[0][1] == printed[0][2]  # the average starts at the first loss
    # resume, not on a terminal but asking for no bar anyway: the banner says where, the average goes on
    last = tmp_path / "tiny-yolo_last.weights"
    r = cli("detector", "train", shapes, TINY, last, *options, "--set", "max_batches=6")
    assert r.returncode == 0, r.stderr
    assert f"resuming at iteration 4 from {last}" in r.stdout.splitlines()
    resumed = lines(r.stdout)
    assert [p[0] for p in resumed] == ["5", "6"]
    avg = AverageLoss(float(rows[-1]["avg_loss"]))
    assert float(resumed[0][2]) == pytest.approx(avg.update(float(resumed[0][1])), abs=2e-6)
    assert resumed[0][1] != resumed[0][2]  # not restarted at the new loss
    assert [r_["iteration"] for r_ in csv_rows(tmp_path)] == [str(i) for i in range(1, 7)]


def state_bytes(trainer):
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


class StopInForward:
    """A forward hook that raises Interrupted (as the signal handler does) in the middle of the
    network's forward pass of a chosen update's second mini-batch."""

    def __init__(self, trainer, iteration, minibatch=1):
        self.trainer, self.iteration, self.minibatch = trainer, iteration, minibatch
        self.calls = 0
        trainer.net.layers[3].register_forward_hook(self)

    def __call__(self, module, inputs, output):
        if self.trainer.iteration + 1 == self.iteration:
            self.calls += 1
            if self.calls == self.minibatch + 1:
                raise Interrupted(signal.SIGINT)


def opts(folder, **kw):
    return TrainOptions(**{"backup": str(folder), "workers": 0, "progress": False, "last_every": 100,
                           "valid_every": 0, **kw})


def test_an_interrupt_mid_update_keeps_nothing_of_it_and_the_resume_repeats_the_run(shapes, tmp_path):
    overrides = ["max_batches=6", "subdivisions=2"]
    full = train(shapes, TINY, overrides=overrides, options=opts(tmp_path / "full"))
    after3 = {}

    def remember(trainer):
        if trainer.iteration == 3:
            after3.update(state_bytes(trainer))

    cut = Trainer(shapes, TINY, overrides=overrides, options=opts(tmp_path / "cut", callback=remember))
    StopInForward(cut, iteration=4)
    with pytest.raises(TrainingInterrupted) as caught:
        cut.run()
    e = caught.value
    last = tmp_path / "cut" / "tiny-yolo_last.weights"
    assert (e.iteration, e.saved, e.last) == (3, True, last)
    resumed = Trainer(shapes, TINY, last, overrides=overrides, options=opts(tmp_path / "cut"))
    assert (resumed.iteration, resumed.net.seen) == (3, 24)
    loaded = state_bytes(resumed)
    for key, value in after3.items():  # batch-norm statistics included: the cut update left no trace
        assert torch.equal(loaded[key], value), key
    result = resumed.run()
    assert result.final.read_bytes() == full.final.read_bytes()


def test_a_second_signal_during_the_save_keeps_the_previous_last(shapes, tmp_path, monkeypatch):
    folder = tmp_path / "b"
    overrides = ["max_batches=6"]
    t = Trainer(shapes, TINY, overrides=overrides, options=opts(folder, last_every=2))
    StopInForward(t, iteration=4, minibatch=0)
    last = folder / "tiny-yolo_last.weights"
    from darknet_py.train import checkpoint

    def save_then_signal(net, path, optimizer=None, extra=None):
        real(net, path, optimizer, extra)
        raise Interrupted(signal.SIGINT)  # the second Ctrl-C, after the staged files were written

    real = checkpoint.save_checkpoint
    before = {}

    def remember(trainer):
        if trainer.iteration == 2:
            before.update(weights=last.read_bytes(), state=last.with_suffix(".state").read_bytes())
            monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_signal)

    t.options.callback = remember
    with pytest.raises(TrainingInterrupted) as caught:
        t.run()
    assert caught.value.saved is False and caught.value.iteration == 3
    assert last.read_bytes() == before["weights"]
    assert last.with_suffix(".state").read_bytes() == before["state"]
    assert sorted(p.name for p in folder.glob(".*")) == []  # no staged leftovers


@pytest.mark.slow
def test_sigint_exits_130_and_the_printed_command_resumes_to_the_same_bytes(shapes, tmp_path):
    sets = ["--set", "max_batches=20", "--set", "width=128", "--set", "height=128", "--set", "learning_rate=0.001"]
    common = ["detector", "train", shapes, TINY, "--workers", "0", "--valid-every", "0", "--seed", "3", *sets]
    full = cli(*common, "--backup", tmp_path / "full", "--no-progress")
    assert full.returncode == 0, full.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "darknet_py.cli", *map(str, common), "--backup",
                             str(tmp_path / "cut"), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(" 5: "):
            time.sleep(0.05)  # somewhere inside iteration 6
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = tmp_path / "cut" / "tiny-yolo_last.weights"
    assert f"saved {last}" in err
    command = next(line for line in err.splitlines() if "to resume:" in line).split("to resume: ", 1)[1]
    words = shlex.split(command)
    assert words[:3] == ["darknet-py", "detector", "train"] and str(last) in words and "--seed" in words
    resumed = cli(*words[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at iteration" in resumed.stdout
    final = "tiny-yolo_final.weights"
    assert (tmp_path / "cut" / final).read_bytes() == (tmp_path / "full" / final).read_bytes()


def test_tensorboard_events_of_a_run(shapes, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    board = tmp_path / "tb"
    train(shapes, TINY, overrides=["max_batches=2"], options=opts(tmp_path / "b", valid_every=2,
                                                                   tensorboard=str(board)))
    events = EventAccumulator(str(board), size_guidance={"scalars": 0, "images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    a, b = Trainer.from_cfg(TINY).net.heads
    assert {"loss/darknet", "loss/avg", "learning_rate", "mAP@0.5", f"loss/head{a}", f"loss/head{b}",
            f"head{a}/avg_iou", f"head{b}/no_obj", f"head{a}/.5R", f"head{b}/.75R", f"head{a}/class", f"head{a}/obj",
            f"head{a}/count"} <= scalars
    assert [e.step for e in events.Scalars("loss/darknet")] == [1, 2]
    rows = csv_rows(tmp_path / "b")
    assert [round(e.value, 5) for e in events.Scalars("loss/darknet")] == [round(float(r["loss"]), 5) for r in rows]
    heads = events.Scalars(f"loss/head{a}")[0].value, events.Scalars(f"loss/head{b}")[0].value
    assert np.mean(heads) == pytest.approx(float(rows[0]["loss"]), rel=1e-5)  # Darknet's: the heads' mean
    assert [float(v) for v in rows[0]["head_losses"].split()] == pytest.approx(heads, rel=1e-5)
    assert {"augmented_batch", "precision_recall"} <= set(events.Tags()["images"])


@pytest.mark.slow
def test_torchrun_speaks_once_without_future_warnings(shapes, tmp_path):
    """Two processes, synchronized batch norm, a validation: one banner, one line per update,
    one final line, and no deprecated PyTorch API in our code."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="always")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                        f"--master_port={port}", "-m", "darknet_py.cli", "detector", "train", str(shapes), str(TINY),
                        "--set", "max_batches=2", "--workers", "0", "--no-progress", "--backup", str(tmp_path),
                        "--valid-every", "2", "--sync-bn"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("iteration 2, seen 16: saved") == 1
    assert r.stdout.count("tiny-yolo\n") == 1 and len(lines(r.stdout)) == 2
    ours = [line for line in r.stderr.splitlines() if "Warning" in line and ("darknet_py" in line or "DistributedDataParallel" in line)]
    assert not ours, ours
    assert "FutureWarning" not in r.stderr, r.stderr


def test_float16_with_a_gradient_scaler_skips_overflows_and_lowers_the_scale(shapes, tmp_path):
    """The plan --amp takes on a CUDA GPU without bfloat16, run here on the CPU: an overflowing
    scale skips the update (weights and statistics kept, not counted as a bad step) and halves;
    at a workable scale the update applies."""
    from darknet_py.train.amp import AmpPlan
    t = Trainer(shapes, TINY, overrides=["max_batches=4"], options=opts(tmp_path))
    t.amp = AmpPlan(torch.float16, True, "float16 with a gradient scaler")
    t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 60)
    images, truths = t.first_samples(8)
    minibatches = [(images, truths, [])]
    before = state_bytes(t)
    record = t.step(minibatches)
    assert record.overflow and "loss scale lowered" in record.skipped and t.scaler.get_scale() == 2.0 ** 59
    after = state_bytes(t)
    assert all(torch.equal(before[k], after[k]) for k in before)
    t.scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    record = t.step(minibatches)
    assert record.skipped is None and np.isfinite(record.loss)
    assert any(not torch.equal(before[k], v) for k, v in state_bytes(t).items())
