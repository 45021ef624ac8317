"""export onnx --decode: onnxruntime gives Darknet's boxes directly. On the official yolov3-tiny
and dog.jpg the decoded boxes equal detect()'s within 1e-4 and NonMaxSuppression keeps exactly
the (box, class) pairs detect() reports."""
import numpy as np
import pytest

import darknet_py
from darknet_py.cli import main
from darknet_py.detect import network_input

from conftest import CFG, ROOT, SHARED

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
WEIGHTS = SHARED / "weights" / "yolov3-tiny.weights"


def _match(boxes, det):
    """Index into ``boxes`` of each of det's boxes (the nearest), and the largest distance."""
    nearest = [int(np.argmin(np.abs(boxes - b).max(1))) for b in det.boxes]
    return nearest, max(float(np.abs(boxes[j] - b).max()) for j, b in zip(nearest, det.boxes))


@pytest.mark.shared
@pytest.mark.parametrize("letterbox", ["on", "off"])
def test_decoded_onnx_boxes_and_nms_equal_detect(tmp_path, letterbox, capsys):
    path = tmp_path / "tiny.onnx"
    assert main(["export", "onnx", str(CFG / "yolov3-tiny.cfg"), str(WEIGHTS), str(path), "--decode",
                 "--nms", "0.45", "--letterbox", letterbox]) == 0
    assert "image_size" not in capsys.readouterr().err
    net = darknet_py.load(CFG / "yolov3-tiny.cfg", WEIGHTS, device="cpu")
    session = ort.InferenceSession(str(path))
    assert [o.name for o in session.get_outputs()] == ["boxes", "objectness", "scores", "selected"]
    images = [ROOT / "data" / "images" / name for name in ("dog.jpg", "person.jpg")]
    loaded = [darknet_py.load_image(p) for p in images]
    x = np.stack([network_input(im, 416, 416, letterbox == "on") for im in loaded])  # batch of 2
    sizes = np.array([[im.shape[2], im.shape[1]] for im in loaded], np.float32)
    # a letterboxed input needs the image's size to undo the letterbox; a resized one does not
    assert [i.name for i in session.get_inputs()] == ["input", "image_size"][:2 if letterbox == "on" else 1]
    feed = {"input": x, "image_size": sizes} if letterbox == "on" else {"input": x}
    boxes, objectness, scores, selected = session.run(None, feed)
    assert boxes.shape == (2, 13 * 13 * 3 + 26 * 26 * 3, 4) and scores.shape == (2, boxes.shape[1], 80)
    for b, image in enumerate(images):
        det = darknet_py.detect(net, str(image), letterbox=letterbox == "on")
        above = objectness[b] > 0.25
        assert above.sum() == len(det)  # get_network_boxes' count
        nearest, distance = _match(boxes[b], det)
        assert distance < 1e-4 and len(set(nearest)) == len(det)
        np.testing.assert_allclose(objectness[b, nearest], det.objectness, atol=1e-4)
        # Darknet's prob before NMS: objectness x class, 0 at or below the threshold
        kept = det.probs > 0
        np.testing.assert_allclose(np.where(kept, scores[b, nearest], 0), det.probs, atol=1e-4)
        chosen = {(nearest.index(int(i)), int(c)) for bb, c, i in selected if bb == b}
        assert chosen == set(zip(*map(list, np.nonzero(kept))))


@pytest.mark.shared
def test_decoded_module_in_pytorch_agrees_with_onnx_and_leaves_the_network_in_eval(tmp_path):
    import onnxruntime
    import torch

    from darknet_py.export import export_onnx
    from darknet_py.export_decode import DecodedDetector
    net = darknet_py.load(CFG / "yolov3-tiny.cfg", WEIGHTS, device="cpu")
    export_onnx(net, tmp_path / "t.onnx", decode=True, nms=0.45)
    assert not net.training
    image = darknet_py.load_image(ROOT / "data" / "images" / "dog.jpg")
    x = darknet_py.letterbox(image, 416, 416)[None]
    size = np.array([[768, 576]], np.float32)
    with torch.no_grad():
        ours = DecodedDetector(net, True, 0.25, 0.45).eval()(torch.from_numpy(x), torch.from_numpy(size))
    theirs = onnxruntime.InferenceSession(str(tmp_path / "t.onnx")).run(None, {"input": x, "image_size": size})
    for a, b in zip(ours[:3], theirs[:3]):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-4)
    assert sorted(map(tuple, ours[3].tolist())) == sorted(map(tuple, theirs[3].tolist()))


def test_decode_refuses_heads_it_does_not_decode(tmp_path, weights_for, capsys):
    weights = weights_for("yolov2-tiny.cfg")
    assert main(["export", "onnx", str(CFG / "yolov2-tiny.cfg"), str(weights), str(tmp_path / "r.onnx"),
                 "--decode"]) == 1
    assert "--decode writes [yolo] heads' decoding only" in capsys.readouterr().err
    assert not (tmp_path / "r.onnx").exists()
