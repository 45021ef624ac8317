"""The first augmented samples ``detector train`` would feed the network (``show-batch``, and the
picture TensorBoard gets)."""
from __future__ import annotations

import logging

from .samples import collate

log = logging.getLogger(__name__)


def first_samples(trainer, count: int | None = None, report=None):
    """The first ``count`` samples (default: one mini-batch, ``batch/subdivisions``) in the
    trainer's own order and sizes, from its iteration on: (images (n, 3, h, w), truths
    (n, max_boxes, 6)). Images that do not decode go to ``report`` (a list of (path, reason);
    default: logged)."""
    count = count or trainer.mini
    keys = []
    for minibatch in trainer.sample_keys():
        keys += minibatch[:count - len(keys)]
        if len(keys) == count:
            break
    images, truths, problems = collate([trainer.samples[key] for key in keys])
    if report is not None:
        report(problems)
    for path, reason in problems if report is None else ():
        log.warning("%s: %s; replaced by the next image", path, reason)
    return images, truths


def training_batch(data_file, cfg, *, overrides=(), seed: int = 0, mixup: float = 0.0, count: int | None = None):
    """What ``detector train`` with these options would start with: (images, truths, the trainer)."""
    from .trainer import Trainer, TrainOptions
    trainer = Trainer(data_file, cfg, overrides=overrides,
                      options=TrainOptions(seed=seed, mixup=mixup, workers=0, progress=False, device="cpu"))
    images, truths = first_samples(trainer, count)
    return images, truths, trainer
