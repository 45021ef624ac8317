"""Anchors for a dataset, as AlexeyAB's ``detector calc_anchors`` finds them.

Every label box becomes a point ``(w * width, h * height)``; k-means (``do_kmeans`` in
``matrix.c``) clusters the points with the distance ``1 - IoU`` of two boxes sharing a corner,
starting from k distinct random boxes and alternating assignment and mean until no assignment
changes (1000 rounds at most). The centres, sorted by area, are the anchors; the average IoU of
each box with its best anchor measures the fit. Arithmetic is float32 as Darknet's ``float``;
the random start comes from ``seed`` (Darknet seeds with the time).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DarknetError

F32 = np.float32
MAX_ROUNDS = 1000


def box_sizes(source, width: int, height: int) -> np.ndarray:
    """(n, 2) float32 ``w * width, h * height`` of every label box of a dataset source."""
    sizes = [source.boxes(i)[:, 3:5] for i in range(len(source))]
    sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2), F32)
    return (sizes.astype(F32) * np.array([width, height], F32)).astype(F32)


def iou_wh(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(n, k) IoU of boxes sharing a corner, as ``dist`` computes it (float32)."""
    p, c = points[:, None, :], centers[None, :, :]
    inter = np.minimum(p[..., 0], c[..., 0]) * np.minimum(p[..., 1], c[..., 1])
    union = (p[..., 0] * p[..., 1] + c[..., 0] * c[..., 1]) - inter
    return (inter / union).astype(F32)


def _assign(points, centers) -> np.ndarray:
    """``closest_center``: the first centre of least ``1 - IoU``."""
    return np.argmin(F32(1) - iou_wh(points, centers), axis=1)


def _means(points, assignments, centers) -> np.ndarray:
    """``kmeans_maximization``: float sums in data order, divided by the count; a coordinate that
    comes out 0 (an empty cluster) keeps its old value."""
    sums = np.zeros_like(centers)
    np.add.at(sums, assignments, points)  # unbuffered, in order, like the C loop
    counts = np.bincount(assignments, minlength=len(centers))
    new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None].astype(F32), sums).astype(F32)
    return np.where(new == 0, centers, new)


def initial_centers(n: int, k: int, seed: int) -> np.ndarray:
    """``random_centers``: the indices of k distinct boxes in a random order."""
    return np.random.default_rng(seed).permutation(n)[:k]


def kmeans(points: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """``do_kmeans``: (centres (k, 2), assignments, rounds)."""
    points = np.asarray(points, F32)
    if k < 1:
        raise DarknetError(f"num_of_clusters must be at least 1, got {k}")
    if len(points) < k:
        raise DarknetError(f"{k} clusters need at least {k} boxes; the labels hold {len(points)}")
    centers = points[initial_centers(len(points), k, seed)]
    assignments = np.zeros(len(points), np.int64)
    if k == 1:
        centers = _means(points, assignments, centers)
    rounds = 0
    while rounds < MAX_ROUNDS:
        closest = _assign(points, centers)
        converged = np.array_equal(closest, assignments)
        assignments = closest
        if converged:
            break
        centers = _means(points, assignments, centers)
        rounds += 1
    return centers, assignments, rounds


@dataclass
class Anchors:
    centers: np.ndarray  # (k, 2) float32 w, h in network pixels, by increasing area
    avg_iou: float       # percent, as Darknet prints it
    rounds: int
    boxes: int
    points: np.ndarray | None = None       # (boxes, 2) the labels' w, h in network pixels
    assignments: np.ndarray | None = None  # each point's cluster, an index into centers

    def line(self, width: int) -> str:
        """Darknet's ``anchors = ...`` text: ``%3.0f,%3.0f`` pairs, ``%2.4f`` when width <= 32."""
        return "anchors = " + self.values(width)

    def values(self, width: int) -> str:
        """The pairs alone (what Darknet writes to anchors.txt)."""
        fmt = "{:3.0f},{:3.0f}" if width > 32 else "{:2.4f},{:2.4f}"
        return ", ".join(fmt.format(w, h) for w, h in self.centers.tolist())


def average_iou(points: np.ndarray, centers: np.ndarray) -> float:
    """100 * mean over boxes of the best IoU with any centre, summed in float as Darknet does."""
    iou = iou_wh(np.asarray(points, F32), np.asarray(centers, F32))
    best = iou[np.arange(len(iou)), np.argmin(F32(1) - iou, axis=1)]  # the IoU of least distance
    total = np.cumsum(best, dtype=F32)[-1]  # sequential float sum
    return float(F32(F32(100) * total) / F32(len(points)))


def calc_anchors(source, num_of_clusters: int, width: int, height: int, seed: int = 0) -> Anchors:
    """``calc_anchors`` on a dataset source (``datasets.open_dataset``)."""
    if width <= 0 or height <= 0:
        raise DarknetError(f"width and height must be positive, got {width} x {height}")
    points = box_sizes(source, width, height)
    centers, assignments, rounds = kmeans(points, num_of_clusters, seed)
    area = centers[:, 0] * centers[:, 1]
    order = np.argsort(area, kind="stable")
    centers = centers[order]
    assignments = np.argsort(order)[assignments]  # the sorted centres' indices
    return Anchors(centers, average_iou(points, centers), rounds, len(points), points, assignments)


def cluster_picture(anchors: Anchors, width: int, height: int, size: int = 700) -> np.ndarray:
    """AlexeyAB's ``show_anchors`` picture (its cloud.png): every label's (w, h) as a dot coloured by
    its cluster, each anchor as a white rectangle from the origin, on ``size`` x ``size`` pixels
    scaled by the network's width and height (BGR)."""
    import cv2
    img = np.zeros((size, size, 3), np.uint8)
    for (w, h), k in zip(anchors.points.tolist(), anchors.assignments.tolist()):
        rgb = ((k * 123 + 55) % 255, (k * 321 + 33) % 255, (k * 11 + 99) % 255)
        cv2.circle(img, (int(w * size / width), int(h * size / height)), 1, rgb[::-1], -1)
    for w, h in anchors.centers.tolist():
        cv2.rectangle(img, (0, 0), (int(w * size / width), int(h * size / height)), (255, 255, 255), 1)
    return img
