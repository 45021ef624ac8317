"""The generated "shapes" dataset: deterministic, Darknet's layout, labels that fit the pixels."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from darknet_py.datafile import DataConfig
from darknet_py.shapes import CLASSES, generate_shapes, render_image

N, SEED, SIZE = 12, 3, 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "a", N, SEED, size=SIZE)


def read_labels(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2).reshape(-1, 5)


def label_files(data: Path):
    return sorted((data.parent / "labels").glob("*.txt"))


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    again = generate_shapes(tmp_path / "b", N, SEED, size=SIZE)
    other = generate_shapes(tmp_path / "c", N, SEED + 1, size=SIZE)
    a, b, c = dataset.parent, again.parent, other.parent
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) == files
    for rel in files:
        if rel.name in ("train.txt", "shapes.data"):  # absolute paths: equal up to the folder
            assert (a / rel).read_text() == (b / rel).read_text().replace(str(b), str(a))
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "annotations.json").read_bytes() != (c / "annotations.json").read_bytes()
    assert all((a / "images" / f"{i + 1:06d}.jpg").read_bytes() != (c / "images" / f"{i + 1:06d}.jpg").read_bytes()
               for i in range(N))


def test_layout_and_data_file(dataset):
    out = dataset.parent
    config = DataConfig.from_file(dataset)
    assert config.classes == len(CLASSES) and config.names == list(CLASSES)
    assert config.train == config.valid == str(out / "train.txt")
    assert Path(config.backup).is_dir()
    paths = Path(config.train).read_text().splitlines()
    assert paths == [str(out / "images" / f"{i + 1:06d}.jpg") for i in range(N)]
    for path in paths:
        assert Path(path).is_absolute()
        assert Path(path.replace("/images/", "/labels/").replace(".jpg", ".txt")).is_file()
        image = cv2.imread(path)
        assert image.shape == (SIZE, SIZE, 3)


def test_validation_list_is_separate_and_leaves_the_training_images_alone(tmp_path):
    data = DataConfig.from_file(generate_shapes(tmp_path / "a", 6, SEED, size=64, n_valid=2))
    train = Path(data.train).read_text().splitlines()
    valid = Path(data.valid).read_text().splitlines()
    assert Path(data.valid).name == "valid.txt" and len(valid) == 2 and len(train) == 6
    assert not set(train) & set(valid)
    assert sorted(train + valid) == sorted(str(p) for p in (tmp_path / "a" / "images").glob("*.jpg"))
    alone = DataConfig.from_file(generate_shapes(tmp_path / "b", 6, SEED, size=64))
    assert alone.valid == alone.train  # no validation set: Darknet's default, valid= the training list
    for a, b in zip(train, Path(alone.train).read_text().splitlines()):
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_data_shapes_cli_writes_a_validation_list_by_default(tmp_path, capsys):
    from darknet_py.cli import main
    assert main(["data", "shapes", str(tmp_path), "--n", "20", "--size", "32"]) == 0
    assert "20 training and 2 validation images" in capsys.readouterr().out
    data = DataConfig.from_file(tmp_path / "shapes.data")
    assert len(Path(data.train).read_text().splitlines()) == 20
    assert len(Path(data.valid).read_text().splitlines()) == 2


def test_labels_in_range_with_one_to_six_objects(dataset):
    counts = []
    for path in label_files(dataset):
        labels = read_labels(path)
        counts.append(len(labels))
        assert set(labels[:, 0]) <= set(range(len(CLASSES)))
        cx, cy, w, h = labels[:, 1:].T
        assert (w > 0).all() and (h > 0).all()
        for low, high in ((cx - w / 2, cx + w / 2), (cy - h / 2, cy + h / 2)):
            assert low.min() >= -1e-6 and high.max() <= 1 + 1e-6
    assert min(counts) >= 1 and max(counts) <= 6 and len(counts) == N


def test_labels_fit_the_drawn_pixels(dataset):
    """Before JPEG each shape is one flat colour: its visible pixels lie inside its box, the
    topmost shape (nothing over it) fills its box exactly, and no shape is mostly hidden."""
    for i, path in enumerate(label_files(dataset)):
        image, shapes = render_image(SEED, i, SIZE)
        labels = read_labels(path)
        assert len(labels) == len(shapes)
        for shape, label in zip(shapes, labels):
            x0, y0, x1, y1 = shape.box
            expected = np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]) / SIZE
            np.testing.assert_allclose(label, [shape.cls, *expected], atol=1e-6)
            ys, xs = np.nonzero((image == shape.colour).all(axis=2))
            assert len(xs) >= 0.1 * (x1 - x0) * (y1 - y0)
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
        top = (image == shapes[-1].colour).all(axis=2)
        ys, xs = np.nonzero(top)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == shapes[-1].box
        jpeg = cv2.imread(str(dataset.parent / "images" / f"{i + 1:06d}.jpg"))
        inner = cv2.erode(top.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert np.abs(np.median(jpeg[inner], axis=0) - shapes[-1].colour).max() <= 12


def test_coco_annotations_agree_with_labels(dataset):
    from pycocotools.coco import COCO
    coco = COCO(str(dataset.parent / "annotations.json"))
    assert [coco.cats[k + 1]["name"] for k in range(len(CLASSES))] == list(CLASSES)
    assert sorted(coco.getImgIds()) == list(range(1, N + 1))
    for i, path in enumerate(label_files(dataset)):
        image = coco.loadImgs(i + 1)[0]
        assert image["file_name"] == path.with_suffix(".jpg").name
        assert (image["width"], image["height"]) == (SIZE, SIZE)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))
        rows = []
        for a in anns:
            x, y, w, h = a["bbox"]
            rows.append([a["category_id"] - 1, (x + w / 2) / SIZE, (y + h / 2) / SIZE, w / SIZE, h / SIZE])
        np.testing.assert_allclose(rows, read_labels(path), atol=1e-6)
        assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] for a in anns)
    ids = [a["id"] for a in json.loads((dataset.parent / "annotations.json").read_text())["annotations"]]
    assert ids == list(range(1, len(ids) + 1))
