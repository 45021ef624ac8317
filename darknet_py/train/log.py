"""The training record in the backup folder: a CSV row per iteration and a loss/mAP chart."""
from __future__ import annotations

import csv
from pathlib import Path

from ..atomic import atomic_write
from ..plots import save_png, training_chart

# loss: Darknet's (train_network's: the mean of the heads' costs per image); head_losses: each
# head's cost per image, in layer order, space-separated
COLUMNS = ("iteration", "seen", "loss", "head_losses", "avg_loss", "rate", "images_per_s", "seconds", "map")


class TrainLog:
    """``<cfg>_train.csv`` (appended, so a resumed run continues it) and ``<cfg>_chart.png``."""

    def __init__(self, backup: Path, name: str):
        self.name = name
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
        """AlexeyAB's chart.png: average loss and mAP@0.5 per iteration (plots.training_chart)."""
        maps = [(int(r["iteration"]), float(r["map"])) for r in self.rows if str(r.get("map", ""))]
        last = self.rows[-1] if self.rows else None
        title = (f"{self.name}: iteration {last['iteration']}, avg loss {float(last['avg_loss']):.4f}"
                 + (f", best mAP@0.5 {max(v for _, v in maps) * 100:.2f} %" if maps else "")) if last else self.name
        figure = training_chart([int(r["iteration"]) for r in self.rows], [float(r["avg_loss"]) for r in self.rows],
                                maps, max_batches, title)
        save_png(figure, self.png_path)


def _csv_text(rows) -> str:
    import io
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in COLUMNS})
    return out.getvalue()

