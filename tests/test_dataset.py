"""Training sources: Darknet image lists, COCO json, and the samples made from them."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from darknet_py.datafile import DataConfig
from darknet_py.errors import CfgError, DarknetError, ImageError
from darknet_py.train.augment import Augment
from darknet_py.datasets import CocoDataset, DarknetList, Problems, label_path, open_dataset
from darknet_py.train.samples import TrainingSamples, collate

CLASSES = 3
AUG = Augment(jitter=.2, hue=.1, saturation=1.5, exposure=1.5)


def write_image(path: Path, w=16, h=12, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def write_label(image: Path, text: str):
    path = label_path(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("image, label", [
    ("data/images/a.jpg", "data/labels/a.txt"),
    ("VOC2007/JPEGImages/0001.jpg", "VOC2007/labels/0001.txt"),
    ("set/raw/x.png", "set/labels/x.txt"),
    ("d/images/sub/images/x.JPEG", "d/labels/sub/images/x.txt"),      # the first "images" only
    ("d/images/a.jpg.d/b.jpg", "d/labels/a.txt.d/b.jpg"),              # the first ".jpg" only
    ("d/drawings/images/x.jpg", "d/dlabelsings/labels/x.txt"),        # "raw" anywhere, even in a word
    ("x/images/y.jpeg", "x/labels/y.txt"),
    ("x/y.tiff", "x/y.txt"), ("x/y.tif", "x/y.txt"), ("x/y.bmp", "x/y.txt"),
    ("x/y.webp", "x/y.txt"), ("x/y.ppm", "x/y.txt"),
])
def test_label_path_rules(image, label):
    assert label_path(image) == Path(label)


def test_label_path_refuses_a_path_no_rule_changes():
    with pytest.raises(DarknetError, match="no images->labels rule"):
        label_path("pics/x.gif")


@pytest.fixture()
def broken_list(tmp_path):
    """One good image, one that passes the checks but does not decode, and one of each
    broken entry."""
    images = tmp_path / "images"
    good = write_image(images / "good.jpg")
    write_label(good, "0 .5 .5 .25 .5\n\n2 .2 .3 .1 .1\n")
    corrupt = images / "corrupt.jpg"
    corrupt.write_bytes(b"this is no jpeg")
    write_label(corrupt, "1 .5 .5 .5 .5\n")
    (images / "empty.jpg").write_bytes(b"")
    write_label(images / "empty.jpg", "1 .5 .5 .5 .5\n")
    write_image(images / "nolabel.jpg")
    bad_labels = {
        "emptylabel": "\n\n",
        "badclass": "0 .5 .5 .1 .1\n3 .5 .5 .1 .1\n",
        "fracclass": "1.0 .5 .5 .1 .1\n",
        "nan": "0 .5 .5 .1 .1\n\n0 nan .5 .1 .1\n",
        "range": "0 .5 .5 1.5 .1\n",
        "zero": "0 .5 .5 0 .1\n",
        "columns": "0 .5 .5 .1\n",
    }
    for name, text in bad_labels.items():
        write_label(write_image(images / f"{name}.jpg"), text)
    write_image(tmp_path / "pics" / "unmapped.gif.jpg").rename(tmp_path / "pics" / "unmapped.gif")
    entries = ["images/good.jpg", "images/missing.jpg", "images/corrupt.jpg", "images/empty.jpg",
               "images/nolabel.jpg", *(f"images/{n}.jpg" for n in bad_labels), "pics/unmapped.gif", ""]
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(entries) + "\n")
    return listing


def test_broken_entries_are_reported_and_skipped(broken_list, monkeypatch, tmp_path, caplog):
    monkeypatch.chdir(tmp_path.parent)   # relative entries are found beside the list
    problems = Problems()
    with caplog.at_level(logging.WARNING):
        data = DarknetList(broken_list, CLASSES, problems)
    images, labels = broken_list.parent / "images", broken_list.parent / "labels"
    assert [p.name for p in data.paths] == ["good.jpg", "corrupt.jpg"]
    found = {(Path(p.path), p.line, p.reason) for p in problems}
    assert found == {
        (broken_list, 2, "missing image"),
        (images / "empty.jpg", None, "empty image file"),
        (labels / "nolabel.txt", None, "missing label file"),
        (labels / "emptylabel.txt", None, "no boxes"),
        (labels / "badclass.txt", 2, "bad class"),
        (labels / "fracclass.txt", 1, "bad class"),
        (labels / "nan.txt", 3, "not a finite number"),
        (labels / "range.txt", 1, "out of range"),
        (labels / "zero.txt", 1, "out of range"),
        (labels / "columns.txt", 1, "wrong column count"),
        (broken_list.parent / "pics" / "unmapped.gif", None, "no label path"),
    }
    assert "w=1.5" in next(p.detail for p in problems if p.path.endswith("range.txt"))
    assert f"{labels / 'badclass.txt'}:2: bad class" in caplog.text
    summary = problems.summary()
    assert summary.splitlines()[0].startswith("11 entries skipped")
    assert "  bad class: 2" in summary and "  out of range: 2" in summary and "  no boxes: 1" in summary

    image, boxes = data.load(0)
    assert image.shape == (3, 12, 16) and image.dtype == np.float32
    np.testing.assert_array_equal(boxes, np.array([(0, .5, .5, .25, .5), (2, .2, .3, .1, .1)], np.float32))
    with pytest.raises(ImageError, match="corrupt.jpg"):
        data.load(1)


def test_problems_are_logged_once(caplog):
    problems = Problems()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            problems.add("a.jpg", None, "cannot decode image")
        problems.add("b.txt", 4, "bad class", "7 is not in [0, 3)", skipped="b.jpg")
        problems.add("c.jpg", None, "degenerate box", skipped=False)
    assert len(problems) == 3 and caplog.text.count("a.jpg") == 1
    assert "b.txt:4: bad class (7 is not in [0, 3))" in caplog.text
    assert problems.summary().splitlines()[0].startswith("2 entries skipped")
    assert Problems().summary() == ""


def test_samples_replace_an_undecodable_image(broken_list, monkeypatch, tmp_path):
    monkeypatch.chdir(broken_list.parent)
    data = DarknetList(broken_list, CLASSES, Problems())
    samples = TrainingSamples(data, 32, 32, AUG, max_boxes=8, seed=1)
    image, truths, problems = samples[(5, 1, 32, 32)]
    assert [path for path, _ in problems] == [str(data.paths[1])]
    assert problems[0][1].startswith("not an image file") and f"({len(b'this is no jpeg')} bytes)" in problems[0][1]
    replaced, replaced_truths, none = samples[(5, 0, 32, 32)]
    assert none == []
    torch.testing.assert_close(image, replaced, rtol=0, atol=0)
    torch.testing.assert_close(truths, replaced_truths, rtol=0, atol=0)
    images, all_truths, found = collate([samples[(5, 1, 32, 32)], samples[(6, 0, 32, 32)], samples[(7, 1, 32, 32)]])
    assert images.shape == (3, 3, 32, 32) and all_truths.shape == (3, 8, 6) and len(found) == 2


def make_list(tmp_path, count=3):
    entries = []
    for i in range(count):
        image = write_image(tmp_path / "images" / f"{i}.png", w=20 + 4 * i, h=14, seed=i)
        write_label(image, f"{i % CLASSES} .5 .5 .4 .3\n1 .25 .25 .2 .2\n")
        entries.append(str(image))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(entries))
    return DarknetList(listing, CLASSES, Problems())


def test_samples_are_a_function_of_their_key(tmp_path):
    data = make_list(tmp_path)
    first = TrainingSamples(data, 24, 24, AUG, max_boxes=6, seed=3)
    other = TrainingSamples(data, 24, 24, AUG, max_boxes=6, seed=3)
    other[(9, 2, 24, 24)]                                # order of calls does not matter
    a, b = first[(4, 1, 32, 24)], other[(4, 1, 32, 24)]
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
    assert a[0].shape == (3, 24, 32) and a[1].shape == (6, 6) and a[2] == []
    c = first[(5, 1, 32, 24)]
    assert not torch.equal(a[0], c[0])
    d = first[(4, 1)]                                    # the default size
    assert d[0].shape == (3, 24, 24)


def test_mixup_samples_weight_both_images(tmp_path):
    data = make_list(tmp_path)
    samples = TrainingSamples(data, 32, 32, Augment(0, 0, 1, 1, flip=False, mixup=1.0), max_boxes=8, seed=0)
    for number in range(4):
        _, truths, _ = samples[(number, 0, 32, 32)]
        weights = truths[truths[:, 2] > 0, 5]
        assert len(weights) == 4 and torch.all((weights > 0) & (weights < 1))
        shares, counts = torch.unique(weights, return_counts=True)   # each image has 2 boxes
        assert counts.tolist() == [2, 2] and torch.isclose(shares.sum(), torch.tensor(1.0))


def write_coco(tmp_path):
    images = tmp_path / "coco" / "img"
    write_image(images / "a.jpg", w=40, h=20)
    write_image(images / "b.jpg", w=30, h=30)
    write_image(images / "crowd.jpg", w=10, h=10)
    doc = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 20},
                   {"id": 3, "file_name": "b.jpg", "width": 30, "height": 30},
                   {"id": 9, "file_name": "crowd.jpg", "width": 10, "height": 10},
                   {"id": 11, "file_name": "gone.jpg", "width": 10, "height": 10}],
        "categories": [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [4, 2, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 40, 20], "area": 800, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 2, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 1},
            {"id": 4, "image_id": 3, "category_id": 2, "bbox": [15, 15, 15, 15], "area": 225, "iscrowd": 0},
            {"id": 5, "image_id": 9, "category_id": 5, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1},
            {"id": 6, "image_id": 11, "category_id": 5, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0},
        ],
    }
    path = tmp_path / "coco" / "instances.json"
    path.write_text(json.dumps(doc))
    return path, images


def test_coco_round_trip(tmp_path):
    path, images = write_coco(tmp_path)
    problems = Problems()
    data = CocoDataset(path, images, problems)
    assert [p.name for p in data.paths] == ["b.jpg", "a.jpg"]      # image id order
    # category ids 2 (cat), 5 (dog) -> classes 0, 1; the crowd box is ignored
    np.testing.assert_allclose(data.load(0)[1], [(0, .75, .75, .5, .5)])
    np.testing.assert_allclose(data.load(1)[1], [(1, .35, .35, .5, .5), (0, .5, .5, 1, 1)])
    assert {(Path(p.path).name, p.reason) for p in problems} == {("crowd.jpg", "no boxes"),
                                                                 ("gone.jpg", "missing image")}
    by_name = CocoDataset(path, images, Problems(), names=["bird", "dog", "cat"])
    np.testing.assert_allclose(by_name.load(1)[1][:, 0], [1, 2])
    with pytest.raises(CfgError, match="not in the names list: cat"):
        CocoDataset(path, images, Problems(), names=["dog"])


def test_open_dataset_picks_the_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, images = write_coco(tmp_path)
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\n")
    make_list(tmp_path)
    (tmp_path / "darknet.data").write_text("classes=3\nnames=names.txt\ntrain=list.txt\n")
    (tmp_path / "coco.data").write_text(f"classes=3\nnames=names.txt\ntrain={path}\nimages=coco/img\n")
    assert isinstance(open_dataset(DataConfig.from_file(tmp_path / "darknet.data")), DarknetList)
    coco = open_dataset(DataConfig.from_file(tmp_path / "coco.data"))
    assert isinstance(coco, CocoDataset) and len(coco) == 2
    with pytest.raises(CfgError, match="no valid= entry"):
        open_dataset(DataConfig.from_file(tmp_path / "coco.data"), split="valid")
