"""What parametric layers share: Darknet's batch norm and the file-order blob list."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# pjreddie's CPU normalize_cpu: (x - mean) / (sqrt(var) + .000001f). The oracle was built with it.
BN_EPS = 0.000001
# AlexeyAB's normalize_kernel and cuDNN batch norm: (x - mean) / sqrt(var + .00001f) (netcfg.FORKS).
ALEXEYAB_BN_EPS = 0.00001


@dataclass
class Blob:
    """One float array of a layer, in the order Darknet reads and writes it.

    ``transposable``: connected weights, stored (inputs, outputs) in files whose header says
    "transpose" (major or minor > 1000). ``bn_scale``: part of the triple that a layer with
    ``dontloadscales=1`` skips on load.
    """

    name: str
    tensor: torch.Tensor
    transposable: bool = False
    bn_scale: bool = False


class BatchNormMixin:
    """Darknet's batch norm over dim 1 with ``scales``, ``rolling_mean``, ``rolling_variance``.

    Training uses the batch mean and the unbiased batch variance and updates the rolling
    statistics by 0.99/0.01, as ``forward_batchnorm_layer`` does (per mini-batch, as Darknet:
    with ``subdivisions`` > 1 the statistics are those of each mini-batch).
    """

    fork = "pjreddie"  # whose denominator: set per layer from [net] ``fork`` (netcfg.FORKS)

    def bn_denominator(self, var):
        """``sqrt(var) + 1e-6`` (pjreddie) or ``sqrt(var + 1e-5)`` (AlexeyAB)."""
        return (var + ALEXEYAB_BN_EPS).sqrt() if self.fork == "alexeyab" else var.sqrt() + BN_EPS

    def _init_bn(self, n: int):
        self.scales = nn.Parameter(torch.empty(n))
        self.register_buffer("rolling_mean", torch.empty(n))
        self.register_buffer("rolling_variance", torch.empty(n))

    def _batch_norm(self, x, biases):
        """``scales * (x - mean) / bn_denominator(var) + biases``, per channel (dim 1)."""
        if not self.training:
            # One fused pass: F.batch_norm with eps=0 and var' = denominator^2 divides by
            # Darknet's denominator (to float rounding).
            denominator = self.bn_denominator(self.rolling_variance).square()
            return F.batch_norm(x, self.rolling_mean, denominator, self.scales, biases, False, 0.0, 0.0)
        view = (1, -1) + (1,) * (x.dim() - 2)
        dims = (0,) + tuple(range(2, x.dim()))
        mean, var = self._batch_stats(x if x.dtype == torch.float32 else x.float(), dims, view)
        with torch.no_grad():
            self.rolling_mean.mul_(0.99).add_(0.01 * mean)
            self.rolling_variance.mul_(0.99).add_(0.01 * var)
        # per-channel scale and shift, applied in one fused pass (in the input's dtype under autocast)
        scale = self.scales / self.bn_denominator(var)
        shift = biases - mean * scale
        return torch.addcmul(shift.to(x.dtype).view(view), x, scale.to(x.dtype).view(view))

    sync_group = None  # a torch.distributed process group: statistics over all its processes

    def _batch_stats(self, x, dims, view):
        """Mean and unbiased variance of this batch, or of the whole distributed batch when
        ``sync_group`` is set (synchronized batch norm; the all-reduce carries gradients)."""
        if self.sync_group is None:
            var, mean = torch.var_mean(x, dims, correction=1)
            return mean, var
        from torch.distributed.nn.functional import all_reduce
        count = all_reduce(x.new_tensor(float(x.numel() // x.shape[1])), group=self.sync_group)
        mean = all_reduce(x.sum(dims), group=self.sync_group) / count
        squares = all_reduce((x - mean.view(view)).square().sum(dims), group=self.sync_group)
        return mean, squares / (count - 1)

    def _bn_blobs(self) -> list[Blob]:
        return [Blob("scales", self.scales, bn_scale=True),
                Blob("rolling_mean", self.rolling_mean, bn_scale=True),
                Blob("rolling_variance", self.rolling_variance, bn_scale=True)]


def refuse_unsupported(section, *keys, zero=0):
    """Options Darknet reads that would change the numbers but are not implemented: refuse."""
    for key in keys:
        if section.has(key) and section.int(key, zero) != zero:
            raise section.error("is not supported by darknet_py", key)
        section.ignore(key)
