"""Training against hostile side files, disks and numbers: a ``.state`` sidecar checked field by
field before training starts; an update that leaves NaN, an infinity or an absurd magnitude
undone and reported; nothing the loader would refuse ever written; a read-only or full backup
folder a TrainingError naming the folder and its free space; the last good checkpoint always
loads and holds finite values."""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch

from darknet_py.errors import TrainingError, WeightsError
from darknet_py.model import Darknet
from darknet_py.shapes import generate_shapes
from darknet_py.train.checkpoint import save_checkpoint, state_path
from darknet_py.train.guard import NonFiniteUpdate, guarded_step
from darknet_py.train.trainer import Trainer, TrainOptions, train

from conftest import ROOT
from hostile import make_fifo, no_hang

TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"
SHORT = ["max_batches=3", "burn_in=0"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), 16, seed=5, size=96)


@pytest.fixture(scope="module")
def resumable(shapes, tmp_path_factory):
    """A backup folder after 2 iterations: _last.weights with its sidecar (momentum)."""
    backup = tmp_path_factory.mktemp("resumable")
    train(shapes, TINY, overrides=["max_batches=2", "burn_in=0"], options=options(backup))
    return backup / "tiny-yolo_last.weights"


def options(backup, **kw):
    return TrainOptions(backup=str(backup), workers=0, progress=False, last_every=1, **kw)


def digest(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def loads_finite(path) -> int:
    """Load a checkpoint as a user would; every value finite; returns its seen."""
    net = Darknet(TINY, init=False)
    net.load_weights(path)
    assert all(bool(torch.isfinite(t).all()) for t in net.state_dict().values())
    return net.seen


# --- the sidecar --------------------------------------------------------------------------------

def _groups(state):
    state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:-1]


def _shape(state):
    key = next(iter(state["optimizer"]["state"]))
    state["optimizer"]["state"][key]["momentum_buffer"] = torch.zeros(3, 3)


def _nan(state):
    key = next(iter(state["optimizer"]["state"]))
    state["optimizer"]["state"][key]["momentum_buffer"].view(-1)[0] = float("nan")


def _params(state):
    state["optimizer"]["param_groups"][0]["params"] = state["optimizer"]["param_groups"][0]["params"][:-1]


def _stray(state):
    state["optimizer"]["state"][10**6] = {"momentum_buffer": torch.zeros(1)}


SIDECARS = {  # name: (change to the saved dict, the field the refusal names)
    "missing optimizer": (lambda s: s.pop("optimizer"), "'optimizer'"),
    "missing seen": (lambda s: s.pop("seen"), "'seen'"),
    "seen a string": (lambda s: s.__setitem__("seen", "16"), "'seen'"),
    "negative seen": (lambda s: s.__setitem__("seen", -16), "'seen'"),
    "group count": (_groups, "'optimizer.param_groups'"),
    "parameters in a group": (_params, "'optimizer.param_groups[0].params'"),
    "momentum shape": (_shape, "momentum_buffer': shape (3, 3)"),
    "nan momentum": (_nan, "momentum_buffer': holds NaN"),
    "stray state": (_stray, "belongs to no parameter"),
    "momentum factor": (lambda s: s["optimizer"]["param_groups"][0].__setitem__("momentum", float("nan")),
                        "param_groups[0].momentum"),
    "best_map": (lambda s: s.__setitem__("best_map", "high"), "'best_map'"),
    "version": (lambda s: s.__setitem__("version", 99), "version 1 expected"),
}


@pytest.mark.parametrize("name", sorted(SIDECARS))
def test_a_bad_sidecar_is_refused_before_training(shapes, resumable, tmp_path, name):
    change, field = SIDECARS[name]
    backup = tmp_path / "backup"
    shutil.copytree(resumable.parent, backup)
    last = backup / resumable.name
    state = torch.load(state_path(last), weights_only=True)
    change(state)
    torch.save(state, state_path(last))
    before = digest(backup)
    with pytest.raises(WeightsError) as e:
        Trainer(shapes, TINY, last, overrides=SHORT, options=options(backup))
    assert str(state_path(last)) in str(e.value) and field in str(e.value), str(e.value)
    assert digest(backup) == before


def test_unreadable_sidecars_are_refused(shapes, resumable, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(resumable.parent, backup)
    last = backup / resumable.name
    for data in (b"", b"garbage", b"PK\x03\x04" + b"\0" * 64):
        state_path(last).write_bytes(data)
        with pytest.raises(WeightsError, match="sidecar"):
            Trainer(shapes, TINY, last, overrides=SHORT, options=options(backup))
    state_path(last).unlink()
    make_fifo(state_path(last))
    with no_hang(10), pytest.raises(WeightsError, match="FIFO"):
        Trainer(shapes, TINY, last, overrides=SHORT, options=options(backup))


def test_a_good_sidecar_still_resumes(shapes, resumable, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(resumable.parent, backup)
    t = Trainer(shapes, TINY, backup / resumable.name, overrides=SHORT, options=options(backup))
    assert t.iteration == 2 and t.optimizer.state


# --- non-finite updates -------------------------------------------------------------------------

def test_guarded_step_undoes_an_update_that_overflows():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = torch.optim.SGD([p], lr=10.0, momentum=0.9)
    p.grad = torch.tensor([3e38, 0.0])
    with pytest.raises(NonFiniteUpdate, match="the update made the values of w infinite"):
        guarded_step(optimizer, {id(p): "w"})
    assert p.tolist() == [1.0, -2.0] and "momentum_buffer" not in optimizer.state[p]
    p.grad = torch.tensor([1.0, 1.0])
    guarded_step(optimizer)  # a sane step goes through
    assert p.tolist() == [-9.0, -12.0]
    momentum = optimizer.state[p]["momentum_buffer"].clone()
    p.grad = torch.tensor([1e16, 0.0])  # finite, but a weight no loader accepts
    with pytest.raises(NonFiniteUpdate, match="beyond"):
        guarded_step(optimizer)
    assert p.tolist() == [-9.0, -12.0] and torch.equal(optimizer.state[p]["momentum_buffer"], momentum)


def test_an_update_going_non_finite_mid_run_is_skipped_and_reported(shapes, tmp_path, caplog):
    """Iteration 2's learning rate is made absurd (as a tampered momentum or a diverging run
    would): the update is undone and reported, the run goes on, every checkpoint loads finite."""
    def callback(t):
        scale = 1e40 if t.iteration == 1 else 1.0
        for group in t.optimizer.param_groups:
            group["lr_scale"] = scale

    with caplog.at_level(logging.ERROR):
        result = train(shapes, TINY, overrides=["max_batches=4", "burn_in=0"],
                       options=options(tmp_path / "backup", callback=callback))
    assert "iteration 2: the update made" in caplog.text and "undone" in caplog.text
    assert result.iteration == 4 and result.losses[1] != result.losses[1]  # NaN marks the skipped one
    for name in ("tiny-yolo_last.weights", "tiny-yolo_final.weights"):
        assert loads_finite(tmp_path / "backup" / name) == 32


@pytest.mark.parametrize("where", ["weights", "momentum"])
def test_nan_introduced_mid_run_never_reaches_a_checkpoint(shapes, tmp_path, where):
    """NaN put into the weights or the momentum after iteration 2: the run stops with a
    TrainingError, and _last still holds iteration 2's finite values."""
    backup = tmp_path / "backup"

    def callback(t):
        if t.iteration == 2:
            with torch.no_grad():
                if where == "weights":
                    t.net.layers[0].weights.view(-1)[0] = float("nan")
                else:
                    next(iter(t.optimizer.state.values()))["momentum_buffer"].view(-1)[0] = float("nan")

    with pytest.raises(TrainingError) as e:
        train(shapes, TINY, overrides=["max_batches=6", "burn_in=0"], options=options(backup, callback=callback))
    assert "tiny-yolo_last" in str(e.value)
    assert loads_finite(backup / "tiny-yolo_last.weights") == 16
    assert torch.load(state_path(backup / "tiny-yolo_last.weights"), weights_only=True)["seen"] == 16
    assert not list(backup.glob("*.tmp"))


def test_save_checkpoint_refuses_values_the_loader_would_refuse(tmp_path):
    net = Darknet(TINY)
    path = tmp_path / "w.weights"
    net.save_weights(path)
    before = path.read_bytes()
    with torch.no_grad():
        net.layers[2].biases.view(-1)[1] = float("inf")
    with pytest.raises(TrainingError, match=r"'layers.2.biases' value 1 is infinite"):
        save_checkpoint(net, path)
    assert path.read_bytes() == before


# --- disks and folders --------------------------------------------------------------------------

def test_a_backup_folder_that_cannot_be_written_is_refused_before_the_first_iteration(shapes, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    called = []
    with pytest.raises(TrainingError, match=r"backup folder .*a-file/backup is not writable") as e:
        train(shapes, TINY, overrides=SHORT, options=options(blocker / "backup", callback=called.append))
    assert "MiB free" in str(e.value) and not called


@pytest.fixture
def readonly_folder(tmp_path):
    """A folder no write goes into: chmod for a normal user; root ignores modes, so a read-only tmpfs."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_backup_folder_is_refused_before_the_first_iteration(shapes, readonly_folder):
    called = []
    with pytest.raises(TrainingError, match=f"{readonly_folder} is not writable") as e:
        train(shapes, TINY, overrides=SHORT, options=options(readonly_folder, callback=called.append))
    assert not called and "free" in str(e.value)


def test_a_disk_filling_mid_run_is_a_training_error_and_the_last_checkpoint_survives(shapes, tmp_path, monkeypatch):
    """The disk fills during iteration 3's checkpoint (every fsync fails from then on, as
    ENOSPC does): a TrainingError names the folder and its free space; _last is iteration 2's."""
    backup = tmp_path / "backup"
    real_fsync, state = os.fsync, {"full": False}

    def fsync(fd):
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    def callback(t):
        state["full"] = t.iteration == 2

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(TrainingError) as e:
        train(shapes, TINY, overrides=["max_batches=6", "burn_in=0"], options=options(backup, callback=callback))
    message = str(e.value)
    assert "No space left on device" in message and str(backup) in message and "MiB free" in message
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert loads_finite(backup / "tiny-yolo_last.weights") == 16
    assert not list(backup.glob("*.tmp"))


FULL_DISK_CHILD = """
import sys
from darknet_py.cli import main
sys.exit(main(["detector", "train", sys.argv[1], sys.argv[2], "--backup", sys.argv[3], "--no-progress",
               "--workers", "0", "--last-every", "1", "--set", "max_batches=50", "--set", "burn_in=0"]))
"""


def test_a_full_tmpfs_stops_the_cli_with_one_line_and_the_last_checkpoint_loads(shapes, tmp_path):
    """A real full disk: the backup folder is a 160 KiB tmpfs (root only), which holds a few
    iterations' checkpoints and logs, then fills. The CLI exits 1 with one error line naming the
    folder and its free space, no traceback; the _last checkpoint on it loads, finite."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    backup = tmp_path / "small"
    backup.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(backup)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(shapes), str(TINY), str(backup)],
                                capture_output=True, text=True, cwd=ROOT, timeout=300,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert result.returncode == 1, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("darknet-py: error:")]
        assert len(errors) == 1 and str(backup) in errors[0] and "MiB free" in errors[0], result.stderr[-2000:]
        assert loads_finite(backup / "tiny-yolo_last.weights") > 0
        assert not list(backup.glob("*.tmp"))
    finally:
        subprocess.run(["umount", str(backup)], check=True)


def test_a_negative_seed_is_refused_before_anything_runs(shapes, tmp_path):
    with pytest.raises(TrainingError, match="seed=-1"):
        Trainer(shapes, TINY, overrides=SHORT, options=options(tmp_path, seed=-1))
    assert not (tmp_path / "tiny-yolo_train.csv").exists()


def test_a_pixel_bomb_and_a_truncated_jpeg_in_the_training_list_are_skipped_and_reported(tmp_path, caplog):
    """A 20000 x 20000 PNG (under 1 KB) and a JPEG cut short among the training images: each
    reported once with its path, the run goes on with the others (it used to die at iteration 8)."""
    from hostile import png_declaring
    data_file = generate_shapes(tmp_path / "data", 16, seed=5, size=96)
    bomb, cut = sorted((tmp_path / "data").rglob("*.jpg"))[:2]
    bomb.write_bytes(png_declaring(20000, 20000))
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) * 6 // 10])
    with caplog.at_level(logging.WARNING):
        result = train(data_file, TINY, overrides=["max_batches=2", "burn_in=0"],
                       options=options(tmp_path / "backup"))
    assert result.iteration == 2 and all(loss == loss for loss in result.losses)
    assert f"{bomb}: the PNG header declares 20000 x 20000" in caplog.text
    assert f"{cut}: truncated JPEG" in caplog.text
    assert loads_finite(tmp_path / "backup" / "tiny-yolo_final.weights") == 16
