"""Deterministic random weights in Darknet's layout, for tests and benchmarks.

The official files cannot be fetched here; these stand in for them. Weights ~ N(0, 1/fan_in)
and BN statistics near identity keep plain stacks of order one; the last layer of each residual
branch (the one just before a [shortcut]) is damped by half, or yolov3's 23 residual additions
grow its head inputs to |x| ~ 70, where float32 rounding alone separates two correct
implementations by ~1e-4.
"""
from __future__ import annotations

import numpy as np
import torch

from .weights import Header


def fill_random(net, seed: int = 0) -> None:
    """Overwrite every parameter and BN statistic of ``net`` from a seeded generator."""
    rng = np.random.default_rng(seed)
    damped = {spec.sources[0] for spec in net.specs if spec.kind == "shortcut"}
    with torch.no_grad():
        for index, layer in enumerate(net.layers):
            if not hasattr(layer, "blobs"):
                continue
            for blob in layer.blobs():
                n = blob.tensor.numel()
                if blob.name == "weights":
                    fan_in = blob.tensor.shape[-1] if blob.tensor.dim() <= 3 else blob.tensor[0].numel()
                    values = rng.standard_normal(n, dtype=np.float32) * np.float32(1.0 / np.sqrt(fan_in))
                elif blob.name in ("scales", "rolling_variance"):
                    values = rng.uniform(0.5, 1.5, n).astype(np.float32)
                else:  # biases, rolling_mean
                    values = rng.normal(0.0, 0.1, n).astype(np.float32)
                if index in damped and blob.name in ("scales", "biases"):
                    values *= np.float32(0.5)
                blob.tensor.copy_(torch.from_numpy(values).view(blob.tensor.shape))


def write_random_weights(cfg, path, seed: int = 0, cutoff=None, header: Header | None = None):
    """Write a random but well-formed weights file for ``cfg``; returns the network."""
    from .model import Darknet
    net = Darknet(cfg, init=False)
    fill_random(net, seed)
    if header is not None:
        net.header = header
    net.save_weights(path, cutoff)
    return net
