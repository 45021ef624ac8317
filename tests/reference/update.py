"""pjreddie's update_convolutional_layer (convolutional_layer.c), the update every layer with
weights gets from update_network, on float32 NumPy arrays in place, in C's order."""
from __future__ import annotations

import numpy as np

F32 = np.float32


def update_convolutional_layer(l: dict, learning_rate: float, momentum: float, decay: float, batch: int):
    """``l``: weights, weight_updates, biases, bias_updates and (batch_normalize) scales,
    scale_updates. ``learning_rate`` is get_current_rate's times the layer's learning_rate_scale;
    ``batch`` is net.batch * net.subdivisions."""
    rate = F32(F32(learning_rate) / F32(batch))
    l["biases"] += rate * l["bias_updates"]  # axpy_cpu(l.n, learning_rate/batch, l.bias_updates, 1, l.biases, 1)
    l["bias_updates"] *= F32(momentum)
    if "scales" in l:
        l["scales"] += rate * l["scale_updates"]
        l["scale_updates"] *= F32(momentum)
    l["weight_updates"] += F32(F32(-decay) * F32(batch)) * l["weights"]
    l["weights"] += rate * l["weight_updates"]
    l["weight_updates"] *= F32(momentum)
