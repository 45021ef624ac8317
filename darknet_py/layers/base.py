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


# The running statistics: rolling = .99 * rolling + .01 * batch statistic (both forks' trainings).
ROLLING_KEEP, ROLLING_NEW = 0.99, 0.01
# Darknet's backward (mean_delta_cpu, variance_delta_cpu, normalize_delta_cpu) divides by
# sqrt(variance + .00001f), whatever the forward's denominator was.
BACKWARD_EPS = 0.00001


def _reduce(tensor, group):
    """Sum ``tensor`` over the processes of ``group`` in place (nothing without one)."""
    if group is not None:
        torch.distributed.all_reduce(tensor, group=group)
    return tensor


class DarknetBatchNorm(torch.autograd.Function):
    """Training-mode batch norm over dim 1 as Darknet computes it, forward and backward.

    ``fork="pjreddie"`` (forward_batchnorm_layer, normalize_cpu): ``(x - mean) / (sqrt(var) +
    1e-6)`` with the unbiased batch variance. Its backward is Darknet's backward_batchnorm_layer,
    which is NOT the gradient of that forward: mean_delta_cpu, variance_delta_cpu and
    normalize_delta_cpu use ``sqrt(var + 1e-5)`` and divide by ``batch*spatial``. Bias and scale
    gradients (backward_bias, backward_scale_cpu) are the exact ones.

    ``fork="alexeyab"``: cuDNN's cudnnBatchNormalizationForwardTraining / Backward, which
    AlexeyAB's GPU builds train with: ``(x - mean) / sqrt(biased var + 1e-5)`` and its exact
    gradient (the same three formulas with the biased variance).

    Returns the output and, for the running statistics, the batch mean and unbiased variance
    (not differentiable). With ``group`` (a process group) the statistics and the backward's
    sums are taken over all its processes (synchronized batch norm).
    """

    @staticmethod
    def forward(ctx, x, scales, biases, fork, group):
        x32 = x if x.dtype == torch.float32 else x.float()
        dims = (0,) + tuple(range(2, x.dim()))
        view = (1, -1) + (1,) * (x.dim() - 2)
        if group is None:
            count = x.numel() // x.shape[1]
            # ATen's fused statistics pass (mean and biased variance; 2.6x faster than var_mean)
            mean, biased = torch.batch_norm_update_stats(x32, None, None, 0.0)
            unbiased = biased * (count / (count - 1) if count > 1 else float("nan"))  # C: 0 / 0
        else:
            count = int(_reduce(x32.new_tensor(float(x.numel() // x.shape[1])), group).item())
            mean = _reduce(x32.sum(dims), group) / count
            unbiased = _reduce((x32 - mean.view(view)).square().sum(dims), group) / (count - 1)
        if fork == "alexeyab":
            variance = unbiased * ((count - 1) / count)
            denominator = (variance + ALEXEYAB_BN_EPS).sqrt()
        else:
            variance = unbiased
            denominator = unbiased.sqrt() + BN_EPS
        scale = scales / denominator
        shift = biases - mean * scale
        # per-channel scale and shift in one fused pass (in the input's dtype under autocast)
        out = torch.addcmul(shift.to(x.dtype).view(view), x, scale.to(x.dtype).view(view))
        ctx.save_for_backward(x, scales, mean, variance, denominator)
        ctx.count, ctx.group, ctx.dims, ctx.view = count, group, dims, view
        ctx.mark_non_differentiable(mean, unbiased)
        return out, mean, unbiased

    @staticmethod
    def backward(ctx, grad, _mean_grad, _var_grad):
        x, scales, mean, variance, denominator = ctx.saved_tensors
        g = grad if grad.dtype == torch.float32 else grad.float()
        x32 = x if x.dtype == torch.float32 else x.float()
        if ctx.group is None:
            grad_x, grad_scales, grad_bias = DarknetBatchNorm._local_backward(ctx, g, x32, scales, mean, variance)
        else:
            grad_x, grad_scales, grad_bias = DarknetBatchNorm._synced_backward(ctx, g, x32, scales, mean, variance)
        grad_scales = grad_scales / denominator  # backward_scale_cpu: sum of delta * x_norm
        return None if grad_x is None else grad_x.to(x.dtype), grad_scales, grad_bias, None, None

    @staticmethod
    def _local_backward(ctx, g, x, scales, mean, variance):
        """ATen's fused batch-norm backward: with ``invstd = 1 / sqrt(variance + 1e-5)`` its
        input gradient, ``scales * invstd * (g - mean(g) - (x - mean) * invstd^2 * mean(g * (x -
        mean)))``, is normalize_delta_cpu after mean_delta_cpu and variance_delta_cpu. Returns
        that, ``sum(g * (x - mean))`` and ``sum(g)``."""
        invstd = (variance + BACKWARD_EPS).rsqrt()
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            g, x, scales, None, None, mean, invstd, True, BACKWARD_EPS, [ctx.needs_input_grad[0], True, True])
        return grad_x, grad_weight / invstd, grad_bias

    @staticmethod
    def _synced_backward(ctx, g, x, scales, mean, variance):
        """The same sums taken over the process group: the parameters get this process's sums
        (DistributedDataParallel adds the processes' gradients); x needs the whole batch's."""
        dims, view, n = ctx.dims, ctx.view, ctx.count
        centred = x - mean.view(view)
        sums = torch.stack([g.sum(dims), (g * centred).sum(dims)])  # backward_bias; sum of delta * (x - mean)
        grad_x = None
        if ctx.needs_input_grad[0]:
            total = _reduce(sums.clone(), ctx.group)
            inv = (variance.double() + BACKWARD_EPS).rsqrt()
            mean_delta = -scales.double() * total[0].double() * inv  # mean_delta_cpu
            variance_delta = -0.5 * scales.double() * total[1].double() * inv ** 3  # variance_delta_cpu
            a = (scales.double() * inv).float().view(view)  # normalize_delta_cpu, per channel
            b = (variance_delta * 2 / n).float().view(view)
            c = (mean_delta / n).float().view(view)
            grad_x = torch.addcmul(torch.addcmul(c, g, a), centred, b)
        return grad_x, sums[1], sums[0]


class BatchNormMixin:
    """Darknet's batch norm over dim 1 with ``scales``, ``rolling_mean``, ``rolling_variance``.

    Training goes through ``DarknetBatchNorm`` (the fork's forward and backward) and updates
    the rolling statistics by 0.99/0.01, as ``forward_batchnorm_layer`` does (per mini-batch,
    as Darknet: with ``subdivisions`` > 1 the statistics are those of each mini-batch).
    """

    fork = "pjreddie"  # whose denominator: set per layer from [net] ``fork`` (netcfg.FORKS)
    sync_group = None  # a torch.distributed process group: statistics over all its processes

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
        out, mean, var = DarknetBatchNorm.apply(x, self.scales, biases, self.fork, self.sync_group)
        with torch.no_grad():
            self.rolling_mean.mul_(ROLLING_KEEP).add_(ROLLING_NEW * mean)
            self.rolling_variance.mul_(ROLLING_KEEP).add_(ROLLING_NEW * var)
        return out

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
