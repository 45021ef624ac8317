"""Everything a training run shows and records per iteration, in one place: the console (bar or
Darknet's lines), the running average loss and time left, ``<cfg>_train.csv`` and
``<cfg>_chart.png``, and TensorBoard's events. Only the process that speaks (rank 0 of a
distributed run) prints or writes; on the others every call does nothing."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .console import AverageLoss, Banner, Console, TimeLeft
from .log import TrainLog
from .tensorboard import HEAD_STATISTICS, HOW_TO_GET, TrainBoard, available

log = logging.getLogger(__name__)


@dataclass
class WatchOptions:
    speaks: bool = True
    progress: bool = True  # the bar, on a terminal
    verbose: bool = False  # Darknet's lines even on a terminal
    tensorboard: str | None = None  # event folder; None: <backup>/tensorboard/<cfg name>
    stream: object = None  # where the console writes (default: sys.stdout)


def head_summary(head_stats) -> dict[int, dict[str, float]]:
    """Per head, Darknet's statistics (tensorboard.HEAD_STATISTICS) averaged over the update's
    mini-batches, ``count`` summed, from ``(layer index, HeadStats)`` pairs (any head family's
    statistics: they all carry these fields)."""
    groups = {}
    for index, stats in head_stats:
        groups.setdefault(index, []).append(stats)
    summary = {}
    for index, group in groups.items():
        summary[index] = {name: sum(float(getattr(s, field)) for s in group) / len(group)
                          for name, field in HEAD_STATISTICS if field != "count"}
        summary[index]["count"] = sum(int(s.count) for s in group)
    return summary


class Watch:
    """One run's console, CSV, chart and TensorBoard events."""

    def __init__(self, name: str, backup: Path, max_batches: int, batch: int, iteration: int,
                 avg_loss: float | None, options: WatchOptions, processes: int = 1):
        self.name, self.backup, self.max_batches, self.batch = name, Path(backup), max_batches, batch
        self.processes = processes
        self.options = options
        self.speaks = options.speaks
        self.console = Console(speaks=options.speaks, progress=options.progress, verbose=options.verbose,
                               stream=options.stream)
        self.avg = AverageLoss(avg_loss)
        self.time_left = TimeLeft()
        self.record = None
        self.board = None
        self.board_note = ""
        if not self.speaks:
            return
        self.record = TrainLog(self.backup, name)
        self.record.drop_after(iteration)
        folder = Path(options.tensorboard) if options.tensorboard else self.backup / "tensorboard" / name
        if available():
            self.board = TrainBoard(folder, purge_step=iteration + 1)
            logdir = folder if options.tensorboard else folder.parent  # the default holds one run per cfg
            self.board_note = f"tensorboard: events in {folder} (tensorboard --logdir {logdir})"
        else:
            self.board_note = f"tensorboard: not installed; for TensorBoard events, {HOW_TO_GET}"

    @property
    def avg_loss(self) -> float | None:
        return self.avg.value

    def start(self, banner: Banner, iteration: int, batch_picture=None) -> None:
        """Print the banner, open the bar; ``batch_picture()`` (a BGR grid of the first augmented
        mini-batch) is drawn only when TensorBoard will take it."""
        if not self.speaks:
            return
        banner.extras = tuple(banner.extras) + ((self.board_note,) if self.board_note else ())
        self.console.banner(banner)
        if self.board is not None and batch_picture is not None:
            self.board.batch(iteration, batch_picture())
        self.console.open_bar(self.max_batches, iteration)

    def print(self, text: str) -> None:
        self.console.print(text)

    def map_lines(self, next_check: int, last_map: float | None, best_map: float | None) -> None:
        """AlexeyAB's -map lines before an iteration's line (not under the bar)."""
        if not self.speaks or self.console.bar is not None:
            return
        self.console.print(f" (next mAP calculation at {next_check} iterations) ")
        if last_map is not None and last_map > 0:
            self.console.print(f" Last accuracy mAP@0.5 = {last_map * 100:2.2f} %, best = {(best_map or 0) * 100:2.2f} % ")

    def iteration(self, record, seconds: float, validation=None, best: bool = False) -> dict:
        """Report one update (an ``UpdateRecord``: iteration, seen, rate, loss, head_losses,
        head_stats) and the validation after it (an ``evaluate.MapResult``, ``best`` when it is
        the best so far); returns the CSV row."""
        loss = float(np.float32(record.loss))  # train_network returns a C float
        avg = self.avg.update(loss)
        hours = self.time_left.hours  # AlexeyAB prints the estimate from before this update
        self.time_left.update(record.iteration, self.max_batches, seconds, self.processes)
        row = dict(iteration=record.iteration, seen=record.seen, loss=f"{loss:f}",
                   head_losses=" ".join(f"{v:f}" for v in record.head_losses.values()),
                   avg_loss=f"{avg if avg is not None else loss:f}", rate=f"{record.rate:f}",
                   images_per_s=f"{self.batch / seconds:.2f}" if seconds > 0 else "",
                   seconds=f"{seconds:f}", map="" if validation is None else f"{validation.map:f}")
        if not self.speaks:
            return row
        if log.isEnabledFor(logging.INFO):
            for index, stats in record.head_stats:
                log.info("Region %d Avg IOU: %f, Class: %f, Obj: %f, No Obj: %f, .5R: %f, .75R: %f,  "
                         "count: %d", index, stats.avg_iou, stats.cls, stats.obj, stats.no_obj,
                         stats.recall50, stats.recall75, stats.count)
        self.console.iteration(record.iteration, loss, avg, record.rate, seconds, record.seen, hours)
        if self.board is not None:
            self.board.iteration(record.iteration, loss, avg, record.rate, record.head_losses,
                                 head_summary(record.head_stats))
        self.record.append(row)
        if validation is not None:  # AlexeyAB's lines after the iteration's
            self.console.print(f" mean_average_precision (mAP@0.5) = {validation.map:f}")
            if best:
                self.console.print("New best mAP!")
            if self.board is not None:
                self.board.validation(record.iteration, validation)
        return row

    def chart(self) -> None:
        if self.speaks:
            self.record.chart(self.max_batches)
            if self.board is not None:
                self.board.flush()

    def close(self) -> None:
        self.console.close()
        if self.board is not None:
            self.board.close()
            self.board = None

