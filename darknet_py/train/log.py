"""The training record in the backup folder: a CSV row per iteration and a loss/mAP chart."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_write
from ..plots import CURVE, FONT, Axes

MAP_COLOUR = (0, 0, 200)  # BGR red
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
    """Average loss (blue, left axis) and mAP@0.5 (red dots, right axis) per iteration."""
    finite = [(i, v) for i, v in loss if math.isfinite(v)]
    top_loss = max(v for _, v in finite) * 1.05 if finite else 1.0
    span = max(max_batches, max((i for i, _ in loss), default=1), 1)
    axes = Axes(size, xlim=(0, span), ylim=(0.0, top_loss), margins=(70, 70, 30, 50))
    axes.grid(xfmt="{:.0f}", yfmt="{:.2f}")
    for k in range(6):  # the mAP axis: 0..100 % over the same height
        row = axes.px(0, top_loss * k / 5)[1]
        cv2.putText(axes.img, f"{k * 20}%", (axes.right + 8, row + 4), FONT, 0.4, MAP_COLOUR, 1)
    if finite:
        axes.line([i for i, _ in finite], [v for _, v in finite], CURVE)
    for i, v in maps:
        cv2.circle(axes.img, axes.px(i, v * top_loss), 3, MAP_COLOUR, -1)
    axes.caption("avg loss (blue), mAP@0.5 (red) - iteration")
    return axes.img
