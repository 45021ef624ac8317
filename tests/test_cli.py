"""The command line: Darknet's layer table and BFLOPs."""
import subprocess
import sys

import pytest

from darknet_py.cli import main

from conftest import CFG, ORACLE, ROOT


def test_summary_matches_darknets_bflops(capsys):
    assert main(["summary", str(CFG / "yolov3.cfg"), "--width", "416", "--height", "416"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["layer", "filters", "size", "input", "output"]
    assert out[1].split() == ["0", "conv", "32", "3", "x", "3", "/", "1", "416", "x", "416", "x", "3",
                              "->", "416", "x", "416", "x", "32", "0.299", "BFLOPs"]
    assert out[-1] == "Total BFLOPs 65.862"
    assert len(out) == 1 + 107 + 1


def test_summary_of_a_bad_cfg_is_an_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=x\n")
    assert main(["summary", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.cfg:6: [convolutional] option 'filters': expected an integer, got 'x'" in err


def test_console_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "darknet_py.cli", "summary", str(CFG / "yolov3-tiny.cfg")],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    assert "Total BFLOPs" in result.stdout


@pytest.mark.shared
def test_detector_test_prints_labels_and_writes_predictions(tmp_path, capsys, monkeypatch):
    import cv2
    monkeypatch.chdir(tmp_path)
    code = main(["detector", "test", str(CFG / "coco.data"), str(CFG / "yolov3-tiny.cfg"),
                 str(ORACLE / "tiny_dog.weights"), str(ORACLE / "dog.png"), "-thresh", "0.25"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Predicted in" in lines[0]
    labels = [line for line in lines if line.endswith("%")]
    # Darknet prints one "name: NN%" line per (box, class) above the threshold: 100 on this case
    assert len(labels) == 100 and all(": " in line for line in labels)
    image = cv2.imread(str(tmp_path / "predictions.jpg"))
    assert image.shape == (576, 768, 3)


def test_detect_writes_annotations_and_coco_json(tmp_path, weights_for, capsys):
    import json

    from pycocotools.coco import COCO
    weights = weights_for("yolov3-tiny.cfg", seed=7)
    images = ROOT / "data" / "images"
    out = tmp_path / "out"
    code = main(["detect", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--weights", str(weights),
                 "--names", str(ROOT / "data" / "coco.names"), "--out", str(out),
                 "--json", str(tmp_path / "results.json"), "--thresh", "0.2",
                 str(images / "dog.jpg"), str(images / "eagle.jpg")])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["dog.jpg", "eagle.jpg"]
    records = json.loads((tmp_path / "results.json").read_text())
    assert records and {"image_id", "category_id", "bbox", "score"} <= set(records[0])
    gt = COCO()  # a minimal ground truth naming the two images, so that loadRes validates ids
    gt.dataset = {"images": [{"id": 0, "width": 768, "height": 576}, {"id": 1, "width": 1, "height": 1}],
                  "annotations": [], "categories": [{"id": i} for i in range(1, 91)]}
    gt.createIndex()
    results = gt.loadRes(str(tmp_path / "results.json"))
    assert len(results.anns) == len(records)
    assert all(r["bbox"][2] >= 0 and r["bbox"][3] >= 0 and r["score"] > 0.2 for r in records)
