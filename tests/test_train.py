"""The training loop: accumulation, a run that learns, checkpoints, resume, transfer, freezing."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from darknet_py.model import Darknet
from darknet_py.shapes import generate_shapes
from darknet_py.train.trainer import Trainer, TrainOptions, train

from conftest import ROOT

TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A generated Darknet-layout dataset: 24 images of 96 x 96 pixels."""
    return generate_shapes(tmp_path_factory.mktemp("shapes"), 24, seed=5, size=96)


def opts(tmp_path, **kw):
    return TrainOptions(backup=str(tmp_path / "backup"), workers=0, progress=False, last_every=1, **kw)


def params(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def no_bn_cfg(tmp_path):
    text = TINY.read_text().replace("batch_normalize=1", "batch_normalize=0")
    path = tmp_path / "tiny-nobn.cfg"
    path.write_text(text)
    return path


def test_accumulation_matches_one_big_batch(shapes, tmp_path):
    """batch 8 in 4 subdivisions updates exactly as batch 8 at once (no batch norm: Darknet's
    batch statistics are per mini-batch, so with BN the two differ in Darknet too)."""
    cfg = no_bn_cfg(tmp_path)
    results = []
    for subdivisions in (1, 4):
        t = Trainer(shapes, cfg, overrides=[f"subdivisions={subdivisions}", "max_batches=1", "burn_in=0"],
                    options=opts(tmp_path / str(subdivisions)))
        torch.manual_seed(0)
        t.net.init_weights()
        before = params(t.net)
        t.run()
        results.append((before, params(t.net), t.net.seen))
    (b1, a1, seen1), (b4, a4, seen4) = results
    assert seen1 == seen4 == 8
    for key in b1:
        assert torch.equal(b1[key], b4[key])
        assert not torch.equal(a1[key], b1[key]) or "rolling" in key
        torch.testing.assert_close(a4[key], a1[key], rtol=1e-5, atol=1e-6)


def test_training_lowers_the_loss_and_saves_loadable_weights(shapes, tmp_path):
    result = train(shapes, TINY, overrides=["max_batches=40", "learning_rate=0.005"], options=opts(tmp_path))
    losses = np.array(result.losses)
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.7 * losses[:5].mean(), losses
    final = tmp_path / "backup" / "tiny-yolo_final.weights"
    assert result.final == final and result.seen == 40 * 8 and result.iteration == 40
    net = Darknet(TINY, init=False)
    net.load_weights(final)
    assert net.seen == 320
    again = tmp_path / "again.weights"
    net.save_weights(again)
    assert again.read_bytes() == final.read_bytes()
    for name in ("tiny-yolo_last.weights", "tiny-yolo_last.state", "tiny-yolo_train.csv", "tiny-yolo_chart.png"):
        assert (tmp_path / "backup" / name).is_file(), name
    rows = (tmp_path / "backup" / "tiny-yolo_train.csv").read_text().splitlines()
    assert len(rows) == 41 and rows[0].startswith("iteration,seen,loss")


class Interrupt(KeyboardInterrupt):
    pass


def test_resume_after_interrupt_continues_at_the_same_iteration(shapes, tmp_path):
    """A run stopped after iteration 3 and resumed from _last ends with the same bytes as an
    uninterrupted run: same iteration, seen, images, augmentation, momentum."""
    overrides = ["max_batches=6"]
    full = train(shapes, TINY, overrides=overrides, options=opts(tmp_path / "full"))

    def stop_at_3(trainer):
        if trainer.iteration == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(shapes, TINY, overrides=overrides, options=opts(tmp_path / "cut", callback=stop_at_3))
    last = tmp_path / "cut" / "backup" / "tiny-yolo_last.weights"
    resumed = Trainer(shapes, TINY, last, overrides=overrides, options=opts(tmp_path / "cut"))
    assert (resumed.iteration, resumed.net.seen) == (3, 24)
    result = resumed.run()
    assert (result.iteration, result.seen) == (6, 48)
    assert result.final.read_bytes() == full.final.read_bytes()


def test_cut_file_initialises_the_first_layers_and_stopbackward_freezes(shapes, tmp_path):
    source = Darknet(TINY)
    cut = tmp_path / "tiny.conv.2"
    source.save_weights(cut, cutoff=2)
    text = TINY.read_text().replace("filters=16\n", "filters=16\nstopbackward=1\n", 1)
    cfg = tmp_path / "tiny-frozen.cfg"
    cfg.write_text(text)
    t = Trainer(shapes, cfg, cut, overrides=["max_batches=2"], options=opts(tmp_path))
    for i in (0, 1):
        for a, b in zip(t.net.layers[i].parameters(), source.layers[i].parameters()):
            assert torch.equal(a, b)
    before = params(t.net)
    t.run()
    after = params(t.net)
    for key in before:
        layer = int(key.split(".")[1])
        changed = not torch.equal(before[key], after[key])
        if layer <= 1 and "rolling" not in key and not key.endswith("weights"):
            assert not changed, key  # no gradient (BN statistics move, weights decay: test_train_update.py)
        elif key.endswith("weights"):
            assert changed, key


def test_sidecar_of_another_run_is_ignored(shapes, tmp_path):
    result = train(shapes, TINY, overrides=["max_batches=2"], options=opts(tmp_path))
    last = tmp_path / "backup" / "tiny-yolo_last.weights"
    other = tmp_path / "other.weights"
    shutil.copy(last, other)
    shutil.copy(last.with_suffix(".state"), other.with_suffix(".state"))
    net = Darknet(TINY, init=False)
    net.load_weights(other)
    net.seen = 8  # as if the weights were written by a different step than the sidecar
    net.save_weights(other)
    t = Trainer(shapes, TINY, other, overrides=["max_batches=3"], options=opts(tmp_path / "b"))
    assert t.optimizer.state_dict()["state"] == {}  # momentum not paired with the wrong weights
    assert result.seen == 16


def test_bag_of_freebies_switches_train(shapes, tmp_path):
    """mixup, label smoothing, bfloat16 autocast and multi-scale together: finite losses, the
    sizes Darknet's random=1 draws."""
    t = Trainer(shapes, TINY, overrides=["max_batches=2"],
                options=opts(tmp_path, mixup=1.0, label_smoothing=0.1, amp=True, multi_scale=True))
    result = t.run()
    assert np.isfinite(result.losses).all() and result.iteration == 2
    t.cfg = t.cfg.__class__(**{**t.cfg.__dict__, "max_batches": 1000})
    sizes = [t.size_at(i) for i in range(1000)]
    assert all(w == h and w % 32 == 0 and 320 <= w <= 608 for w, h in sizes)
    assert all(sizes[i] == sizes[i - i % 10] for i in range(1000))  # a new size every 10 iterations
    assert len({w for w, _ in sizes[:800]}) >= 5
    assert set(sizes[810:]) == {(608, 608)}  # Darknet trains the last 200 batches at 608


def test_validation_keeps_best_by_map(shapes, tmp_path):
    result = train(shapes, TINY, overrides=["max_batches=4"], options=opts(tmp_path, valid_every=2))
    best = tmp_path / "backup" / "tiny-yolo_best.weights"
    rows = (tmp_path / "backup" / "tiny-yolo_train.csv").read_text().splitlines()
    maps = [row.split(",")[-1] for row in rows[1:]]
    assert maps[0] == "" and maps[2] == "" and maps[1] != "" and maps[3] != ""
    assert result.best_map == pytest.approx(max(float(maps[1]), float(maps[3])), abs=1e-6)
    assert best.is_file() and best.with_suffix(".state").is_file()
