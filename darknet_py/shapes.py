"""A generated detection dataset ("shapes") in Darknet's layout, with a COCO copy of its labels.

Small, deterministic and quick to make, so training and mAP code can be exercised end to end
with nothing downloaded. Each image is drawn from its own generator, seeded by (seed, index),
so an image does not depend on how many others are made. Shapes are filled polygons drawn
without anti-aliasing in one flat colour each, so a shape's pixels are exactly known before
JPEG; a label is the tight box of the whole drawn shape (also where a later shape covers part
of it) clipped to the image. COCO ``image_id`` is the number in the file name (000001.jpg is
id 1), as Darknet's COCO-results writer reads it; ``area`` is the box's area.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import DarknetError

log = logging.getLogger(__name__)

CLASSES = ("circle", "square", "triangle", "star", "cross")
JPEG_QUALITY = 95
MIN_VISIBLE = 0.4       # of a shape's in-image pixels, left uncovered by later shapes
MIN_INSIDE = 0.7        # of a shape's pixels, inside the image
BACKGROUND_DISTANCE = 120.0  # RGB distance from a shape's colour to the background's colours
SHAPE_DISTANCE = 60.0        # ... and to the other shapes' colours in the image
PLACEMENT_TRIES = 20


@dataclass
class Shape:
    """One drawn object: its class, colour (BGR) and box (x0, y0, x1, y1 in pixels, x1 and y1
    exclusive), clipped to the image."""

    cls: int
    colour: tuple[int, int, int]
    box: tuple[int, int, int, int]


def _outline(cls: int) -> np.ndarray:
    """The class's polygon around (0, 0), radius 1."""
    name = CLASSES[cls]
    if name == "circle":
        a = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], 1)
    if name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) / np.sqrt(2)
    if name == "triangle":
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1)
    if name == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    arm = 0.3  # cross: a plus sign with arms 0.3 wide
    pts = [(arm, 1), (arm, arm), (1, arm), (1, -arm), (arm, -arm), (arm, -1)]
    pts += [(-x, -y) for x, y in pts]
    return np.array(pts, float) / np.hypot(1, arm)


def _shape_mask(rng, cls: int, size: int):
    """A random placement of a class's shape: (mask, x, y) with the mask's top-left corner at
    (x, y) in image pixels (possibly outside the image)."""
    radius = rng.uniform(0.08, 0.5) * size / 2
    centre = rng.uniform(radius * 0.4, size - radius * 0.4, 2)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = _outline(cls) @ rotation.T * radius + centre
    origin = np.floor(points.min(0)).astype(int) - 1
    extent = np.ceil(points.max(0)).astype(int) + 2 - origin
    mask = np.zeros((extent[1], extent[0]), np.uint8)
    fixed = np.round((points - origin) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool), int(origin[0]), int(origin[1])


def _clip(mask: np.ndarray, x: int, y: int, size: int):
    """The part of a mask inside the image, and the image slices it covers."""
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, size), min(y + h, size)
    if x0 >= x1 or y0 >= y1:
        return None, None
    return mask[y0 - y:y1 - y, x0 - x:x1 - x], (slice(y0, y1), slice(x0, x1))


def _tight_box(mask: np.ndarray, region) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (region[1].start + int(cols[0]), region[0].start + int(rows[0]),
            region[1].start + int(cols[-1]) + 1, region[0].start + int(rows[-1]) + 1)


def _pick_colour(rng, avoid_background, avoid_shapes) -> tuple[int, int, int]:
    """A colour far from the background's colours and from the image's other shapes: of 64
    candidates the first that qualifies, else the one farthest from the background."""
    candidates = rng.integers(0, 256, (64, 3)).astype(float)

    def distance(colours):
        if not len(colours):
            return np.full(len(candidates), np.inf)
        return np.linalg.norm(candidates[:, None] - np.asarray(colours, float)[None], axis=2).min(1)

    to_background, to_shapes = distance(avoid_background), distance(avoid_shapes)
    good = np.flatnonzero((to_background >= BACKGROUND_DISTANCE) & (to_shapes >= SHAPE_DISTANCE))
    best = good[0] if len(good) else int(np.argmax(to_background))
    return tuple(int(v) for v in candidates[best])


def _background(rng, size: int):
    """A flat, gradient, noisy, blotchy or lined background, and the colours it is made of.
    Smooth ones are small grids of colours enlarged bilinearly, which is quick."""
    base = rng.integers(0, 256, 3).astype(float)
    kind = rng.integers(5)
    colours = [base]
    if kind == 1:  # a linear ramp in a random direction, towards a nearby colour
        other = np.clip(base + rng.uniform(-60, 60, 3), 0, 255)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * np.arange(4)[None, :] + np.sin(angle) * np.arange(4)[:, None]
        t = (ramp - ramp.min()) / np.ptp(ramp)
        grid = base + t[..., None] * (other - base)
        colours = [base, (base + other) / 2, other]
    elif kind == 3:  # low-frequency blotches
        grid = np.clip(base + rng.uniform(-35, 35, (8, 8, 3)), 0, 255)
    else:
        grid = base[None, None]
    image = cv2.resize(np.round(grid).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    if kind == 2:  # per-pixel noise, triangular in -31..31
        noise = np.frombuffer(rng.bytes(2 * size * size * 3), np.uint8).reshape(2, size, size, 3) >> 3
        image = cv2.subtract(cv2.add(image, noise[0]), noise[1])
    if kind == 4:  # random lines in colours near the base
        for _ in range(rng.integers(5, 20)):
            colour = tuple(int(v) for v in np.clip(base + rng.uniform(-45, 45, 3), 0, 255))
            p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
            cv2.line(image, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), colour,
                     int(rng.integers(1, 4)), cv2.LINE_8)
    return image, colours


def render_image(seed: int, index: int, size: int = 256):
    """Image ``index`` of the dataset made with ``seed``: (BGR uint8 image before JPEG, shapes)."""
    rng = np.random.default_rng([seed, index])
    image, background = _background(rng, size)
    owner = np.full((size, size), -1, np.int16)  # which shape shows at each pixel
    shapes, area, visible = [], [], []
    for _ in range(rng.integers(1, 7)):
        cls = int(rng.integers(len(CLASSES)))
        placed = _place(rng, cls, size, owner, area, visible)
        if placed is None:
            continue
        inside, region, covered = placed
        for j, n in enumerate(covered):
            visible[j] -= n
        colour = _pick_colour(rng, background, [s.colour for s in shapes])
        owner[region][inside] = len(shapes)
        image[region][inside] = colour
        shapes.append(Shape(cls, colour, _tight_box(inside, region)))
        area.append(int(inside.sum()))
        visible.append(area[-1])
    return image, shapes


def _place(rng, cls: int, size: int, owner, area, visible):
    """A placement of a new shape mostly inside the image that leaves every earlier shape at
    least MIN_VISIBLE uncovered: (mask inside the image, its slices, pixels it takes from each
    earlier shape), or None after PLACEMENT_TRIES."""
    for _ in range(PLACEMENT_TRIES):
        mask, x, y = _shape_mask(rng, cls, size)
        inside, region = _clip(mask, x, y, size)
        if inside is None or inside.sum() < MIN_INSIDE * mask.sum():
            continue
        box = _tight_box(inside, region)
        if min(box[2] - box[0], box[3] - box[1]) < 3:
            continue
        covered = np.bincount(owner[region][inside] + 1, minlength=len(area) + 1)[1:]
        if all(v - c >= MIN_VISIBLE * a for v, c, a in zip(visible, covered, area)):
            return inside, region, covered
    return None


def _label_lines(shapes, size: int) -> str:
    """Darknet label lines: class and box centre, width, height relative to the image."""
    lines = []
    for s in shapes:
        x0, y0, x1, y1 = s.box
        lines.append("%d %.6f %.6f %.6f %.6f" % (s.cls, (x0 + x1) / 2 / size, (y0 + y1) / 2 / size,
                                                (x1 - x0) / size, (y1 - y0) / size))
    return "".join(line + "\n" for line in lines)


def _coco_annotations(image_id: int, shapes, first_id: int) -> list[dict]:
    out = []
    for k, s in enumerate(shapes):
        x0, y0, x1, y1 = s.box
        out.append({"id": first_id + k, "image_id": image_id, "category_id": s.cls + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    return out


def _write_lists(out: Path, n: int, n_valid: int) -> tuple[Path, Path]:
    """train.txt of images 1..n and, when ``n_valid`` > 0, valid.txt of the images after them
    (absolute paths); without a validation set, valid= is the training list, as Darknet's default."""
    paths = [str((out / "images" / f"{i + 1:06d}.jpg").resolve()) for i in range(n + n_valid)]
    train = out / "train.txt"
    train.write_text("".join(p + "\n" for p in paths[:n]))
    if not n_valid:
        return train, train
    valid = out / "valid.txt"
    valid.write_text("".join(p + "\n" for p in paths[n:]))
    return train, valid


BLOCK = 4096  # a file takes whole blocks of the file system
SAMPLE = 8  # images rendered to estimate the size of all


def _check_room(out: Path, seed: int, size: int, count: int) -> None:
    """Refuse before writing anything an image side over the memory budget, or ``count`` images
    (and their labels) that would not fit on the disk holding ``out``, as estimated from the
    first few with a margin of a half."""
    from .image import max_pixels
    if size * size > max_pixels():
        raise DarknetError(f"{out}: {size}x{size} images are over the memory budget of {max_pixels()} pixels "
                           "per image (DARKNET_PY_MAX_BYTES raises it)")
    sample = [render_image(seed, i, size) for i in range(min(SAMPLE, count))]
    per_image = np.mean([-(-len(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1])
                           // BLOCK) * BLOCK + BLOCK for image, _ in sample])
    need = int(1.5 * per_image * count)
    existing = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise DarknetError(f"{out}: {count} images of {size}x{size} need about {need / 2**20:.0f} MiB with "
                           f"their labels; {free / 2**20:.0f} MiB are free there")


def generate_shapes(out_dir, n: int, seed: int, size: int = 256, n_valid: int = 0) -> Path:
    """Write ``n`` training images and ``n_valid`` validation images after them (numbered on,
    so the training images do not depend on ``n_valid``) with labels, lists, names, a .data
    file and annotations.json under ``out_dir``; returns the .data file's path. Same seed,
    same bytes (list and .data files hold absolute paths, so those match only in the same
    folder)."""
    if n < 1 or n_valid < 0:
        raise ValueError(f"need n >= 1 training images and n_valid >= 0, got {n} and {n_valid}")
    out = Path(out_dir).resolve()
    _check_room(out, seed, size, n + n_valid)
    for folder in ("images", "labels", "backup"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n + n_valid):
        image, shapes = render_image(seed, i, size)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode image {i} as JPEG")
        (out / "images" / f"{i + 1:06d}.jpg").write_bytes(jpeg.tobytes())
        (out / "labels" / f"{i + 1:06d}.txt").write_text(_label_lines(shapes, size))
        images.append({"id": i + 1, "file_name": f"{i + 1:06d}.jpg", "width": size, "height": size})
        annotations += _coco_annotations(i + 1, shapes, len(annotations) + 1)
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (out / "annotations.json").write_text(json.dumps(coco))
    names = out / "shapes.names"
    names.write_text("".join(name + "\n" for name in CLASSES))
    train, valid = _write_lists(out, n, n_valid)
    data = out / "shapes.data"
    data.write_text(f"classes={len(CLASSES)}\ntrain={train}\nvalid={valid}\nnames={names}\n"
                    f"backup={out / 'backup'}\n")
    log.info("wrote %d + %d shapes images (%d objects) to %s", n, n_valid, len(annotations), out)
    return data
