"""AlexeyAB's weights EMA: is_ema_initialized, ema_update, ema_apply (network.c), the block of
train_network_waitkey after update_network that calls them, and save_weights_upto(..., save_ema=1)
(parser.c) for [convolutional] and [connected] layers."""
from __future__ import annotations

import numpy as np

F32 = np.float32


class CLayer:
    """A layer of AlexeyAB's network as ema_* sees it: its arrays, and the *_ema arrays that
    make_convolutional_layer callocs for a trained [convolutional] without share_layer."""

    def __init__(self, kind, arrays, shared=False):
        self.type, self.shared = kind, shared
        for name, value in arrays.items():
            setattr(self, name, value)
        own_conv = kind == "CONVOLUTIONAL" and not shared
        self.weights_ema = np.zeros_like(self.weights) if own_conv else None
        self.biases_ema = np.zeros_like(self.biases) if own_conv else None
        self.scales_ema = np.zeros_like(self.scales) if own_conv and self.scales is not None else None
        self.n = self.biases.size


def is_ema_initialized(layers):
    for l in layers:
        if l.type == "CONVOLUTIONAL" and l.weights_ema is not None:
            for k in range(l.weights_ema.size):
                if l.weights_ema.flat[k] != 0:
                    return 1
    return 0


def ema_update(layers, ema_alpha):
    a = F32(ema_alpha)
    for l in layers:
        if l.type == "CONVOLUTIONAL":
            if l.weights_ema is not None:
                l.weights_ema[...] = a * l.weights_ema + (F32(1) - a) * l.weights
            for k in range(l.n):
                if l.biases_ema is not None:
                    l.biases_ema[k] = a * l.biases_ema[k] + (F32(1) - a) * l.biases[k]
                if l.scales_ema is not None:
                    l.scales_ema[k] = a * l.scales_ema[k] + (F32(1) - a) * l.scales[k]


def ema_apply(layers):
    for l in layers:
        if l.type == "CONVOLUTIONAL":
            if l.weights_ema is not None:
                l.weights[...] = l.weights_ema
            for k in range(l.n):
                if l.biases_ema is not None:
                    l.biases[k] = l.biases_ema[k]
                if l.scales_ema is not None:
                    l.scales[k] = l.scales_ema[k]


def after_update(layers, cur_iteration, max_batches, ema_alpha):
    """The block of train_network_waitkey after update_network."""
    ema_start_point = max_batches // 2
    if ema_alpha and cur_iteration >= ema_start_point:
        ema_apply_point = max_batches - 1000
        if not is_ema_initialized(layers):
            ema_update(layers, 0)
        if cur_iteration == ema_apply_point:
            ema_apply(layers)
        elif cur_iteration < ema_apply_point:
            ema_update(layers, ema_alpha)


def save_weights_upto_ema(layers, header: bytes) -> bytes:
    """save_weights_upto(net, file, net.n, 1) for the layer types of these tests."""
    out = [header]
    for l in layers:
        if l.type == "CONVOLUTIONAL" and not l.shared:
            out.append(l.biases_ema.tobytes())
            if l.scales_ema is not None:
                out += [l.scales_ema.tobytes(), l.rolling_mean.tobytes(), l.rolling_variance.tobytes()]
            out.append(l.weights_ema.tobytes())
        if l.type == "CONNECTED":
            out += [l.biases.tobytes(), l.weights.tobytes()]
            if l.scales is not None:
                out += [l.scales.tobytes(), l.rolling_mean.tobytes(), l.rolling_variance.tobytes()]
    return b"".join(out)
