"""What ``detector train`` shows a person: a start banner, then per update either the tqdm bar
(on a terminal) or AlexeyAB's iteration line (``train_detector`` in src/detector.c):

    `` 12: 3.241872, 3.901551 avg loss, 0.001000 rate, 0.912345 seconds, 768 images, 0.254310 hours left``

The average loss is Darknet's ``avg_loss = avg_loss*.9 + loss*.1`` (started at the first loss),
kept in the checkpoint sidecar so that a resumed run continues it. "hours left" is AlexeyAB's
estimate: a 0.01 moving average of ``(max_batches - iteration) / processes`` times the last
update's time (loading included), started at the first estimate; the line prints the value
from before the update, as AlexeyAB does (-1 on a run's first line).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TextIO

import numpy as np

F32 = np.float32


@dataclass
class AverageLoss:
    """Darknet's running average of the loss (a C float)."""

    value: float | None = None

    def update(self, loss: float) -> float | None:
        """Fold in one update's loss; a loss that is not finite (a skipped update) leaves it."""
        if not math.isfinite(loss):
            return self.value
        loss = float(F32(loss))  # C: float avg_loss, loss; the expression in double
        if self.value is None or not math.isfinite(self.value) or self.value < 0:
            self.value = loss
        self.value = float(F32(self.value * 0.9 + loss * 0.1))
        return self.value


@dataclass
class TimeLeft:
    """AlexeyAB's "hours left": ``avg_time`` in ``train_detector``."""

    hours: float = -1.0
    alpha: float = 0.01

    def update(self, iteration: int, max_batches: int, seconds: float, processes: int = 1) -> float:
        remaining = (max_batches - iteration) // processes * seconds / 3600
        self.hours = remaining if self.hours < 0 else self.alpha * remaining + (1 - self.alpha) * self.hours
        return self.hours


def iteration_line(iteration: int, loss: float, avg_loss: float, rate: float, seconds: float, images: int,
                   hours_left: float) -> str:
    """AlexeyAB's ``"\\n %d: %f, %f avg loss, %f rate, %lf seconds, %d images, %f hours left\\n"``
    (without the blank line before it)."""
    return (f" {iteration}: {loss:f}, {avg_loss:f} avg loss, {rate:f} rate, {seconds:f} seconds, "
            f"{images} images, {hours_left:f} hours left")


@dataclass
class Banner:
    """What a run starts from, printed before the first update."""

    name: str  # the cfg's base name, which Darknet prints first
    fork: str
    fork_reason: str
    learning_rate: float
    momentum: float
    decay: float
    train_images: int
    train_list: str
    skipped: str  # the dataset checker's summary of skipped entries, or ""
    valid: str  # "valid: N images from LIST" / "no valid= list: no mAP" / ...
    start: str  # "resuming at iteration N from FILE" / "starting from scratch" / ...
    backup: str
    extras: tuple[str, ...] = ()  # one line each: TensorBoard, --amp, ...

    def lines(self) -> list[str]:
        out = [self.name,
               f"fork: {self.fork} ({self.fork_reason})" if self.fork_reason else f"fork: {self.fork}",
               f"Learning Rate: {self.learning_rate:g}, Momentum: {self.momentum:g}, Decay: {self.decay:g}",
               f"train: {self.train_images} images from {self.train_list}"
               + (f" ({self.skipped})" if self.skipped else ""),
               self.valid, self.start, f"backup folder: {self.backup}"]
        return out + list(self.extras)


def start_line(iteration: int, weights, clear: bool, cut: int | None) -> str:
    """The banner's "resuming at iteration N from FILE" / "starting from scratch" line."""
    if weights is None:
        return "starting from scratch"
    if cut is not None:
        return f"starting from {weights}: layers 0..{cut - 1}, the rest initialised as Darknet does"
    if clear:
        return f"starting at iteration 0 from {weights} (-clear)"
    if iteration == 0:
        return f"starting at iteration 0 from {weights}"
    return f"resuming at iteration {iteration} from {weights}"


class Console:
    """The bar or the lines, for the process that speaks (rank 0); silent elsewhere."""

    def __init__(self, *, speaks: bool = True, progress: bool = True, verbose: bool = False,
                 stream: TextIO | None = None):
        self.speaks = speaks
        self.stream = stream
        out = self.out
        self.bar_wanted = speaks and progress and not verbose and _isatty(out)
        self.bar = None

    @property
    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def print(self, text: str) -> None:
        if not self.speaks:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def banner(self, banner: Banner) -> None:
        for line in banner.lines():
            self.print(line)

    def open_bar(self, total: int, initial: int) -> None:
        if self.bar_wanted:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=self.out)

    def iteration(self, iteration: int, loss: float, avg_loss: float | None, rate: float, seconds: float,
                  images: int, hours_left: float) -> None:
        if not self.speaks:
            return
        avg = avg_loss if avg_loss is not None else loss
        if self.bar is not None:
            self.bar.update(iteration - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.3f}", avg=f"{avg:.3f}", rate=f"{rate:g}", refresh=False)
        else:
            self.print(iteration_line(iteration, loss, avg, rate, seconds, images, hours_left))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
