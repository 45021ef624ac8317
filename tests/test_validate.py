"""The validation pass and `detector map` / `detector valid` on a generated dataset."""
from __future__ import annotations

import json

import pytest
import torch

from darknet_py.cli import main
from darknet_py.datafile import DataConfig
from darknet_py.evaluate import mean_average_precision
from darknet_py.model import load
from darknet_py.shapes import generate_shapes
from darknet_py.synthetic import write_random_weights
from darknet_py.datasets import open_dataset
from darknet_py.validate import threshold_sweep, validation_detections

from conftest import ROOT

TINY = ROOT / "tests" / "cfg" / "tiny-yolo.cfg"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    data = generate_shapes(folder / "shapes", 12, seed=21, size=96)
    weights = folder / "tiny.weights"
    net = write_random_weights(TINY, weights, seed=3)
    for layer in (net.layers[3], net.layers[7]):  # class scores spread from ~0 to ~1
        layer.biases.data.view(3, 10)[:, 5:] = torch.linspace(-6, 3, 5)
    net.save_weights(weights)
    return data, weights


def test_sweep_equals_running_at_each_threshold(setup):
    data_file, weights = setup
    data = DataConfig.from_file(data_file)
    net = load(TINY, weights, device="cpu")
    source = open_dataset(data, "valid")
    low, truths, _ = validation_detections(net, source, thresh=0.0001, progress=False)
    sweep = threshold_sweep(low, truths, data.names)
    assert [t for t, _, _ in sweep] == [0.1, 0.01, 0.001, 0.0001]
    assert sweep[0][2] < sweep[-1][2]  # lower thresholds keep more boxes
    for t, value, boxes in sweep[:2]:
        direct, _, _ = validation_detections(net, source, thresh=t, progress=False)
        assert boxes == sum(len(d) for d in direct)
        # equal up to the order of exact probability ties, which NMS lists differently
        assert value == pytest.approx(mean_average_precision(direct, truths, data.names).map, rel=1e-3)


def test_map_and_valid_cli(setup, tmp_path, capsys):
    data_file, weights = setup
    gt = data_file.parent / "annotations.json"
    chart = tmp_path / "pr.png"
    assert main(["detector", "map", str(data_file), str(TINY), str(weights), "--thresh-sweep",
                 "--coco-gt", str(gt), "--chart", str(chart), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "class_id = 0, name = circle, ap = " in out and "mean average precision (mAP@0.50) = " in out
    assert "conf_thresh   AP50" in out and "0.0001" in out
    for name in ("AP ", "AP50", "AP75", "AR 100", "AR large"):
        assert name in out
    assert chart.stat().st_size > 1000
    results = tmp_path / "results.json"
    assert main(["detector", "valid", str(data_file), str(TINY), str(weights), "--coco-gt", str(gt),
                 "--out", str(results), "--no-progress"]) == 0
    from pycocotools.coco import COCO
    coco = COCO(str(gt))
    records = json.loads(results.read_text())
    assert records and coco.loadRes(str(results)).getAnnIds()
    assert {r["image_id"] for r in records} <= set(coco.getImgIds())
    assert {r["category_id"] for r in records} <= set(coco.getCatIds())
