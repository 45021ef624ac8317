"""Where labelled images come from: Darknet image lists with label files, or COCO json.

Training, evaluation and the tools read the same sources. Every entry is checked when the
dataset is opened, without decoding images, so that a bad entry is reported once with its file
and line and skipped instead of failing mid-run. Images are decoded only when a sample is made
(``train.samples.TrainingSamples`` for training).
"""
from __future__ import annotations

import logging
import math
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cfg import MAX_TEXT_BYTES, read_data_file, read_text
from .coco_instances import read_coco
from .datafile import resolve
from .errors import CfgError, DarknetError
from .files import kind_of, read_regular
from .image import load_image

log = logging.getLogger(__name__)
F32 = np.float32

# fill_truth_detection's find_replace calls (first occurrence, anywhere in the path) ...
DARKNET_RULES = (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"),
                 (".jpg", ".txt"), (".png", ".txt"), (".JPG", ".txt"), (".JPEG", ".txt"))
# ... then AlexeyAB's other image types, replaced only at the end of the path.
EXTENSIONS = (".jpeg", ".bmp", ".tiff", ".tif", ".webp", ".ppm",
              ".PNG", ".BMP", ".TIFF", ".TIF", ".WEBP", ".PPM")
INTEGER = re.compile(r"[+-]?[0-9]+")


def find_replace(text: str, find: str, replace: str) -> str:
    """Darknet's ``find_replace``: the first occurrence only."""
    return text.replace(find, replace, 1)


def label_path(image_path) -> Path:
    """The label file Darknet reads for an image; a path no rule changes has none."""
    original = os.fspath(image_path)
    path = original
    for find, replace in DARKNET_RULES:
        path = find_replace(path, find, replace)
    for ext in EXTENSIONS:
        if path.endswith(ext):
            path = path[:-len(ext)] + ".txt"
    if path == original:
        raise DarknetError(f"{original}: no images->labels rule applies (the path has no "
                           f"images/JPEGImages/raw folder and no known image extension)")
    return Path(path)


@dataclass(frozen=True)
class Problem:
    """One reason an entry (or part of it) cannot be used; ``line`` is 1-based or None."""
    path: str
    line: int | None
    reason: str
    detail: str = ""

    def __str__(self):
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


class Problems:
    """Entries that cannot be used: each is logged once, and ``summary`` counts them."""

    def __init__(self, known: "Problems | None" = None):
        """``known``: problems reported elsewhere already (the training list's, when the
        validation list is read): counted here, not logged again."""
        self.items: list[Problem] = []
        self._seen: set[Problem] = set()
        self._skipped: set[str] = set()
        self._known = known

    def add(self, path, line, reason: str, detail: str = "", skipped=True) -> None:
        """Record a problem; ``skipped`` names the entry it costs (default: ``path``), or is
        False when the entry stays usable."""
        problem = Problem(str(path), line, reason, detail)
        if skipped:
            self._skipped.add(str(path) if skipped is True else str(skipped))
        if problem in self._seen:
            return
        self._seen.add(problem)
        self.items.append(problem)
        if self._known is None or problem not in self._known._seen:
            log.warning("%s", problem)

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def summary(self) -> str:
        """Entries skipped and problems per reason; empty when there were none."""
        if not self.items:
            return ""
        counts = Counter(p.reason for p in self.items)
        lines = [f"{len(self._skipped)} entries skipped; problems by reason:"]
        lines += [f"  {reason}: {count}" for reason, count in counts.most_common()]
        return "\n".join(lines)


def check_image_file(path: Path, problems: Problems) -> bool:
    """Exists, is a regular file and is not empty; decoding waits until the sample is made."""
    try:
        info = path.stat()
    except OSError:
        problems.add(path, None, "missing image")
        return False
    if not stat.S_ISREG(info.st_mode):
        problems.add(path, None, "not a regular file", kind_of(info.st_mode))
        return False
    if info.st_size == 0:
        problems.add(path, None, "empty image file")
        return False
    return True


def label_line_problem(fields: list[str], classes: int) -> tuple[str, str] | None:
    """What is wrong with a label line, as (reason, detail); None for a good ``class cx cy w h``."""
    if len(fields) != 5:
        return "wrong column count", f"{len(fields)} columns, want 5: class cx cy w h"
    if not INTEGER.fullmatch(fields[0]):
        return "bad class", f"'{fields[0]}' is not an integer"
    cls = int(fields[0])
    if not 0 <= cls < classes:
        return "bad class", f"{cls} is not in [0, {classes})"
    try:
        cx, cy, w, h = (float(v) for v in fields[1:])
    except ValueError:
        return "not a finite number", " ".join(fields[1:])
    if not all(math.isfinite(v) for v in (cx, cy, w, h)):
        return "not a finite number", " ".join(fields[1:])
    wrong = [f"{name}={value:g}" for name, value, ok in (
        ("cx", cx, 0 <= cx <= 1), ("cy", cy, 0 <= cy <= 1), ("w", w, 0 < w <= 1), ("h", h, 0 < h <= 1))
        if not ok]
    if wrong:
        return "out of range", ", ".join(wrong) + " (want 0 <= cx, cy <= 1 and 0 < w, h <= 1)"
    if F32(w) == 0 or F32(h) == 0:  # held as float32, 1e-320 is a box of no size
        return "out of range", f"w={w:g}, h={h:g}: a size that float32 holds as 0"
    return None


def read_label_file(path: Path, classes: int, problems: Problems, entry: Path):
    """The (n, 5) boxes of a label file, or None when any line is bad (all are reported)."""
    try:  # a FIFO or a device is refused, not read; a BOM from Windows editors is tolerated
        text = read_regular(path, DarknetError, "label file", MAX_TEXT_BYTES).decode("utf-8-sig")
    except (DarknetError, UnicodeDecodeError) as e:
        problems.add(path, None, "unreadable label file", str(e), skipped=entry)
        return None
    boxes, bad = [], False
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        problem = label_line_problem(fields, classes)
        if problem:
            problems.add(path, number, *problem, skipped=entry)
            bad = True
        else:
            boxes.append([float(v) for v in fields])
    if bad:
        return None
    if not boxes:
        problems.add(path, None, "no boxes", skipped=entry)
        return None
    return np.array(boxes, dtype=F32)


class _Samples:
    """The API both sources share: ``len``, ``paths``, ``load(i)``."""

    def __init__(self):
        self.paths: list[Path] = []
        self._boxes: list[np.ndarray] = []

    def __len__(self):
        return len(self.paths)

    def load(self, i: int):
        """(image float32 (3, h, w) RGB in [0, 1], boxes float32 (n, 5) [class, cx, cy, w, h])."""
        return load_image(self.paths[i]), self.boxes(i)  # truncated or corrupt: ImageError

    def boxes(self, i: int) -> np.ndarray:
        """The (n, 5) label boxes of sample ``i``, without decoding its image."""
        return self._boxes[i].copy()


class DarknetList(_Samples):
    """An image list (``train=`` of a .data file) whose labels follow the images->labels rule."""

    def __init__(self, list_file, classes: int, problems: Problems):
        super().__init__()
        self.list_file = Path(list_file)
        for number, listed, entry in self._entries():
            if entry is None:
                problems.add(self.list_file, number, "missing image", listed,
                             skipped=f"{self.list_file}:{number}")
                continue
            boxes = self._check(entry, classes, problems)
            if boxes is not None:
                self.paths.append(entry)
                self._boxes.append(boxes)

    def _entries(self):
        """(line number, text, path) of each listed image, a relative path found from the cwd
        first, then the list's folder; the path is None where neither has the file."""
        lines = read_text(self.list_file, "image list").splitlines()
        for number, line in enumerate(lines, 1):
            listed = line.strip()
            if not listed:
                continue
            path = Path(listed)
            candidates = (path,) if path.is_absolute() else (path, self.list_file.parent / path)
            yield number, listed, next((c for c in candidates if c.exists()), None)

    @staticmethod
    def _check(image: Path, classes: int, problems: Problems):
        if not check_image_file(image, problems):
            return None
        try:
            labels = label_path(image)
        except DarknetError:
            problems.add(image, None, "no label path", "no images->labels rule changes this path")
            return None
        if not labels.is_file():
            if labels.exists():  # a FIFO, device or folder: refused, never read
                problems.add(labels, None, "label file not a regular file", kind_of(labels.stat().st_mode),
                             skipped=image)
            else:
                problems.add(labels, None, "missing label file", skipped=image)
            return None
        return read_label_file(labels, classes, problems, image)


class CocoDataset(_Samples):
    """A COCO instances json; classes are the categories in id order, or by ``names``."""

    def __init__(self, json_file, image_dir, problems: Problems, names=None):
        super().__init__()
        self.json_file, self.image_dir = Path(json_file), Path(image_dir)
        coco = read_coco(self.json_file, problems)  # malformed entries reported there, with their index
        self.class_of = self._classes(coco.categories, names)
        self.classes = len(names) if names is not None else len(self.class_of)
        for image in sorted(coco.images, key=lambda im: im.id):
            path = self.image_dir / image.file_name
            if not check_image_file(path, problems):
                continue
            boxes = self._boxes_of(image, coco.boxes[image.id], path, problems)
            if not len(boxes):
                problems.add(path, None, "no boxes", f"images[{image.index}] (id {image.id})")
                continue
            self.paths.append(path)
            self._boxes.append(boxes)

    def _classes(self, categories: dict[int, str], names) -> dict[int, int]:
        ids = sorted(categories)
        if names is None:
            return {c: i for i, c in enumerate(ids)}
        index = {name: i for i, name in reversed(list(enumerate(names)))}
        missing = [categories[c] for c in ids if categories[c] not in index]
        if missing:
            raise CfgError(f"categories not in the names list: {', '.join(missing)}", file=str(self.json_file))
        return {c: index[categories[c]] for c in ids}

    def _boxes_of(self, image, boxes, path, problems) -> np.ndarray:
        """Pixel [x, y, w, h] -> relative [class, cx, cy, w, h], clipped to the image (crowd
        regions were left out by read_coco); a box with nothing inside the image is reported."""
        width, height = float(image.width), float(image.height)
        out = []
        for box in boxes:
            x, y, w, h = box.bbox
            x0, x1 = min(max(x, 0.0), width), min(max(x + w, 0.0), width)
            y0, y1 = min(max(y, 0.0), height), min(max(y + h, 0.0), height)
            if not (F32((x1 - x0) / width) > 0 and F32((y1 - y0) / height) > 0):  # held as float32
                problems.add(self.json_file, None, "degenerate box",
                             f"annotations[{box.index}]: bbox {list(box.bbox)} has no area inside the {image.width} x "
                             f"{image.height} image {path.name}", skipped=f"{self.json_file}:annotations[{box.index}]")
                continue
            out.append((self.class_of[box.category_id], (x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
                        (x1 - x0) / width, (y1 - y0) / height))
        return np.array(out, dtype=F32).reshape(-1, 5)


def open_dataset(data_config, split: str = "train", problems: Problems | None = None):
    """The ``train=`` (or ``valid=``) source of a .data file: a COCO json (its images in the
    folder of an ``images=`` key, else next to the json) or a Darknet image list."""
    problems = Problems() if problems is None else problems
    value = getattr(data_config, split)
    if not value:
        raise CfgError(f"no {split}= entry", file=str(data_config.path))
    path = resolve(value, data_config.path)
    if path.suffix.lower() == ".json":
        images = read_data_file(data_config.path).get("images")
        image_dir = resolve(images, data_config.path) if images else path.parent
        source = CocoDataset(path, image_dir, problems)
        if source.classes > data_config.classes:
            raise CfgError(f"{path} has {source.classes} categories, classes={data_config.classes}",
                           file=str(data_config.path))
    else:
        source = DarknetList(path, data_config.classes, problems)
    (log.warning if len(problems) else log.info)("%s: %d samples; %s", path, len(source),
                                                 problems.summary() or "no problems")
    if not len(source):
        raise CfgError(f"{path}: no usable samples", file=str(data_config.path))
    return source
