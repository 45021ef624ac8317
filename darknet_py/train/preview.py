"""What ``detector train`` would start with (``show-batch``)."""
from __future__ import annotations

from .trainer import Trainer, TrainOptions


def training_batch(data_file, cfg, *, overrides=(), seed: int = 0, mixup: float = 0.0, count: int | None = None):
    """The first ``count`` augmented samples (default: one mini-batch) that ``detector train``
    with these options would feed the network: (images, truths, the trainer)."""
    trainer = Trainer(data_file, cfg, overrides=overrides,
                      options=TrainOptions(seed=seed, mixup=mixup, workers=0, progress=False, device="cpu"))
    images, truths = trainer.first_samples(count)
    return images, truths, trainer
