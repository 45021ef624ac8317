"""The command line: Darknet's layer table and BFLOPs, every verb's --help, detection and
validation options reaching the functions they set (-letter_box, -points, -iou_thresh)."""
import argparse
import importlib
import json
import subprocess
import sys

import pytest

from darknet_py.cli import build_parser, main

from conftest import CFG, ORACLE, ROOT


def test_summary_matches_darknets_bflops(capsys):
    assert main(["summary", str(CFG / "yolov3.cfg"), "--width", "416", "--height", "416"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fork = pjreddie (auto: nothing AlexeyAB-only)"
    assert out[1].split() == ["layer", "filters", "size", "input", "output"]
    assert out[2].split() == ["0", "conv", "32", "3", "x", "3", "/", "1", "416", "x", "416", "x", "3",
                              "->", "416", "x", "416", "x", "32", "0.299", "BFLOPs"]
    assert out[-1] == "Total BFLOPs 65.862"
    assert len(out) == 2 + 107 + 1


@pytest.mark.parametrize("extra, line", [
    ("", "fork = alexeyab (auto: activation=mish in [convolutional] at {cfg}:7, which only AlexeyAB's "
         "Darknet reads)"),
    ("fork=pjreddie", "fork = pjreddie (set in [net])"),
])
def test_summary_names_the_fork_and_why(tmp_path, capsys, extra, line):
    cfg = tmp_path / "mish.cfg"
    cfg.write_text(f"[net]\nwidth=32\nheight=32\nchannels=3\n{extra}\n[convolutional]\nactivation=mish\n")
    assert main(["summary", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == line.format(cfg=cfg)


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
    from pathlib import Path

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
    # names without numbers: ids 1, 2 in input order (darknet_py.coco's rule), and each record names its file
    assert {(r["image_id"], Path(r["file_name"]).name) for r in records} == {(1, "dog.jpg"), (2, "eagle.jpg")}
    gt = COCO()  # a minimal ground truth naming the two images, so that loadRes validates ids
    gt.dataset = {"images": [{"id": 1, "width": 768, "height": 576}, {"id": 2, "width": 1, "height": 1}],
                  "annotations": [], "categories": [{"id": i} for i in range(1, 91)]}
    gt.createIndex()
    results = gt.loadRes(str(tmp_path / "results.json"))
    assert len(results.anns) == len(records)
    assert all(r["bbox"][2] >= 0 and r["bbox"][3] >= 0 and r["score"] > 0.2 for r in records)


def verbs(parser, prefix=()):
    """Every command path of the parser (``("detector", "map")``, aliases included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from verbs(sub, prefix + (name,))


VERBS = sorted(set(verbs(build_parser())))


def test_the_verb_list_is_complete():
    """The parametrization below walks the parser: it sees nested and aliased verbs."""
    for verb in [("summary",), ("detector", "test"), ("detector", "map"), ("detector", "calc_anchors"),
                 ("export", "onnx"), ("data", "shapes"), ("calc-anchors",), ("plot-lr",), ("detect",)]:
        assert verb in VERBS


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*verb, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    # an alias prints its verb's name (calc-anchors: calc_anchors)
    assert out.startswith("usage: darknet-py " + " ".join(verb[:-1])) and "-h, --help" in out


def _detect_json(tmp_path, weights, *flags):
    out = tmp_path / "-".join(flags or ("default",))
    code = main(["detect", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--weights", str(weights),
                 "--names", str(ROOT / "data" / "coco.names"), "--out", str(out), "--json", str(out / "r.json"),
                 "--thresh", "0.2", *flags, str(ROOT / "data" / "images" / "dog.jpg")])
    assert code == 0
    return json.loads((out / "r.json").read_text())


def test_letterbox_flag_reaches_detect(tmp_path, weights_for):
    """dog.jpg is 768 x 576: letterboxed and stretched inputs give other boxes. yolov3-tiny is
    pjreddie's, whose detector letterboxes, so auto is on; -letter_box is AlexeyAB's spelling."""
    weights = weights_for("yolov3-tiny.cfg", seed=7)
    on = _detect_json(tmp_path, weights, "--letterbox", "on")
    off = _detect_json(tmp_path, weights, "--letterbox", "off")
    assert on and off and on != off
    assert _detect_json(tmp_path, weights, "-letter_box") == on
    assert _detect_json(tmp_path, weights) == on


def test_detector_test_passes_letterbox(tmp_path, weights_for, monkeypatch):
    module = importlib.import_module("darknet_py.detect")  # darknet_py.detect is the function
    seen = []
    real = module.detect

    def spy(*args, **kwargs):
        seen.append(kwargs["letterbox"])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "detect", spy)
    monkeypatch.chdir(tmp_path)
    weights = weights_for("yolov3-tiny.cfg", seed=7)
    for flags in ([], ["--letterbox", "off"], ["-letter_box"]):
        assert main(["detector", "test", str(CFG / "coco.data"), str(CFG / "yolov3-tiny.cfg"), str(weights),
                     str(ROOT / "data" / "images" / "dog.jpg"), *flags]) == 0
    assert seen == [None, False, True]


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory):
    from darknet_py.shapes import generate_shapes
    from darknet_py.synthetic import write_random_weights
    folder = tmp_path_factory.mktemp("cli-map")
    data = generate_shapes(folder / "shapes", 4, seed=5, size=64)
    weights = folder / "tiny.weights"
    write_random_weights(ROOT / "tests" / "cfg" / "tiny-yolo.cfg", weights, seed=3)
    return data, weights


@pytest.mark.parametrize("verb", ["map", "valid"])
def test_map_and_valid_options_reach_the_evaluation(verb, shapes_set, tmp_path, monkeypatch, capsys):
    """-letter_box reaches validation_detections; -points and -iou_thresh reach the mAP table."""
    import darknet_py.validate
    seen = []
    real = darknet_py.validate.validation_detections

    def spy(*args, **kwargs):
        seen.append(kwargs["letterbox"])
        return real(*args, **kwargs)

    monkeypatch.setattr(darknet_py.validate, "validation_detections", spy)
    monkeypatch.chdir(tmp_path)
    data, weights = shapes_set
    args = ["detector", verb, str(data), str(ROOT / "tests" / "cfg" / "tiny-yolo.cfg"), str(weights),
            "--no-progress", "-letter_box"]
    if verb == "map":
        args += ["-points", "11", "-iou_thresh", "0.75"]
    assert main(args) == 0
    assert seen == [True]
    if verb == "map":
        out = capsys.readouterr().out
        assert "IoU threshold = 75 %, used 11 Recall-points" in out
        assert "mean average precision (mAP@0.75) = " in out
