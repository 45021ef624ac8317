"""The training record in the backup folder: a CSV row per iteration and a loss/mAP chart."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_write

COLUMNS = ("iteration", "seen", "loss", "avg_loss", "rate", "images_per_s", "seconds", "map")


class TrainLog:
    """``<cfg>_train.csv`` (appended, so a resumed run continues it) and ``<cfg>_chart.png``."""

    def __init__(self, backup: Path, name: str):
        self.csv_path = backup / f"{name}_train.csv"
        self.png_path = backup / f"{name}_chart.png"
        self.rows: list[dict] = []
        if self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                self.rows = [row for row in csv.DictReader(f)]

    def append(self, row: dict) -> None:
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in COLUMNS})
        self.rows.append(row)

    def drop_after(self, iteration: int) -> None:
        """A resumed run repeats the iterations after its checkpoint: forget their rows."""
        kept = [r for r in self.rows if int(r["iteration"]) <= iteration]
        if len(kept) != len(self.rows):
            self.rows = kept

            def write(f):
                f.write(_csv_text(kept).encode())
            atomic_write(self.csv_path, write)

    def chart(self, max_batches: int) -> None:
        """Darknet-style chart: average loss (blue) and mAP@0.5 (red, right axis) per iteration."""
        png = draw_chart([(int(r["iteration"]), float(r["avg_loss"])) for r in self.rows],
                         [(int(r["iteration"]), float(r["map"])) for r in self.rows if str(r.get("map", ""))],
                         max_batches)
        ok, data = cv2.imencode(".png", png)
        if ok:
            atomic_write(self.png_path, lambda f: f.write(data.tobytes()))


def _csv_text(rows) -> str:
    import io
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in COLUMNS})
    return out.getvalue()


def draw_chart(loss, maps, max_batches, size=(800, 600)) -> np.ndarray:
    w, h = size
    left, right, top, bottom = 70, 70, 30, 50
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1, y0, y1 = left, w - right, h - bottom, top
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    finite = [v for _, v in loss if math.isfinite(v)]
    top_loss = max(finite) * 1.05 if finite else 1.0
    span = max(max_batches, max((i for i, _ in loss), default=1), 1)

    def px(i, v, vmax):
        return int(x0 + (x1 - x0) * i / span), int(y0 - (y0 - y1) * min(max(v / vmax, 0), 1))

    for k in range(6):  # grid and labels
        y = int(y0 - (y0 - y1) * k / 5)
        cv2.line(img, (x0, y), (x1, y), (220, 220, 220), 1)
        cv2.putText(img, f"{top_loss * k / 5:.2f}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 0, 0), 1)
        cv2.putText(img, f"{k * 20}%", (x1 + 8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 200), 1)
        x = int(x0 + (x1 - x0) * k / 5)
        cv2.putText(img, str(span * k // 5), (x - 10, y0 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    points = [px(i, v, top_loss) for i, v in loss if math.isfinite(v)]
    if len(points) > 1:
        cv2.polylines(img, [np.array(points, np.int32)], False, (200, 0, 0), 1)
    for i, v in maps:
        cv2.circle(img, px(i, v, 1.0), 3, (0, 0, 200), -1)
    cv2.putText(img, "avg loss (blue), mAP@0.5 (red) - iteration", (x0, y0 + 40),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return img
