"""Darknet image lists and label files under hostile content: every label line is either a box
inside the image of a known class or a reported problem; list entries that are FIFOs,
folders or symlink loops are reported, never read; the training loader sees an EXIF-tagged
image unrotated, as Darknet does."""
from __future__ import annotations

import os

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from darknet_py.datasets import DarknetList, Problems
from darknet_py.train.augment import Augment
from darknet_py.train.samples import TrainingSamples

from hostile import count, exif_oriented_jpeg, make_fifo, no_hang, picture

SCALE = float(os.environ.get("DARKNET_PY_FUZZ_EXAMPLES", "1"))
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
CLASSES = 3


def dataset(tmp_path, label_text: str | bytes, name="a"):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(exist_ok=True)
    labels.mkdir(exist_ok=True)
    cv2.imwrite(str(images / f"{name}.jpg"), picture(24, 32))
    data = label_text if isinstance(label_text, bytes) else label_text.encode("utf-8", "surrogatepass")
    (labels / f"{name}.txt").write_bytes(data)
    listing = tmp_path / "list.txt"
    listing.write_text(str(images / f"{name}.jpg") + "\n")
    return listing


NUMBERS = st.one_of(st.sampled_from(["0", "1", "0.5", "-0.5", "1e308", "-1e308", "nan", "inf", "1e-320", "+1",
                                     "2", "3", "99999999999999999999", "0x1", "1,5", "", "\u0661", "½"]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-5, 5).map(str))


@st.composite
def label_line(draw):
    """A good ``class cx cy w h`` line, or one with a field (or the field count) made hostile."""
    fields = [str(draw(st.integers(0, CLASSES - 1)))] + \
        [repr(draw(st.floats(0.01, 1.0))) for _ in range(4)]
    kind = draw(st.sampled_from(["good", "good", "field", "field", "count", "junk"]))
    if kind == "field":
        fields[draw(st.integers(0, 4))] = draw(NUMBERS)
    elif kind == "count":
        fields = fields[:draw(st.integers(0, 4))] if draw(st.booleans()) else fields + [draw(NUMBERS)]
    elif kind == "junk":
        fields = draw(st.lists(NUMBERS, max_size=6))
    return " ".join(fields)


@st.composite
def label_text(draw):
    lines = draw(st.lists(label_line(), min_size=0, max_size=4))
    text = "\n".join(lines)
    if draw(st.integers(0, 9)) == 0:
        text += draw(st.text(max_size=10))
    return text


def test_fuzz_label_lines(tmp_path):
    @settings(FUZZ, max_examples=max(1, int(300 * SCALE)))
    @given(label_text())
    def run(text):
        listing = dataset(tmp_path, text)
        problems = Problems()
        data = DarknetList(listing, CLASSES, problems)
        count("label files", "tried")
        if not len(data):
            assert len(problems), text  # a refused file is always reported
            count("label files", "reported")
            return
        boxes = data.boxes(0)
        assert np.isfinite(boxes).all() and set(boxes[:, 0]) <= set(range(CLASSES))
        assert (boxes[:, 1:3] >= 0).all() and (boxes[:, 1:3] <= 1).all()
        assert (boxes[:, 3:] > 0).all() and (boxes[:, 3:] <= 1).all()
        count("label files", "used")

    run()


def test_non_utf8_and_non_regular_label_files_are_reported(tmp_path):
    listing = dataset(tmp_path, b"0 0.5 0.5 \xff 0.1\n")
    problems = Problems()
    assert len(DarknetList(listing, CLASSES, problems)) == 0
    assert "unreadable label file" in problems.summary()
    label = tmp_path / "labels" / "a.txt"
    label.unlink()
    make_fifo(label)
    problems = Problems()
    with no_hang(10):
        assert len(DarknetList(listing, CLASSES, problems)) == 0
    assert any("FIFO" in str(p) for p in problems), [str(p) for p in problems]


def test_list_entries_that_are_not_regular_files_are_reported(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "labels").mkdir()
    fifo = make_fifo(images / "fifo.jpg")
    (images / "folder.jpg").mkdir()
    loop = images / "loop.jpg"
    loop.symlink_to(loop)
    for name in ("fifo", "folder", "loop"):
        (tmp_path / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{fifo}\n{images / 'folder.jpg'}\n{loop}\n")
    problems = Problems()
    with no_hang(10):
        assert len(DarknetList(listing, CLASSES, problems)) == 0
    reports = " ".join(str(p) for p in problems)
    assert "a FIFO" in reports and "a directory" in reports and problems.summary().startswith("3 entries skipped")


def test_the_training_loader_sees_an_exif_rotated_image_unrotated(tmp_path):
    listing = dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n")
    image = tmp_path / "images" / "a.jpg"
    image.write_bytes(exif_oriented_jpeg(picture(24, 32), 6))
    data = DarknetList(listing, CLASSES, Problems())
    loaded, boxes = data.load(0)
    assert loaded.shape == (3, 24, 32)  # OpenCV's default would give (3, 32, 24)
    unrotated = cv2.imread(str(image), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.array_equal(loaded, (unrotated[:, :, ::-1].transpose(2, 0, 1) / 255.0).astype(np.float32))
    samples = TrainingSamples(data, 32, 32, Augment(jitter=0.0, hue=0.0, saturation=1.0, exposure=1.0, flip=False),
                              max_boxes=4, seed=0)
    sample, truths, problems = samples[(0, 0, 32, 32)]
    assert sample.shape == (3, 32, 32) and not problems
