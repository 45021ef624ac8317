"""COCO instances json read like a Darknet list: every malformed image or annotation entry is
reported with its JSON index and field, skipped and counted; duplicate ids and orphan
annotations reported; only a file that is no COCO json at all is refused (CfgError, with the
line of a syntax error)."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from darknet_py.coco_instances import read_coco
from darknet_py.datasets import CocoDataset, Problems
from darknet_py.errors import CfgError

from hostile import count, make_fifo, no_hang

SCALE = float(os.environ.get("DARKNET_PY_FUZZ_EXAMPLES", "1"))
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def good_document():
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 20},
                   {"id": 2, "file_name": "b.jpg", "width": 30, "height": 30}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 4, "name": "dog"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 3, "bbox": [4, 2, 20, 10], "iscrowd": 0},
                        {"id": 11, "image_id": 2, "category_id": 4, "bbox": [1, 1, 5, 5], "iscrowd": 0}],
    }


@pytest.fixture
def folder(tmp_path):
    for name, (w, h) in (("a.jpg", (40, 20)), ("b.jpg", (30, 30))):
        cv2.imwrite(str(tmp_path / name), np.full((h, w, 3), 128, np.uint8))
    return tmp_path


def write(folder, document) -> str:
    path = folder / "instances.json"
    path.write_text(json.dumps(document))
    return path


def image(**change):
    entry = {"id": 1, "file_name": "a.jpg", "width": 40, "height": 20}
    entry.update(change)
    return {k: v for k, v in entry.items() if v is not ...}


def ann(**change):
    entry = {"id": 99, "image_id": 1, "category_id": 3, "bbox": [4, 2, 20, 10], "iscrowd": 0}
    entry.update(change)
    return {k: v for k, v in entry.items() if v is not ...}


BAD_IMAGES = {  # the malformed images[0] entry, and the text its report holds
    "width missing": (image(width=...), "field 'width': missing"),
    "width a string": (image(width="40"), "field 'width': \"40\""),
    "width zero": (image(width=0), "field 'width': 0"),
    "width negative": (image(height=-20), "field 'height': -20"),
    "width fractional": (image(width=40.5), "field 'width': 40.5"),
    "id null": (image(id=None), "field 'id': null"),
    "id a bool": (image(id=True), "field 'id': true"),
    "file_name missing": (image(file_name=...), "field 'file_name': missing"),
    "file_name a number": (image(file_name=7), "field 'file_name': 7"),
    "not an object": ([1, 2], "expected an object"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_a_malformed_image_entry_is_reported_with_index_and_field(folder, name):
    entry, text = BAD_IMAGES[name]
    document = good_document()
    document["images"][0] = entry
    problems = Problems()
    data = CocoDataset(write(folder, document), folder, problems)
    reports = [str(p) for p in problems]
    assert any("images[0]: " + text in r for r in reports), reports
    assert [p.name for p in data.paths] == ["b.jpg"]  # the good one is kept
    assert "entries skipped" in problems.summary()


BAD_ANNOTATIONS = {
    "bbox of 3": (ann(bbox=[1, 2, 3]), "field 'bbox': [1, 2, 3]"),
    "bbox a string": (ann(bbox="1,2,3,4"), "field 'bbox': \"1,2,3,4\""),
    "bbox null": (ann(bbox=None), "field 'bbox': null"),
    "bbox missing": (ann(bbox=...), "field 'bbox': missing"),
    "bbox NaN": (ann(bbox=[1, 2, float("nan"), 4]), "field 'bbox': [1, 2, NaN, 4]"),
    "bbox with a bool": (ann(bbox=[1, 2, True, 4]), "field 'bbox'"),
    "negative width": (ann(bbox=[4, 2, -20, 10]), "field 'bbox': [4, 2, -20, 10], width and height must be positive"),
    "zero height": (ann(bbox=[4, 2, 20, 0]), "field 'bbox': [4, 2, 20, 0], width and height must be positive"),
    "outside the image": (ann(bbox=[100, 100, 5, 5]), "bbox [100.0, 100.0, 5.0, 5.0] has no area inside the 40 x 20 image"),
    "denormal width": (ann(bbox=[4, 2, 1e-320, 10]), "bbox [4.0, 2.0, 1e-320, 10.0] has no area inside"),
    "category unknown": (ann(category_id=99), "field 'category_id': 99 is in no categories entry"),
    "category a string": (ann(category_id="3"), "field 'category_id': \"3\""),
    "image_id missing": (ann(image_id=...), "field 'image_id': missing"),
    "orphan": (ann(image_id=77), "image_id 77 is in no images entry"),
    "iscrowd 2": (ann(iscrowd=2), "field 'iscrowd': 2"),
    "not an object": ("box", "expected an object"),
}


@pytest.mark.parametrize("name", sorted(BAD_ANNOTATIONS))
def test_a_malformed_annotation_is_reported_with_index_and_field(folder, name):
    entry, text = BAD_ANNOTATIONS[name]
    document = good_document()
    document["annotations"].insert(0, entry)
    document["annotations"][1]["bbox"] = [0, 0, 10, 10]  # a.jpg keeps a good box
    problems = Problems()
    data = CocoDataset(write(folder, document), folder, problems)
    reports = [str(p) for p in problems]
    assert any("annotations[0]: " + text in r for r in reports), reports
    assert len(data) == 2 and len(data.boxes(0)) == 1  # the bad box left out, nothing else


def test_duplicate_ids_and_orphans_are_reported(folder):
    document = good_document()
    document["images"].append({"id": 1, "file_name": "b.jpg", "width": 30, "height": 30})
    document["annotations"].append(ann(id=10, bbox=[0, 0, 4, 4]))
    document["annotations"].append(ann(id=12, image_id=5))
    document["categories"].append({"id": 3, "name": "bird"})
    problems = Problems()
    data = CocoDataset(write(folder, document), folder, problems)
    reports = [str(p) for p in problems]
    assert any("images[2]: id 1 is the id of images[0]" in r for r in reports), reports
    assert any("annotations[2]: id 10 is the id of annotations[0]" in r for r in reports), reports
    assert any("annotations[3]: image_id 5 is in no images entry" in r for r in reports), reports
    assert any("categories[2]: id 3 is listed before" in r for r in reports), reports
    assert len(data) == 2
    assert problems.summary().startswith("4 entries skipped")


@pytest.mark.parametrize("text,where", [
    ("", "instances.json:1:"), ("{", "instances.json:1:"), ('{"images": [}', "instances.json:1:"), ("[1, 2]", "not a list"),
    ('{"images": {}, "categories": []}', "'images' must be a list"), ('{"categories": []}', "no 'images' list"),
    ("\n\n{'a': 1}", "instances.json:3"), ('{"images": [' + "[" * 100000 + "]" * 100000 + "]}", "instances.json"),
    ('{"images": [{"id": ' + "9" * 5000 + "}]}", "instances.json"),
])
def test_a_file_that_is_not_coco_json_is_refused(folder, text, where):
    path = folder / "instances.json"
    path.write_text(text)
    with pytest.raises(CfgError) as e:
        read_coco(path, Problems())
    assert str(path) in str(e.value)
    assert where in str(e.value)


def test_non_regular_and_non_utf8_json_files_are_refused(folder):
    path = folder / "bad.json"
    path.write_bytes(b'{"images": [], "categories": [{"name": "\xff"}]}')
    with pytest.raises(CfgError, match="UTF-8"):
        read_coco(path, Problems())
    with no_hang(10), pytest.raises(CfgError, match="FIFO"):
        read_coco(make_fifo(folder / "fifo.json"), Problems())


@st.composite
def mutated_document(draw):
    document = good_document()
    values = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**20), st.floats(allow_nan=True),
                       st.text(max_size=5), st.lists(st.integers(-5, 50), max_size=5), st.just({}))
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(["images", "annotations", "categories"]))
        entries = document[key]
        if not entries or draw(st.integers(0, 4)) == 0:
            entries.append(draw(values))
            continue
        i = draw(st.integers(0, len(entries) - 1))
        if isinstance(entries[i], dict) and entries[i] and draw(st.booleans()):
            field = draw(st.sampled_from(sorted(entries[i])))
            if draw(st.integers(0, 3)) == 0:
                del entries[i][field]
            else:
                entries[i][field] = draw(values)
        else:
            entries[i] = draw(values)
    return document


def test_fuzz_coco_entries(folder):
    """Mutated entries: the dataset opens (every bad entry reported, never an exception) and
    holds only boxes inside [0, 1] of known classes."""
    @settings(FUZZ, max_examples=max(1, int(200 * SCALE)))
    @given(mutated_document())
    def run(document):
        path = folder / "fuzzed.json"
        path.write_text(json.dumps(document))
        problems = Problems()
        count("coco entries", "tried")
        data = CocoDataset(path, folder, problems)
        for i in range(len(data)):
            boxes = data.boxes(i)
            assert len(boxes) and np.isfinite(boxes).all()
            assert (boxes[:, 1:] >= 0).all() and (boxes[:, 1:] <= 1).all() and (boxes[:, 3:] > 0).all()
            assert set(boxes[:, 0].astype(int)) <= set(range(data.classes))
        count("coco entries", "with problems" if len(problems) else "clean")

    run()
