"""Annotated pictures as Darknet's ``draw_detections`` makes them (public: ``Detections.plot`` and the
command line use them; ``class_colour`` and ``pixel_box`` are Darknet's colour and box rules)."""
from __future__ import annotations

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
