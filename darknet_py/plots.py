"""Charts and image grids drawn with OpenCV (BGR uint8 arrays), shared by the tool verbs:
``plot-lr`` (the learning-rate schedule of a cfg) and ``show-batch`` (one augmented batch)."""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from .draw import class_colour, pixel_box

log = logging.getLogger(__name__)

BLACK, GRID = (0, 0, 0), (220, 220, 220)
CURVE = (200, 0, 0)  # BGR blue
FONT = cv2.FONT_HERSHEY_SIMPLEX


class Axes:
    """A plot area on a white canvas: data ``(x, y)`` in ``xlim`` x ``ylim`` -> pixels, with a
    frame, a tick grid and lines drawn without anti-aliasing (so colours stay exact)."""

    def __init__(self, size=(800, 480), xlim=(0.0, 1.0), ylim=(0.0, 1.0), margins=(80, 40, 30, 50)):
        w, h = size
        left, right, top, bottom = margins
        self.img = np.full((h, w, 3), 255, np.uint8)
        self.xlim, self.ylim = (float(xlim[0]), float(xlim[1])), (float(ylim[0]), float(ylim[1]))
        self.left, self.right, self.top, self.bottom = left, w - right, top, h - bottom

    def px(self, x, y):
        """Pixel (column, row) of a data point, or arrays of them; y is clipped to the plot area."""
        (xa, xb), (ya, yb) = self.xlim, self.ylim
        fx = (np.asarray(x, np.float64) - xa) / (xb - xa) if xb > xa else np.zeros(np.shape(x))
        fy = np.clip((np.asarray(y, np.float64) - ya) / (yb - ya), 0, 1) if yb > ya else np.zeros(np.shape(y))
        col = np.rint(self.left + (self.right - self.left) * fx).astype(np.int64)
        row = np.rint(self.bottom - (self.bottom - self.top) * fy).astype(np.int64)
        return (int(col), int(row)) if col.ndim == 0 else (col, row)

    def grid(self, n=5, xfmt="{:g}", yfmt="{:g}") -> None:
        """Frame, ``n`` grid intervals per axis, tick labels."""
        (xa, xb), (ya, yb) = self.xlim, self.ylim
        for k in range(n + 1):
            x, y = xa + (xb - xa) * k / n, ya + (yb - ya) * k / n
            col, row = self.px(x, y)
            cv2.line(self.img, (self.left, row), (self.right, row), GRID, 1)
            cv2.line(self.img, (col, self.top), (col, self.bottom), GRID, 1)
            cv2.putText(self.img, yfmt.format(y), (5, row + 4), FONT, 0.4, BLACK, 1)
            label = xfmt.format(x)
            width = cv2.getTextSize(label, FONT, 0.4, 1)[0][0]
            cv2.putText(self.img, label, (col - width // 2, self.bottom + 18), FONT, 0.4, BLACK, 1)
        cv2.rectangle(self.img, (self.left, self.top), (self.right, self.bottom), BLACK, 1)

    def line(self, xs, ys, colour=CURVE, thickness=1) -> None:
        cols, rows = self.px(np.asarray(xs), np.asarray(ys))
        points = np.stack([cols, rows], 1).astype(np.int32)
        if len(points) > 1:
            cv2.polylines(self.img, [points], False, colour, thickness)
        elif len(points):
            cv2.circle(self.img, tuple(int(v) for v in points[0]), thickness, colour, -1)

    def caption(self, text: str) -> None:
        cv2.putText(self.img, text, (self.left, self.img.shape[0] - 10), FONT, 0.45, BLACK, 1)


def lr_chart(rates, title: str, size=(800, 480)) -> tuple[np.ndarray, Axes]:
    """The rate of updates 1..len(rates) as a line; returns the image and its axes."""
    rates = np.asarray(rates, np.float64)
    top = float(rates.max()) * 1.05 if len(rates) and rates.max() > 0 else 1.0
    axes = Axes(size, xlim=(0, max(len(rates), 1)), ylim=(0.0, top))
    axes.grid(xfmt="{:.0f}", yfmt="{:.2g}")
    axes.line(np.arange(1, len(rates) + 1), rates)
    axes.caption(title)
    return axes.img, axes


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
    unused), each box in its class's Darknet colour with the class name."""
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
            cv2.putText(bgr, name, (left + 2, min(top + 10, h - 2)), FONT, 0.3, colour, 1)
        tiles.append(bgr)
    return tile(tiles)[0]


def training_batch(data_file, cfg, *, overrides=(), seed: int = 0, mixup: float = 0.0, count: int | None = None):
    """The first ``count`` samples (default: one mini-batch, ``batch/subdivisions``) that
    ``detector train`` with these options would feed the network: (images (n, 3, h, w),
    truths (n, max_boxes, 6), the trainer)."""
    from .train.samples import collate
    from .train.trainer import Trainer, TrainOptions
    trainer = Trainer(data_file, cfg, overrides=overrides,
                      options=TrainOptions(seed=seed, mixup=mixup, workers=0, progress=False, device="cpu"))
    count = count or trainer.mini
    keys = []
    for minibatch in trainer.sample_keys():  # the trainer's own sample order and sizes
        keys += minibatch[:count - len(keys)]
        if len(keys) == count:
            break
    images, truths, problems = collate([trainer.samples[key] for key in keys])
    for path, reason in problems:
        log.warning("%s: %s; replaced by the next image", path, reason)
    return images, truths, trainer
