"""Darknet's activation functions by their cfg names (``activations.h`` of both forks).

``ACTIVATIONS`` are element-wise. ``CHANNEL_ACTIVATIONS`` (AlexeyAB's ``normalize_channels*``)
normalise each pixel across the channels (dim 1); AlexeyAB applies them only in
[convolutional] (``activate_array_normalize_channels*``), so only builders that allow them
(``read_activation(..., channelwise=True)``) accept them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _stair(x):
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _hard_mish(x):
    return torch.where(x > 0, x, torch.where(x > -2, x * x / 2 + x, torch.zeros_like(x)))


def _mish(x):
    # AlexeyAB's softplus with threshold 20: x itself above 20, exp(x) below -20.
    sp = torch.where(x > 20, x, torch.where(x < -20, torch.exp(x), torch.log1p(torch.exp(x))))
    return x * torch.tanh(sp)


def _normalize_channels(x):
    # activate_array_normalize_channels: x / (0.0001 + sum of the positive x) where x > 0, else 0.
    positive = torch.clamp(x, min=0)
    return positive / (0.0001 + positive.sum(1, keepdim=True))


def _normalize_channels_softmax(x, use_max_val):
    # activate_array_normalize_channels_softmax: exp(x - m) / (0.0001 + sum exp(x - m)), where
    # m is the channel maximum (``_maxval``) or 0.
    shift = x.amax(1, keepdim=True) if use_max_val else 0
    e = torch.exp(x - shift)
    return e / (0.0001 + e.sum(1, keepdim=True))


ACTIVATIONS = {
    "linear": lambda x: x,
    "logistic": torch.sigmoid,
    "loggy": lambda x: 2 * torch.sigmoid(x) - 1,
    "relu": F.relu,
    "relu6": lambda x: torch.clamp(x, 0, 6),
    "elu": lambda x: torch.where(x >= 0, x, torch.expm1(x)),
    "selu": lambda x: torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * torch.expm1(x)),
    "relie": lambda x: torch.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: F.relu(x) + 0.1 * x,
    "leaky": lambda x: F.leaky_relu(x, 0.1),
    "revleaky": lambda x: F.leaky_relu(x, 0.1),  # AlexeyAB: leaky forward, reversed gradient only
    "tanh": torch.tanh,
    "plse": lambda x: torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)),
    "stair": _stair,
    "hardtan": lambda x: torch.clamp(x, -1, 1),
    "lhtan": lambda x: torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "swish": lambda x: x * torch.sigmoid(x),
    "mish": _mish,
    "hard_mish": _hard_mish,
    "gelu": lambda x: 0.5 * x * (1 + torch.tanh(0.797885 * x + 0.035677 * x * x * x)),
}


CHANNEL_ACTIVATIONS = {
    "normalize_channels": _normalize_channels,
    "normalize_channels_softmax": lambda x: _normalize_channels_softmax(x, False),
    "normalize_channels_softmax_maxval": lambda x: _normalize_channels_softmax(x, True),
}


_INPLACE = {
    "linear": lambda x: x,
    "leaky": lambda x: F.leaky_relu_(x, 0.1),
    "relu": F.relu_,
    "logistic": torch.sigmoid_,
    "tanh": torch.tanh_,
}


class Activation(nn.Module):
    """Applies a Darknet activation chosen by name; ``linear`` costs nothing."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS.get(name) or CHANNEL_ACTIVATIONS[name]

    def forward(self, x):
        return self.fn(x)

    def inplace(self, x):
        """The same values, overwriting ``x`` where the function allows (inference only)."""
        fn = _INPLACE.get(self.name)
        return fn(x) if fn else self.fn(x)

    def extra_repr(self):
        return self.name


def read_activation(section, default: str, channelwise: bool = False) -> str:
    """The section's ``activation``; an unknown name is an error listing the known ones, and so
    is a channel-normalising one where the section does not allow it."""
    name = section.str("activation", default)
    if name in CHANNEL_ACTIVATIONS and not channelwise:
        raise section.error(f"'{name}' normalises across channels; AlexeyAB's Darknet applies it only "
                            "in [convolutional]", "activation")
    if name not in ACTIVATIONS and name not in CHANNEL_ACTIVATIONS:
        known = sorted([*ACTIVATIONS, *(CHANNEL_ACTIVATIONS if channelwise else ())])
        raise section.error(f"unknown activation '{name}' (known: {', '.join(known)})", "activation")
    return name
