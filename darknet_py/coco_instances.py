"""COCO instances json read entry by entry, as Darknet image lists are read line by line.

Every malformed entry (an image without a usable ``width``, a ``bbox`` of three numbers, a
string or null where a number belongs), every duplicate ``id`` and every annotation of an
image the file does not list is reported with its JSON index and field, skipped and counted
(``Problems``); only a file that is not a COCO json at all is refused (CfgError with the line).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from .cfg import MAX_TEXT_BYTES
from .errors import CfgError
from .files import read_regular

MAX_JSON_BYTES = 64 * MAX_TEXT_BYTES  # COCO 2017's train json is 448 MB
log = logging.getLogger(__name__)


class _Logged:
    """Problems that are only logged (a ground truth read for its ids, not for training)."""

    def add(self, path, line, reason, detail="", skipped=True):
        log.warning("%s: %s (%s); skipped", path, reason, detail)


@dataclass(frozen=True)
class CocoImage:
    index: int  # position in "images"
    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class CocoBox:
    index: int  # position in "annotations"
    id: object
    category_id: int
    bbox: tuple[float, float, float, float]  # pixels: x, y, w, h


@dataclass
class CocoFile:
    path: Path
    images: list[CocoImage] = field(default_factory=list)
    boxes: dict[int, list[CocoBox]] = field(default_factory=dict)  # image id -> its non-crowd boxes
    categories: dict[int, str] = field(default_factory=dict)  # id -> name


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_json(path) -> dict:
    """The json object of a COCO file; refused (CfgError, with the line) when it is not one."""
    path = Path(path)
    data = read_regular(path, lambda m: CfgError(m, file=str(path)), "COCO json file", MAX_JSON_BYTES)
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise CfgError(f"byte {e.start} is not text (UTF-8 expected)", file=str(path),
                       line=data.count(b"\n", 0, e.start) + 1) from None
    except json.JSONDecodeError as e:
        raise CfgError(f"not valid json: {e.msg} (column {e.colno})", file=str(path), line=e.lineno) from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise CfgError(f"not valid json: {e}", file=str(path)) from None
    except RecursionError:
        raise CfgError("json nested too deeply", file=str(path)) from None
    if not isinstance(document, dict):
        raise CfgError(f"a COCO json is an object with images, annotations and categories, not a "
                       f"{type(document).__name__}", file=str(path))
    for key in ("images", "annotations", "categories"):
        if key in document and not isinstance(document[key], list):
            raise CfgError(f"'{key}' must be a list, got {_describe(document[key])}", file=str(path))
    for key in ("images", "categories"):
        if key not in document:
            raise CfgError(f"no '{key}' list: not a COCO instances json", file=str(path))
    return document


def read_coco(path, problems=None) -> CocoFile:
    """Images, their boxes and the categories of a COCO instances json; ``problems`` (a
    datasets.Problems; default: a warning each) gets every entry that cannot be used."""
    path = Path(path)
    problems = _Logged() if problems is None else problems
    document = load_json(path)
    coco = CocoFile(path)

    def report(key, index, reason, detail):
        problems.add(path, None, reason, f"{key}[{index}]: {detail}", skipped=f"{path}:{key}[{index}]")

    for i, entry in enumerate(document["categories"]):
        problem = _category_problem(entry)
        if problem is None and entry["id"] in coco.categories:
            problem = "duplicate id", f"id {entry['id']} is listed before"
        if problem:
            report("categories", i, *problem)
            continue
        coco.categories[entry["id"]] = entry["name"]

    listed: dict[int, int] = {}  # image id -> index of its first entry
    for i, entry in enumerate(document["images"]):
        problem = _image_problem(entry)
        if problem is None and entry["id"] in listed:
            problem = "duplicate id", f"id {entry['id']} is the id of images[{listed[entry['id']]}]; this one is skipped"
        if problem:
            report("images", i, *problem)
            if isinstance(entry, dict) and _integer(entry.get("id")):
                listed.setdefault(entry["id"], -1)  # its annotations are not orphans, only unusable
            continue
        listed[entry["id"]] = i
        coco.images.append(CocoImage(i, entry["id"], entry["file_name"], int(entry["width"]), int(entry["height"])))
        coco.boxes[entry["id"]] = []

    annotation_ids: dict = {}
    for i, entry in enumerate(document.get("annotations", [])):
        problem = _annotation_problem(entry, coco.categories)
        if problem is None and entry.get("id") is not None:
            first = annotation_ids.setdefault(_hashable(entry["id"]), i)
            if first != i:
                problem = "duplicate id", f"id {_describe(entry['id'])} is the id of annotations[{first}]"
        if problem is None and entry["image_id"] not in coco.boxes:
            problem = (("annotation of a skipped image", f"image_id {entry['image_id']} was skipped")
                       if entry["image_id"] in listed else
                       ("orphan annotation", f"image_id {entry['image_id']} is in no images entry"))
        if problem:
            report("annotations", i, *problem)
            continue
        if entry.get("iscrowd", 0):
            continue  # crowd regions are not objects
        coco.boxes[entry["image_id"]].append(CocoBox(i, entry.get("id"), entry["category_id"],
                                                     tuple(float(v) for v in entry["bbox"])))
    return coco


def _hashable(value):
    return json.dumps(value, sort_keys=True)


def _category_problem(entry):
    if not isinstance(entry, dict):
        return "malformed category", f"expected an object, got {_describe(entry)}"
    if not _integer(entry.get("id")):
        return "malformed category", f"field 'id': {_missing_or(entry, 'id')}, expected an integer"
    if not isinstance(entry.get("name"), str) or not entry["name"].strip():
        return "malformed category", f"field 'name': {_missing_or(entry, 'name')}, expected a non-empty string"
    return None


def _image_problem(entry):
    if not isinstance(entry, dict):
        return "malformed image", f"expected an object, got {_describe(entry)}"
    if not _integer(entry.get("id")):
        return "malformed image", f"field 'id': {_missing_or(entry, 'id')}, expected an integer"
    name = entry.get("file_name")
    if not isinstance(name, str) or not name or "\x00" in name:
        return "malformed image", f"field 'file_name': {_missing_or(entry, 'file_name')}, expected a file name"
    for key in ("width", "height"):
        value = entry.get(key)
        if not (_number(value) and value == int(value) and value >= 1):
            return "malformed image", f"field '{key}': {_missing_or(entry, key)}, expected a positive integer"
    return None


def _annotation_problem(entry, categories):
    if not isinstance(entry, dict):
        return "malformed annotation", f"expected an object, got {_describe(entry)}"
    if not _integer(entry.get("image_id")):
        return "malformed annotation", f"field 'image_id': {_missing_or(entry, 'image_id')}, expected an integer"
    if entry.get("iscrowd", 0) not in (0, 1) or isinstance(entry.get("iscrowd", 0), bool):
        return "malformed annotation", f"field 'iscrowd': {_describe(entry['iscrowd'])}, expected 0 or 1"
    if entry.get("iscrowd", 0):
        return None  # crowd regions are ignored whatever their box (RLE segmentation, no bbox)
    if not _integer(entry.get("category_id")):
        return "malformed annotation", f"field 'category_id': {_missing_or(entry, 'category_id')}, expected an integer"
    if entry["category_id"] not in categories:
        return "unknown category", f"field 'category_id': {entry['category_id']} is in no categories entry"
    bbox = entry.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
        return "malformed annotation", f"field 'bbox': {_missing_or(entry, 'bbox')}, expected [x, y, width, height]"
    if not (bbox[2] > 0 and bbox[3] > 0):
        return "degenerate box", f"field 'bbox': {_describe(bbox)}, width and height must be positive"
    return None


def _missing_or(entry: dict, key: str) -> str:
    return "missing" if key not in entry else _describe(entry[key])
