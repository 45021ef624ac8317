"""Pictures: detections as Darknet's ``draw_detections`` draws them and training images with their
truth boxes (public: ``Detections.plot`` and the command line use them; ``class_colour`` and
``pixel_box`` are Darknet's colour and box rules). COCO records: :mod:`darknet_py.coco`."""
from __future__ import annotations

import math

import cv2
import numpy as np

# Darknet's get_color palette, indexed as it does: offset = class * 123457 % classes.
_COLORS = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]], np.float32)

def get_color(c: int, x: int, max_value: int) -> float:
    ratio = x / max_value * 5
    i, j = int(np.floor(ratio)), int(np.ceil(ratio))
    ratio -= i
    return float((1 - ratio) * _COLORS[i][c] + ratio * _COLORS[j % 6][c])


def class_colour(cls: int, classes: int) -> tuple[int, int, int]:
    """The BGR colour Darknet draws a class in: ``get_color`` at offset ``class * 123457 % classes``."""
    offset = cls * 123457 % classes
    rgb = [get_color(c, offset, classes) for c in (2, 1, 0)]
    return tuple(int(255 * v) for v in (rgb[2], rgb[1], rgb[0]))


def labels(det, thresh):
    """Per box: (index, [(class, prob), ...]) for classes above thresh, Darknet's order."""
    out = []
    for i in range(len(det)):
        hits = [(j, float(det.probs[i, j])) for j in np.flatnonzero(det.probs[i] > thresh)]
        if hits:
            out.append((i, hits))
    return out


def pixel_box(box, w, h):
    """Darknet's integer corners, clamped to the image."""
    x, y, bw, bh = (float(v) for v in box)
    left, right = int((x - bw / 2) * w), int((x + bw / 2) * w)
    top, bot = int((y - bh / 2) * h), int((y + bh / 2) * h)
    return max(left, 0), max(top, 0), min(right, w - 1), min(bot, h - 1)


def draw_detections(bgr: np.ndarray, det, thresh: float, names: list[str]) -> np.ndarray:
    """Boxes and "name, name" labels on a copy of a BGR uint8 image."""
    out = bgr.copy()
    h, w = out.shape[:2]
    classes = det.probs.shape[1]
    thickness = max(1, int(h * 0.006))
    for i, hits in labels(det, thresh):
        colour = class_colour(hits[0][0], classes)
        left, top, right, bot = pixel_box(det.boxes[i], w, h)
        cv2.rectangle(out, (left, top), (right, bot), colour, thickness)
        text = ", ".join(names[j] if j < len(names) else str(j) for j, _ in hits)
        scale = max(0.4, h / 1000)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        y0 = max(top - th - base, 0)
        cv2.rectangle(out, (left, y0), (left + tw, y0 + th + base), colour, -1)
        cv2.putText(out, text, (left, y0 + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def tile(images: list[np.ndarray], gap: int = 2) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Equal-sized BGR images in a near-square grid on white; returns it and each image's
    top-left (x, y)."""
    h, w = images[0].shape[:2]
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    origins = []
    for k, im in enumerate(images):
        x, y = (k % cols) * (w + gap), (k // cols) * (h + gap)
        canvas[y:y + h, x:x + w] = im
        origins.append((x, y))
    return canvas, origins


def to_bgr(image) -> np.ndarray:
    """A float (3, h, w) RGB image in [0, 1] -> uint8 BGR (h, w, 3)."""
    rgb = np.asarray(image, np.float32).transpose(1, 2, 0)
    return np.ascontiguousarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])


def batch_grid(images, truths, names: list[str], classes: int) -> np.ndarray:
    """Training images with their truth boxes (rows ``x, y, w, h, class, weight``, zero rows
    unused), each box in its class's Darknet colour with the class name: a BGR grid."""
    tiles = []
    for image, rows in zip(images, truths):
        bgr = to_bgr(image)
        h, w = bgr.shape[:2]
        for x, y, bw, bh, cls, _ in np.asarray(rows, np.float32).tolist():
            if bw <= 0 or bh <= 0:
                continue
            colour = class_colour(int(cls), classes)
            left, top, right, bot = pixel_box((x, y, bw, bh), w, h)
            cv2.rectangle(bgr, (left, top), (right, bot), colour, 1)
            name = names[int(cls)] if int(cls) < len(names) else str(int(cls))
            cv2.putText(bgr, name, (left + 2, min(top + 10, h - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1)
        tiles.append(bgr)
    return tile(tiles)[0]
