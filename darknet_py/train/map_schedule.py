"""When training measures mAP: AlexeyAB's ``train_detector`` rule.

Every ``calc_map_for_each = max(4 * train_images / batch, 100)`` iterations after the last
check (the first counted from where the run starts), never before ``burn_in``, and at
``max_batches``. ``--valid-every N`` replaces the spacing (0: never).
"""
from __future__ import annotations

from dataclasses import dataclass

EPOCHS, MIN_SPACING = 4, 100  # calc_map_for_each = 4 epochs, at least 100 iterations


def spacing(train_images: int, batch: int) -> int:
    return max(EPOCHS * train_images // batch, MIN_SPACING)


@dataclass
class MapSchedule:
    every: int  # 0: never
    burn_in: int
    max_batches: int
    last: int  # AlexeyAB's iter_map: the last check, or the run's first iteration

    @property
    def next(self) -> int:
        """AlexeyAB's ``next_map_calc``."""
        return max(self.last + self.every, self.burn_in)

    def due(self, iteration: int) -> bool:
        """Whether to measure after update ``iteration``; marks it done if so."""
        if self.every <= 0 or not (iteration >= self.next or iteration == self.max_batches):
            return False
        self.last = iteration
        return True
