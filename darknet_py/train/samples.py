"""Augmented training samples from a dataset source (``darknet_py.datasets``).

All randomness of a sample comes from its number, so a resumed run regenerates the very same
samples whichever worker makes them.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DarknetError, ImageError
from .augment import Augment, detection_sample, mixup, with_weight
from .augment_alexeyab import AlexeyabAugment

MIXUP_BETA = 1.5  # Beta(1.5, 1.5), as in Bag of Freebies


class TrainingSamples:
    """Augmented samples keyed by (sample_number, index, width, height) for a DataLoader.

    All randomness comes from ``default_rng((seed, sample_number))``, so a sample does not
    depend on the worker that makes it or on what was made before."""

    def __init__(self, source, width: int, height: int, augment: Augment | AlexeyabAugment,
                 max_boxes: int, seed: int):
        self.source, self.width, self.height = source, width, height
        self.augment, self.max_boxes, self.seed = augment, max_boxes, seed

    def __len__(self):
        return len(self.source)

    def __getitem__(self, key):
        sample_number, index, width, height = key if len(key) == 4 else (*key, self.width, self.height)
        rng = np.random.default_rng((self.seed, sample_number))
        problems: list[tuple[str, str]] = []
        image, boxes = self._load(index, problems)
        if self.augment.mixup > 0 and rng.random() < self.augment.mixup:
            partner = int(rng.integers(len(self.source)))
            ratio = rng.beta(MIXUP_BETA, MIXUP_BETA)
            image, boxes = mixup(image, boxes, *self._load(partner, problems), ratio)
        if isinstance(self.augment, AlexeyabAugment):
            image, truths = self.augment.sample(
                image, boxes, rng, width, height, self.max_boxes,
                lambda: self._load(int(rng.integers(len(self.source))), problems))
        else:
            image, truths = detection_sample(image, with_weight(boxes), width, height, self.augment,
                                             rng, self.max_boxes)
        return torch.from_numpy(image), torch.from_numpy(truths), problems

    def _load(self, index: int, problems: list):
        """``source.load(index)``, or the first following index whose image decodes."""
        count = len(self.source)
        for step in range(count):
            i = (index + step) % count
            try:
                return self.source.load(i)
            except ImageError as e:
                path = str(self.source.paths[i])
                problems.append((path, str(e).removeprefix(f"{path}: ")))
        raise DarknetError(f"none of the {count} images decodes")


def collate(batch):
    """Stack images and truths; concatenate the problems found while loading."""
    images, truths, problems = zip(*batch)
    return torch.stack(images), torch.stack(truths), [p for found in problems for p in found]
