"""Darknet's command forms through the CLI do what Darknet does: -ext_output lines, AlexeyAB's
-out JSON, image lists from stdin, -save_labels files, detector demo on a video, pjreddie's
detect, Darknet flags answered with what they do; detect --json ids and records; the checks
made before any work (class counts, output folders, nothing dropped in the current folder)."""
import io
import json
import logging
import re
import shutil

import cv2
import numpy as np
import pytest

import darknet_py
from darknet_py.cli import main
from darknet_py.cli_darknet import label_path
from darknet_py.datafile import load_names

from conftest import CFG, ROOT, SHARED

WEIGHTS = SHARED / "weights" / "yolov3-tiny.weights"
IMAGES = ROOT / "data" / "images"
NAMES = load_names(ROOT / "data" / "coco.names")
TINY = [str(CFG / "coco.data"), str(CFG / "yolov3-tiny.cfg"), str(WEIGHTS)]
EXT = re.compile(r"^(?P<name>[a-z ]+): (?P<pct>\d+)%\t\(left_x: +(?P<x>-?\d+)   top_y: +(?P<y>-?\d+)   "
                 r"width: +(?P<w>\d+)   height: +(?P<h>\d+)\)$")


@pytest.fixture(scope="module")
def net():
    return darknet_py.load(CFG / "yolov3-tiny.cfg", WEIGHTS, device="cpu")


def _detect(net, path):
    return darknet_py.detect(net, cv2.imread(str(path)), names=NAMES)


@pytest.mark.shared
def test_ext_output_prints_alexeyabs_box_lines(net, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["detector", "test", *TINY, str(IMAGES / "dog.jpg"), "-ext_output", "-dont_show"]) == 0
    out = capsys.readouterr().out.splitlines()
    boxes = [EXT.match(line) for line in out if "left_x" in line]
    det = _detect(net, IMAGES / "dog.jpg")
    w, h = det.image_size
    expect = []
    for i in np.flatnonzero((det.probs > 0.25).any(1)):
        best = int(np.argmax(det.probs[i]))
        x, y, bw, bh = (float(v) for v in det.boxes[i])
        expect.append((NAMES[best], round(det.probs[i, best] * 100), round((x - bw / 2) * w), round((y - bh / 2) * h),
                       round(bw * w), round(bh * h)))
    expect.sort(key=lambda e: e[2])  # AlexeyAB sorts the boxes by their left edge
    got = [(m["name"], int(m["pct"]), int(m["x"]), int(m["y"]), int(m["w"]), int(m["h"])) for m in boxes]
    assert got == expect and len(got) == 4
    # a box's other classes above the threshold follow its line, without coordinates (car's truck)
    truck = out.index(next(line for line in out if line.startswith("car: 62%")))
    assert out[truck + 1] == "truck: 42%"
    assert (tmp_path / "predictions.jpg").is_file()


@pytest.mark.shared
def test_out_json_is_alexeyabs_and_reads_an_image_list_from_stdin(net, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    paths = [str(IMAGES / "dog.jpg"), str(IMAGES / "person.jpg")]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(paths) + "\n"))
    assert main(["detector", "test", *TINY, "-dont_show", "-out", "result.json"]) == 0
    assert "wrote result.json: 2 frame(s)" in capsys.readouterr().out
    frames = json.loads((tmp_path / "result.json").read_text())
    assert [f["frame_id"] for f in frames] == [1, 2] and [f["filename"] for f in frames] == paths
    for frame, path in zip(frames, paths):
        det = _detect(net, path)
        i, j = np.nonzero(det.probs > 0.005)
        assert [(o["class_id"], o["name"]) for o in frame["objects"]] == [(c, NAMES[c]) for c in j]
        for o, b, c in zip(frame["objects"], i, j):
            rel = o["relative_coordinates"]
            np.testing.assert_allclose([rel["center_x"], rel["center_y"], rel["width"], rel["height"]],
                                       det.boxes[b], atol=1e-6)
            assert abs(o["confidence"] - det.probs[b, c]) < 1e-6
    assert not (tmp_path / "result.json.jpg").exists() and (tmp_path / "predictions.jpg").is_file()


@pytest.mark.shared
def test_save_labels_writes_yolo_labels_beside_each_image(net, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    voc = tmp_path / "VOC" / "JPEGImages"
    voc.mkdir(parents=True)
    (tmp_path / "VOC" / "labels").mkdir()
    plain = shutil.copy(IMAGES / "dog.jpg", tmp_path / "dog.jpg")
    in_voc = shutil.copy(IMAGES / "person.jpg", voc / "person.jpg")
    for image, label in ((plain, tmp_path / "dog.txt"), (in_voc, tmp_path / "VOC" / "labels" / "person.txt")):
        assert label_path(image) == label
        assert main(["detector", "test", *TINY, str(image), "-save_labels", "-dont_show"]) == 0
        det = _detect(net, image)
        lines = label.read_text().splitlines()
        kept = np.flatnonzero((det.probs > 0.25).any(1))
        assert len(lines) == len(kept) > 0
        for line, i in zip(lines, kept):
            fields = line.split(" ")
            assert int(fields[0]) == int(np.argmax(det.probs[i]))
            assert all(re.fullmatch(r"\d\.\d{4}", f) for f in fields[1:])
            np.testing.assert_allclose([float(f) for f in fields[1:]], det.boxes[i], atol=5e-5)
    with pytest.raises(Exception):
        label_path("image.gif")
    assert main(["detector", "test", *TINY, "dog.jpg", "-save_labels"]) == 0  # the local copy
    assert main(["detector", "test", *TINY, str(IMAGES / "eagle.jpg"), "-save_labels"]) == 1  # a packaged one
    assert "packaged sample" in capsys.readouterr().err
    assert not (IMAGES / "eagle.txt").exists()


def _video(path, frames=4, size=(160, 120)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, size)
    image = cv2.resize(cv2.imread(str(IMAGES / "dog.jpg")), size)
    for k in range(frames):
        writer.write(np.roll(image, 3 * k, axis=1))
    writer.release()
    return path


def _frame_count(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.mark.shared
def test_detector_demo_writes_every_frame_annotated(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    video = _video(tmp_path / "in.avi")
    assert main(["detector", "demo", *TINY, str(video), "-out_filename", "out.avi", "-dont_show",
                 "-ext_output"]) == 0
    out = capsys.readouterr().out
    assert _frame_count(tmp_path / "out.avi") == _frame_count(video) == 4
    assert out.count("Objects (frame ") == 4 and re.search(r"^4 frames in [\d.]+ s: FPS [\d.]+$", out, re.M)
    assert "wrote out.avi" in out


@pytest.mark.shared
def test_detector_demo_reports_a_video_cut_short(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    data = _video(tmp_path / "in.avi", frames=12).read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) * 6 // 10])
    with caplog.at_level(logging.WARNING):
        assert main(["detector", "demo", *TINY, "cut.avi", "-out_filename", "out.avi", "-dont_show"]) == 0
    read = capsys.readouterr().out.count("Objects (frame ")
    assert 0 < read < 12 and _frame_count(tmp_path / "out.avi") == read
    assert f"ends after {read} of its 12 declared frames" in caplog.text


@pytest.mark.shared
def test_pjreddies_detect_form_is_detector_test_with_coco(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["detector", "test", *TINY, str(IMAGES / "dog.jpg")]) == 0
    expect = capsys.readouterr().out.splitlines()[1:]
    assert main(["detect", str(CFG / "yolov3-tiny.cfg"), str(WEIGHTS), str(IMAGES / "dog.jpg")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == expect
    assert main(["detect", str(CFG / "yolov3-tiny.cfg"), str(WEIGHTS), str(IMAGES / "dog.jpg"), "-out", "mine"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "wrote mine.jpg" and (tmp_path / "mine.jpg").is_file()
    assert main(["detect", str(IMAGES / "dog.jpg")]) == 1  # neither form
    assert "--cfg" in capsys.readouterr().err


def test_darknet_flags_get_an_answer_not_argparse_noise(capsys):
    assert main(["detector", "test", "a.data", "a.cfg", "a.weights", "x.jpg", "-json_port", "8070"]) == 2
    err = capsys.readouterr().err
    assert "-json_port: in Darknet, serves the detections as JSON over HTTP" in err and "-out result.json" in err
    assert main(["detector", "map", "a.data", "a.cfg", "a.weights", "-benchmark"]) == 2
    assert "benchmarks/detect_speed.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["detector", "test", "a.data", "a.cfg", "a.weights", "-not_a_darknet_flag"])
    assert "unrecognized arguments: -not_a_darknet_flag" in capsys.readouterr().err


def test_cuda_flags_without_cuda_say_why(tmp_path, monkeypatch, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(tmp_path)
    for flags in (["-i", "0"], ["-gpus", "0"], ["--device", "cuda:1"]):
        assert main(["detector", "test", str(CFG / "coco.data"), str(CFG / "yolov3-tiny.cfg"), "w.weights",
                     str(IMAGES / "dog.jpg"), *flags]) == 1
        err = capsys.readouterr().err
        assert "was asked for, but this torch" in err and "--device cpu" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.shared
def test_class_count_mismatch_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["detector", "test", str(CFG / "voc.data"), str(CFG / "yolov3-tiny.cfg"), str(WEIGHTS),
                 str(IMAGES / "dog.jpg")])
    err = capsys.readouterr()
    assert code == 1 and err.out == ""
    assert ("the class counts disagree: " + f"{CFG / 'voc.data'} says classes=20; " in err.err
            and "voc.names lists 20 names; " in err.err and "yolov3-tiny.cfg's head predicts 80 classes" in err.err)
    assert main(["detect", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--weights", str(WEIGHTS), "--names",
                 str(ROOT / "data" / "voc.names"), "--out", "det", str(IMAGES / "dog.jpg")]) == 1
    assert "voc.names lists 20 names" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] in ([], ["det"])
    assert not any((tmp_path / "det").glob("*")) if (tmp_path / "det").exists() else True


@pytest.mark.shared
@pytest.mark.parametrize("args", [
    ["detector", "test", *TINY, str(IMAGES / "dog.jpg"), "-out", "nodir/pred"],
    ["detector", "test", *TINY, str(IMAGES / "dog.jpg"), "-out", "nodir/result.json"],
    ["detector", "demo", *TINY, "in.avi", "-out_filename", "nodir/out.avi"],
    ["detect", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--weights", str(WEIGHTS), "--names",
     str(ROOT / "data" / "coco.names"), "--out", "det", "--json", "nodir/r.json", str(IMAGES / "dog.jpg")],
    ["detector", "valid", *TINY, "--out", "nodir/results.json"],
    ["detector", "map", *TINY, "--chart", "nodir/pr.png"],
])
def test_a_missing_output_folder_is_refused_before_any_work(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _video(tmp_path / "in.avi", frames=1)
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "nodir does not exist" in captured.err and "Predicted" not in captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.avi"]


@pytest.mark.shared
def test_detect_json_over_images_and_a_video_names_files_with_unique_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(IMAGES / "dog.jpg", folder / "000001.jpg")
    shutil.copy(IMAGES / "person.jpg", folder / "person.jpg")
    base = ["detect", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--weights", str(WEIGHTS),
            "--names", str(ROOT / "data" / "coco.names"), "--out", "det"]
    assert main([*base, "--json", "images.json", str(folder)]) == 0
    records = json.loads((tmp_path / "images.json").read_text())
    ids = {}
    for r in records:
        ids.setdefault(r["file_name"], set()).add(r["image_id"])
    assert sorted(ids) == [str(folder / "000001.jpg"), str(folder / "person.jpg")]
    assert all(len(v) == 1 for v in ids.values()) and len(set.union(*ids.values())) == 2  # no collision
    assert sorted(set.union(*ids.values())) == [1, 2]  # mixed names: consecutive ids in order
    # distinct numbers in every name: the numbers (COCO's own ids)
    shutil.move(folder / "person.jpg", folder / "000007.jpg")
    assert main([*base, "--json", "numbered.json", str(folder)]) == 0
    numbered = {r["file_name"]: r["image_id"] for r in json.loads((tmp_path / "numbered.json").read_text())}
    assert numbered == {str(folder / "000001.jpg"): 1, str(folder / "000007.jpg"): 7}
    # a video: one record set per frame, with the frame index
    video = _video(tmp_path / "clip.avi", frames=3, size=(320, 240))
    assert main([*base, "--json", "video.json", str(video), str(folder / "000001.jpg")]) == 0
    records = json.loads((tmp_path / "video.json").read_text())
    frames = {(r["file_name"], r.get("frame")): r["image_id"] for r in records}
    assert {(f, k) for f, k in frames if f == str(video)} == {(str(video), k) for k in range(3)}
    assert len(set(frames.values())) == len(frames) == 4
    assert (tmp_path / "det" / "clip.avi").is_file() and _frame_count(tmp_path / "det" / "clip.avi") == 3


def test_map_writes_no_chart_unless_asked_and_calc_anchors_show_writes_the_clusters(tmp_path, monkeypatch, capsys):
    from darknet_py.shapes import generate_shapes
    monkeypatch.chdir(tmp_path)
    data = generate_shapes(tmp_path / "shapes", 12, seed=5)
    model = [str(data), str(CFG / "yolov3-tiny-shapes.cfg"), str(ROOT / "data" / "yolov3-tiny-shapes.weights")]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["detector", "map", *model, "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert main(["detector", "map", *model, "--no-progress", "--chart", "pr.png"]) == 0
    assert cv2.imread(str(tmp_path / "pr.png")) is not None and "wrote the precision-recall chart pr.png" in \
        capsys.readouterr().out
    assert main(["calc_anchors", str(data), "-num_of_clusters", "3", "-width", "256", "-height", "256",
                 "-out", "anchors.txt", "-show", "-dont_show"]) == 0
    picture = cv2.imread(str(tmp_path / "cloud.png"))
    assert picture.shape == (700, 700, 3) and (picture == 255).all(2).any()  # white anchor rectangles
    assert (picture.sum(2) > 0).sum() > 100  # and the label dots
