"""pjreddie's batch norm (batchnorm_layer.c, blas.c), training mode, on NCHW float32 arrays.

``batch`` images of ``filters`` channels of ``spatial`` values, index ``(b*filters + f)*spatial
+ k`` as in C. Per-channel sums run over the same elements as the C loops; they are taken in
float64 here, which differs from C's sequential float sums by float rounding only.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def _channels(x):
    """(filters, batch*spatial) view of an (batch, filters, ...) array."""
    return np.moveaxis(x.reshape(x.shape[0], x.shape[1], -1), 1, 0).reshape(x.shape[1], -1)


def mean_cpu(x):
    return F32(_channels(x).astype(np.float64).sum(1) / _channels(x).shape[1])


def variance_cpu(x, mean):
    """1/(batch*spatial - 1): the unbiased variance."""
    c = _channels(x).astype(np.float64) - mean[:, None]
    return F32((c * c).sum(1) / (c.shape[1] - 1))


def normalize_cpu(x, mean, variance):
    view = (1, -1) + (1,) * (x.ndim - 2)
    return F32((x - mean.reshape(view)) / (np.sqrt(variance).reshape(view) + F32(.000001)))


def forward_batchnorm(x, scales, biases, rolling_mean, rolling_variance):
    """forward_convolutional_layer's batch-norm part in training: (output, x_norm, mean,
    variance, new rolling mean, new rolling variance)."""
    view = (1, -1) + (1,) * (x.ndim - 2)
    mean = mean_cpu(x)
    variance = variance_cpu(x, mean)
    new_mean = F32(F32(.99) * rolling_mean + F32(.01) * mean)
    new_var = F32(F32(.99) * rolling_variance + F32(.01) * variance)
    x_norm = normalize_cpu(x, mean, variance)
    out = F32(x_norm * scales.reshape(view) + biases.reshape(view))
    return out, x_norm, mean, variance, new_mean, new_var


def backward_bias(delta):
    return F32(_channels(delta).astype(np.float64).sum(1))


def backward_scale_cpu(x_norm, delta):
    return F32((_channels(x_norm).astype(np.float64) * _channels(delta)).sum(1))


def mean_delta_cpu(delta, variance):
    return F32(_channels(delta).astype(np.float64).sum(1) * (-1. / np.sqrt(variance.astype(np.float64)
                                                                             + F32(.00001))))


def variance_delta_cpu(x, delta, mean, variance):
    s = (_channels(delta).astype(np.float64) * (_channels(x).astype(np.float64) - mean[:, None])).sum(1)
    return F32(s * -.5 * np.power(variance + F32(.00001), F32(-3. / 2.)).astype(np.float64))


def normalize_delta_cpu(x, mean, variance, mean_delta, variance_delta, delta):
    view = (1, -1) + (1,) * (x.ndim - 2)
    n = x.size // x.shape[1]  # spatial * batch
    v = variance.astype(np.float64).reshape(view)
    return F32(delta * 1. / np.sqrt(v + F32(.00001))
               + variance_delta.astype(np.float64).reshape(view) * 2. * (x - mean.reshape(view)) / n
               + mean_delta.astype(np.float64).reshape(view) / n)


def backward_batchnorm(x, x_norm, mean, variance, scales, delta):
    """backward_batchnorm_layer after gradient_array: (delta to the layer below, bias
    updates, scale updates). ``delta`` is Darknet's (the negative gradient); every step is
    linear in it, so a gradient in gives the gradient out."""
    view = (1, -1) + (1,) * (x.ndim - 2)
    bias_updates = backward_bias(delta)
    scale_updates = backward_scale_cpu(x_norm, delta)
    delta = F32(delta * scales.reshape(view))  # scale_bias
    mean_delta = mean_delta_cpu(delta, variance)
    variance_delta = variance_delta_cpu(x, delta, mean, variance)
    return normalize_delta_cpu(x, mean, variance, mean_delta, variance_delta, delta), bias_updates, scale_updates
