"""COCO results: the one writer of ``{"image_id", "category_id", "bbox", "score"}`` records and
the one rule that gives images their ids. ``detect --json``, ``detector valid`` and
``Detections.to_coco`` all go through here.

Image ids: a COCO instances file, when given, decides by file name. Otherwise, when every input
is an image whose name ends in a number (``COCO_val2014_000000000042.jpg`` -> 42,
``000001.jpg`` -> 1) and those numbers are distinct, the number, as Darknet's
``validate_detector`` reads COCO's names; in every other case consecutive ids 1, 2, 3, ... in
processing order (a video's frames each take one). So ids never collide.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .coco_instances import read_coco
from .errors import DarknetError

# validate_detector's map from the 80 COCO classes to COCO's category ids (its coco_ids).
COCO_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
            28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
            54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
            81, 82, 84, 85, 86, 87, 88, 89, 90]

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def name_number(path) -> int | None:
    """The number a file name ends with, before the extension (``..._000000000042.jpg`` -> 42)."""
    match = _TRAILING_NUMBER.search(Path(path).stem)
    return int(match.group(1)) if match else None


def numbered_ids(paths) -> list[int] | None:
    """The file names' numbers when every path has one and no two are equal, else None."""
    numbers = [name_number(p) for p in paths]
    if not numbers or None in numbers or len(set(numbers)) != len(numbers):
        return None
    return numbers


def image_ids(paths, ground_truth=None) -> list[int]:
    """Ids of the images ``paths`` (the module's rule): by file name from a COCO instances file,
    else the names' numbers if all have distinct ones, else 1..N."""
    if ground_truth is not None:
        by_name = {Path(im.file_name).name: im.id for im in read_coco(ground_truth).images}
        missing = [str(p) for p in paths if Path(p).name not in by_name]
        if missing:
            raise DarknetError(f"{missing[0]}: not in {ground_truth}"
                               + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return [by_name[Path(p).name] for p in paths]
    return numbered_ids(paths) or list(range(1, len(paths) + 1))


def category_ids(classes: int, ground_truth=None, coco_eval: bool = False) -> list[int] | None:
    """Class index -> category id: a COCO file's categories in sorted id order (as CocoDataset
    reads them), Darknet's ``coco_ids`` for an 80-class COCO network (``eval=coco``), else None
    (the class index itself)."""
    if ground_truth is not None:
        return sorted(read_coco(ground_truth).categories)
    if coco_eval and classes == len(COCO_IDS):
        return COCO_IDS
    return None


def coco_records(image_id: int, boxes, classes, scores, width: int, height: int, category_ids=None,
                 extra: dict | None = None) -> list[dict]:
    """One record per (box, class): ``boxes`` (k, 4) Darknet's relative centre x, y, w, h;
    ``bbox`` is [left, top, width, height] in pixels with the corners clamped to the image (both
    ways, so that a box wholly outside gets size 0 where Darknet writes a negative one);
    ``extra`` keys (file name, frame) are added to every record."""
    records = []
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    for (cx, cy, bw, bh), cls, score in zip(b.tolist(), np.asarray(classes).tolist(), np.asarray(scores).tolist()):
        x0, x1 = min(max((cx - bw / 2) * width, 0.0), width), min(max((cx + bw / 2) * width, 0.0), width)
        y0, y1 = min(max((cy - bh / 2) * height, 0.0), height), min(max((cy + bh / 2) * height, 0.0), height)
        category = int(cls) if category_ids is None else int(category_ids[int(cls)])
        records.append({"image_id": int(image_id), "category_id": category,
                        "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                        "score": round(float(score), 6), **(extra or {})})
    return records
