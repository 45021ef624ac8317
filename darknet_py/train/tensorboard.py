"""TensorBoard event files for ``detector train`` (the optional ``tensorboard`` package).

Scalars per iteration: ``loss/darknet`` (Darknet's loss, the printed one: the mean of the
heads' costs per image), ``loss/avg`` (Darknet's running average), ``loss/head<i>`` (each
head's cost per image), ``head<i>/<statistic>``
(the figures of Darknet's "Region" lines: Avg IOU, Class, Obj, No Obj, .5R, .75R, count),
``learning_rate``; ``mAP@0.5`` when validated, with the precision-recall chart as a figure;
once, the first augmented mini-batch of the run with its truth boxes.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

HOW_TO_GET = "pip install 'darknet-torch[tensorboard]'"
# the statistics of Darknet's "Region %d Avg IOU: ..." line: (name in TensorBoard, HeadStats field)
HEAD_STATISTICS = (("avg_iou", "avg_iou"), ("class", "cls"), ("obj", "obj"), ("no_obj", "no_obj"),
                   (".5R", "recall50"), (".75R", "recall75"), ("count", "count"))


def available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TrainBoard:
    """One run's event files in ``folder``."""

    def __init__(self, folder, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter
        # purge_step: a resumed run hides what an earlier run wrote after its checkpoint
        self.writer = SummaryWriter(str(folder), purge_step=purge_step)
        self.folder = folder

    def iteration(self, iteration: int, loss: float, avg_loss: float | None, rate: float,
                  head_losses: dict[int, float], head_stats: dict[int, dict[str, float]]) -> None:
        """``head_stats``: per head, the HEAD_STATISTICS names -> values (watch.head_summary)."""
        w = self.writer
        if np.isfinite(loss):
            w.add_scalar("loss/darknet", loss, iteration)
        if avg_loss is not None:
            w.add_scalar("loss/avg", avg_loss, iteration)
        for index, value in head_losses.items():
            w.add_scalar(f"loss/head{index}", value, iteration)
        for index, stats in head_stats.items():
            for name, value in stats.items():
                w.add_scalar(f"head{index}/{name}", value, iteration)
        w.add_scalar("learning_rate", rate, iteration)

    def validation(self, iteration: int, result) -> None:
        from ..plots import pr_chart
        self.writer.add_scalar("mAP@0.5", result.map, iteration)
        self.writer.add_figure("precision_recall", pr_chart(result), iteration)

    def batch(self, iteration: int, grid_bgr: np.ndarray) -> None:
        """A picture of augmented training images with their boxes (draw.batch_grid)."""
        self.writer.add_image("augmented_batch", np.ascontiguousarray(grid_bgr[..., ::-1]), iteration,
                              dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
