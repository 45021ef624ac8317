"""Training survives bad data: broken entries are skipped and reported once each with their
path; a non-finite loss skips its update (no poisoned weights are saved) and names the iteration."""
from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch

from darknet_py.model import Darknet
from darknet_py.shapes import generate_shapes
from darknet_py.train import trainer as trainer_module
from darknet_py.train.trainer import Trainer, TrainingError, TrainOptions, train

from conftest import ROOT

TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"
GOOD_LABEL = "1 0.5 0.5 0.25 0.25\n"


def opts(tmp_path, **kw):
    return TrainOptions(backup=str(tmp_path / "backup"), workers=kw.pop("workers", 0), progress=False,
                        last_every=1, **kw)


def bad_dataset(folder):
    """8 good images, then one entry of each kind of breakage; returns (.data, {name: path
    that the report must name})."""
    data = generate_shapes(folder, 8, seed=5, size=64)
    root = data.parent
    images, labels = root / "images", root / "labels"
    jpeg = (images / "000001.jpg").read_bytes()
    bad = {}

    def entry(name, image_bytes, label_text, reported="image"):
        image = images / f"{name}.jpg"
        if image_bytes is not None:
            image.write_bytes(image_bytes)
        label = labels / f"{name}.txt"
        if label_text is not None:
            label.write_text(label_text)
        bad[name] = image if reported == "image" else label
        return image

    listed = [
        entry("undecodable", b"this is not an image\n" * 20, GOOD_LABEL),
        entry("truncated", jpeg[:len(jpeg) * 2 // 3], GOOD_LABEL),
        entry("empty_image", b"", GOOD_LABEL),
        entry("missing_image", None, GOOD_LABEL),
        entry("nan_label", jpeg, "0 nan 0.5 0.2 0.2\n", reported="label"),
        entry("inf_label", jpeg, "0 0.5 0.5 inf 0.2\n", reported="label"),
        entry("out_of_range", jpeg, "0 0.5 1.7 0.2 0.2\n", reported="label"),
        entry("bad_class", jpeg, "7 0.5 0.5 0.2 0.2\n", reported="label"),
        entry("text_label", jpeg, "0 0.5 0.5 0.2\n", reported="label"),
        entry("empty_label", jpeg, "", reported="label"),
        entry("missing_label", jpeg, None, reported="label"),
    ]
    with open(root / "train.txt", "a") as f:
        f.writelines(f"{path}\n" for path in listed)
    return data, bad


def test_training_skips_and_reports_each_bad_entry_once(tmp_path, caplog):
    """Undecodable and truncated images are found when first loaded (each appears in more than
    one epoch here: 19 listed, 10 pass the up-front checks, 4 x 8 images are drawn); the rest
    before training. The run ends normally with finite weights."""
    data, bad = bad_dataset(tmp_path / "shapes")
    caplog.set_level(logging.WARNING)
    result = train(data, TINY, overrides=["max_batches=4"], options=opts(tmp_path, workers=1))
    assert result.iteration == 4 and result.seen == 32
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for name, path in bad.items():
        naming = [m for m in messages if str(path) in m]
        assert len(naming) == 1, (name, naming)
    net = Darknet(TINY, init=False)
    net.load_weights(result.final)
    assert all(torch.isfinite(p).all() for p in net.state_dict().values())


def test_truncated_jpeg_is_named_as_such(tmp_path, caplog):
    data, bad = bad_dataset(tmp_path / "shapes")
    caplog.set_level(logging.WARNING)
    train(data, TINY, overrides=["max_batches=2"], options=opts(tmp_path))
    [message] = [r.getMessage() for r in caplog.records if str(bad["truncated"]) in r.getMessage()]
    assert "truncated JPEG" in message and "skipped" in message


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes"), 16, seed=5, size=64)


def poison(monkeypatch, iterations, where="cost"):
    """Make Darknet's deltas non-finite at the given (1-based) iterations: a NaN cost, or an
    infinite delta (and so infinite gradients)."""
    real = trainer_module.head_delta
    state = {"trainer": None}

    def head_delta(*args, **kwargs):
        delta, stats = real(*args, **kwargs)
        if state["trainer"].iteration + 1 in iterations:
            if where == "cost":
                stats.cost = float("nan")
            else:
                delta = delta.clone()
                delta.view(-1)[0] = float("inf")
        return delta, stats

    monkeypatch.setattr(trainer_module, "head_delta", head_delta)
    return state


def params(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("where", ["cost", "delta"])
def test_non_finite_loss_skips_the_update_and_names_the_iteration(shapes, tmp_path, monkeypatch, caplog, where):
    """Iteration 3 goes bad: its update and batch-norm statistics are dropped, the log names
    iteration 3, the run continues from the weights of iteration 2 and every saved file is finite."""
    state = poison(monkeypatch, {3}, where)
    snapshots = {}
    options = opts(tmp_path, callback=lambda t: snapshots.__setitem__(t.iteration, params(t.net)))
    t = Trainer(shapes, TINY, overrides=["max_batches=5"], options=options)
    state["trainer"] = t
    caplog.set_level(logging.ERROR)
    result = t.run()
    assert result.iteration == 5 and math.isnan(result.losses[2])
    assert np.isfinite(result.losses[:2] + result.losses[3:]).all()
    for key, value in snapshots[3].items():
        assert torch.equal(value, snapshots[2][key]), key  # iteration 3 changed nothing
    assert any(not torch.equal(snapshots[4][k], snapshots[3][k]) for k in snapshots[3])  # 4 trained
    [message] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    reason = "loss is nan" if where == "cost" else r"gradients are not finite \(loss [0-9.]+\)"
    assert re.fullmatch(rf"iteration 3: {reason}; update skipped, weights kept", message), message
    for path in (tmp_path / "backup").glob("*.weights"):
        net = Darknet(TINY, init=False)
        net.load_weights(path)
        assert all(torch.isfinite(p).all() for p in net.state_dict().values()), path


def test_persistent_non_finite_loss_stops_with_the_last_good_weights(shapes, tmp_path, monkeypatch):
    """Three bad iterations in a row (3, 4, 5) stop the run; the message names the iteration and
    the _last file, which holds the finite weights of iteration 2."""
    state = poison(monkeypatch, {3, 4, 5, 6})
    snapshots = {}
    options = opts(tmp_path, callback=lambda t: snapshots.__setitem__(t.iteration, params(t.net)))
    t = Trainer(shapes, TINY, overrides=["max_batches=8"], options=options)
    state["trainer"] = t
    last = tmp_path / "backup" / "tiny-yolo_last.weights"
    with pytest.raises(TrainingError, match=rf"iteration 5: loss or gradients not finite 3 times in a row; stopped.*{last}"):
        t.run()
    net = Darknet(TINY, init=False)
    net.load_weights(last)
    saved = net.state_dict()
    assert all(torch.isfinite(p).all() for p in saved.values())
    for key, value in snapshots[2].items():
        assert torch.equal(saved[key], value), key
