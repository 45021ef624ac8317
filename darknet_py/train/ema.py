"""AlexeyAB's ``[net] ema_alpha``: an exponential moving average of the convolution weights.

What AlexeyAB's ``train_network_waitkey`` (network.c) does after each update, with
``cur_iteration`` already counting it, and what this module repeats:

- Nothing before iteration ``max_batches / 2`` (integer division). From it on: if the average
  is not initialised (``is_ema_initialized``: no value of any layer's ``weights_ema`` differs
  from 0), ``ema_update(net, 0)`` copies the weights into it; then at iteration
  ``max_batches - 1000`` ``ema_apply`` copies the average over the weights (training goes on
  from the averaged weights and the average is never updated again), and before that
  iteration ``ema_update(net, ema_alpha)`` sets ``ema = alpha * ema + (1 - alpha) * w``.
  The first averaged iteration therefore initialises and then updates. With
  ``max_batches < 2000`` the apply point comes before the start: the average is the weights
  of iteration ``max_batches / 2`` and is neither updated nor applied.
- What is averaged: of every [convolutional] layer that owns its weights (not one with
  ``share_index``) the ``weights``, ``biases`` and, with batch norm, ``scales``; frozen layers
  too. Not the rolling mean and variance, and nothing of other layer types.
- Arithmetic: C ``float``: ``alpha`` rounded to float32, ``1 - alpha`` in float32, the two
  products and their sum each rounded to float32 (no fused multiply-add).
- Files: every saved ``.weights`` (``_last``, ``_<N>``, ``_best``, ``_final``) holds the
  training weights. Beside each ``_last.weights``, once initialised, ``<cfg>_ema.weights``
  is ``save_weights_upto(net, ..., save_ema=1)``: the averages in place of weights, biases and
  scales, the live rolling mean and variance, every other layer as in ``_last``.
- Resuming: the C keeps the average in memory only and starts it again from the weights
  after a restart. Here it rides in the ``.state`` sidecar (checkpoint.py), so a resumed run
  repeats the uninterrupted one; without a matching sidecar it starts again as in the C.
- Not repeated: in the CUDA build ``ema_apply`` also pushes the host copies of the momentum
  (``weight_updates``, ``bias_updates``) and of the rolling statistics, last pulled by the
  previous iteration's ``ema_update``, so those go back one iteration there; this follows
  the CPU build, where ``ema_apply`` sets weights, biases and scales only.
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from ..errors import WeightsError
from ..layers.conv import SharedConvolutional

log = logging.getLogger(__name__)
APPLY_BEFORE_END = 1000  # ema_apply_point = max_batches - 1000


class WeightsEma:
    """The averages of one network's convolutions, updated after each iteration by :meth:`step`."""

    def __init__(self, net, alpha: float):
        self.net = net
        self.alpha = float(np.float32(alpha))
        self.max_batches = net.net.max_batches
        # per owning [convolutional]: (weights, biases[, scales]); the weights come first
        self.groups = []
        for spec, layer in zip(net.specs, net.layers):
            if spec.kind == "convolutional" and not isinstance(layer, SharedConvolutional):
                params = [layer.weights, layer.biases] + ([layer.scales] if layer.batch_normalize else [])
                self.groups.append(params)
        self.params = [p for group in self.groups for p in group]
        self.averages = [torch.zeros_like(p, dtype=torch.float32) for p in self.params]

    @property
    def start(self) -> int:
        return self.max_batches // 2

    @property
    def apply_point(self) -> int:
        return self.max_batches - APPLY_BEFORE_END

    def initialized(self) -> bool:
        """``is_ema_initialized``: some averaged weight (not bias or scale) is not 0."""
        i = 0
        for group in self.groups:
            if bool(self.averages[i].any()):
                return True
            i += len(group)
        return False

    @torch.no_grad()
    def update(self, alpha: float) -> None:
        """``ema_update``: ``ema = alpha * ema + (1 - alpha) * w`` in float32."""
        a = np.float32(alpha)
        b = np.float32(1) - a
        for avg, p in zip(self.averages, self.params):
            # 0-dim float32 tensors: the products round in float32, as the C's
            avg.mul_(avg.new_tensor(a)).add_(p.detach() * avg.new_tensor(b))

    @torch.no_grad()
    def apply(self) -> None:
        """``ema_apply``: the weights, biases and scales become the averages."""
        for avg, p in zip(self.averages, self.params):
            p.copy_(avg)
        self.net.invalidate_inference_weights()

    def step(self, iteration: int) -> None:
        """What follows the update that completed ``iteration`` (1-based, Darknet's
        ``cur_iteration``)."""
        if iteration < self.start:
            return
        if not self.initialized():
            self.update(0.0)
            log.info("iteration %d: EMA initialization", iteration)
        if iteration == self.apply_point:
            self.apply()
            log.info("iteration %d: EMA applied to the weights", iteration)
        elif iteration < self.apply_point:
            self.update(self.alpha)

    @contextlib.contextmanager
    def swapped_in(self):
        """The averages in the network's parameters for the duration (to save them)."""
        originals = [p.data for p in self.params]
        try:
            for p, avg in zip(self.params, self.averages):
                p.data = avg
            yield
        finally:
            for p, data in zip(self.params, originals):
                p.data = data

    def save(self, path) -> None:
        """``save_weights_upto(net, path, net.n, 1)``: the file with the averages."""
        with self.swapped_in():
            self.net.save_weights(path)

    def state(self) -> list[torch.Tensor] | None:
        """The averages for the sidecar (None before initialisation: nothing to keep)."""
        return [a.detach().cpu().clone() for a in self.averages] if self.initialized() else None

    @torch.no_grad()
    def load(self, values, source) -> None:
        """Averages read from the sidecar ``source``; refused unless they fit this network."""
        shapes = [tuple(a.shape) for a in self.averages]
        got = [tuple(v.shape) for v in values] if isinstance(values, (list, tuple)) and all(
            isinstance(v, torch.Tensor) for v in values) else None
        if got != shapes:
            raise WeightsError(f"the EMA in this sidecar does not fit the network ({len(shapes)} tensors "
                               f"expected)", file=source)
        for avg, v in zip(self.averages, values):
            avg.copy_(v)
