"""activations.h, as the transcriptions use them."""
from __future__ import annotations

import math


def logistic(v):
    return 1.0 / (1.0 + math.exp(-v))
