"""The results object: Detections on the official yolov3-tiny and dog.jpg knows its image, gives
pixel boxes, names, COCO records, AlexeyAB's JSON, an annotated picture and a saved file; detect()
takes cv2.imread's arrays; Darknet's rows() are untouched."""
import json

import cv2
import numpy as np
import pytest

import darknet_py
from darknet_py.coco import COCO_IDS
from darknet_py.datafile import load_names
from darknet_py.draw import class_colour
from darknet_py.errors import DarknetError, ImageError

from conftest import CFG, ROOT, SHARED

pytestmark = pytest.mark.shared
DOG = ROOT / "data" / "images" / "dog.jpg"
NAMES = load_names(ROOT / "data" / "coco.names")


@pytest.fixture(scope="module")
def net():
    return darknet_py.load(CFG / "yolov3-tiny.cfg", SHARED / "weights" / "yolov3-tiny.weights", device="cpu")


@pytest.fixture(scope="module")
def dog(net):
    return darknet_py.detect(net, str(DOG), names=NAMES)


def test_detect_on_a_cv2_imread_array_equals_detect_on_the_path(net, dog):
    from_array = darknet_py.detect(net, cv2.imread(str(DOG)), names=NAMES)
    np.testing.assert_array_equal(from_array.boxes, dog.boxes)
    np.testing.assert_array_equal(from_array.probs, dog.probs)
    np.testing.assert_array_equal(from_array.rows(0.25), dog.rows(0.25))
    assert from_array.image_size == dog.image_size == (768, 576)
    assert dog.image_path == str(DOG) and from_array.image_path is None
    # the float CHW form is the same image too
    chw = darknet_py.detect(net, darknet_py.load_image(DOG))
    np.testing.assert_array_equal(chw.probs, dog.probs)
    with pytest.raises(ImageError, match="uint8 BGR"):
        darknet_py.detect(net, np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 10, 3), np.uint8), r"uint8 BGR image .* got \(0, 10, 3\)"),
    (np.zeros((3, 8, 0), np.float32), r"got float32 \(3, 8, 0\)"),
    (np.zeros((3, 8, 8), bool), "got bool"),
    (np.full((3, 4, 5), np.nan, np.float32), "60 values that are not finite .* channel 0, row 0, column 0: nan"),
    (np.pad(np.array([[[np.inf]]]), ((1, 1), (2, 0), (0, 3))), "1 values that are not finite .* channel 1, row 2, column 0: inf"),
    (np.full((3, 2, 2), 1e300), "12 values that are not finite"),  # float64 beyond float32's range
])
def test_detect_refuses_arrays_it_cannot_read(net, array, message):
    """An array that is no image, or holds NaN or infinity (which would pass through every layer
    and come out as no boxes or garbage), is refused with our ImageError naming what it got."""
    with pytest.raises(ImageError, match=message):
        darknet_py.detect(net, array)


def test_pixel_boxes_follow_darknets_boxes(net):
    """On dog.png (Darknet's own decode of dog.jpg, lossless) against Darknet's rows."""
    dog = darknet_py.detect(net, str(SHARED / "oracle" / "real" / "dog.png"), names=NAMES)
    darknet = np.load(SHARED / "oracle" / "real" / "dog.npz")["dets_025"]  # Darknet's own rows
    rows = dog.rows(0.25)
    assert rows[:, [0, 6]].tolist() == darknet[:, [0, 6]].tolist()
    kept = sorted(set(rows[:, 0].astype(int)))
    for i in kept:
        x, y, w, h = darknet[darknet[:, 0] == i][0, 1:5].astype(np.float64)
        expect = np.clip([(x - w / 2) * 768, (y - h / 2) * 576, (x + w / 2) * 768, (y + h / 2) * 576],
                         0, [768, 576, 768, 576])
        np.testing.assert_allclose(dog.xyxy[i], expect, atol=1e-3)
        np.testing.assert_allclose(dog.xywh[i], [expect[0], expect[1], expect[2] - expect[0], expect[3] - expect[1]],
                                   atol=2e-3)
    assert [dog.name(c) for c in dog.class_ids[kept]] == ["dog", "truck", "car", "bicycle"]
    np.testing.assert_array_equal(dog.scores[kept], dog.probs[kept].max(1))
    small = dog.kept()
    assert len(small) == 4 and small.image_size == dog.image_size and small.names == NAMES


def test_to_coco_records_every_box_and_class_in_pixels(dog):
    records = dog.to_coco(42, COCO_IDS)
    i, j = np.nonzero(dog.probs > 0)
    assert len(records) == len(i) == 6
    for record, b, c in zip(records, i, j):
        assert record["image_id"] == 42 and record["category_id"] == COCO_IDS[c]
        np.testing.assert_allclose(record["bbox"], dog.xywh[b], atol=1e-3)
        assert record["score"] == pytest.approx(float(dog.probs[b, c]), abs=1e-6)
    assert {r["category_id"] for r in records} == {18, 3, 8, 2}  # dog, car, truck, bicycle
    plain = dog.to_coco(1, extra={"file_name": "dog.jpg"})
    assert {r["category_id"] for r in plain} == {16, 2, 7, 1} and all(r["file_name"] == "dog.jpg" for r in plain)


def test_to_json_is_alexeyabs_frame_record(dog):
    record = json.loads(dog.to_json(frame_id=3))
    assert record["frame_id"] == 3 and record["filename"] == str(DOG)
    i, j = np.nonzero(dog.probs > 0.005)
    assert [(o["class_id"], o["name"]) for o in record["objects"]] == [(c, NAMES[c]) for c in j]
    for o, b, c in zip(record["objects"], i, j):
        rel = o["relative_coordinates"]
        np.testing.assert_allclose([rel["center_x"], rel["center_y"], rel["width"], rel["height"]], dog.boxes[b],
                                   rtol=1e-7)
        assert o["confidence"] == pytest.approx(float(dog.probs[b, c]), rel=1e-7)


def test_plot_draws_darknets_boxes_and_save_writes_them(dog, tmp_path):
    image = cv2.imread(str(DOG))
    picture = dog.plot()
    assert picture.shape == image.shape and picture.dtype == np.uint8
    np.testing.assert_array_equal(dog.plot(image), picture)
    assert (image == cv2.imread(str(DOG))).all()  # the input is not drawn on
    left, top, right, bot = (int(v) for v in dog.xyxy[0])  # the dog's box, drawn in its class colour
    colour = class_colour(16, 80)
    assert tuple(picture[(top + bot) // 2, left]) == colour
    assert tuple(picture[bot - 1, (left + right) // 2]) == colour
    saved = dog.save(tmp_path / "dog.png")
    np.testing.assert_array_equal(cv2.imread(str(saved)), picture)
    with pytest.raises(DarknetError, match="does not exist"):
        dog.save(tmp_path / "nodir" / "dog.png")
    assert not (tmp_path / "nodir").exists()
