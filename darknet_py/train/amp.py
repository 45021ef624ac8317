"""``--amp``: mixed precision where the hardware makes it pay, float32 with a reason where not.

On a CPU, bfloat16 autocast pays only with bfloat16 instructions (AVX-512-BF16 or AMX, what
oneDNN calls bf16 support); without them oneDNN converts to and from float32 around each
operation and an update is several times slower than in float32. On CUDA: bfloat16 where the GPU has it (same range as float32, no
scaling needed), else float16 with a gradient scaler against underflow.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AmpPlan:
    """What ``--amp`` does on this device: ``dtype`` None means float32 throughout."""

    dtype: torch.dtype | None
    scaler: bool
    note: str  # one line for the banner

    @property
    def enabled(self) -> bool:
        return self.dtype is not None


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def amp_plan(requested: bool, device: torch.device, cpu_bf16: bool | None = None,
             cuda_bf16: bool | None = None) -> AmpPlan:
    """The plan for ``--amp`` on ``device`` (the two capability flags default to this machine's)."""
    if not requested:
        return AmpPlan(None, False, "")
    if device.type == "cuda":
        if cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_bf16_supported()
        if cuda_bf16:
            return AmpPlan(torch.bfloat16, False, "--amp: bfloat16 autocast on CUDA")
        return AmpPlan(torch.float16, True, "--amp: float16 autocast on CUDA with a gradient scaler "
                                            "(this GPU has no bfloat16)")
    if device.type == "cpu":
        if cpu_bf16 is None:
            cpu_bf16 = cpu_has_bf16()
        if cpu_bf16:
            return AmpPlan(torch.bfloat16, False, "--amp: bfloat16 autocast (this CPU has bfloat16 instructions)")
        return AmpPlan(None, False, f"--amp ignored: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no "
                                    "bfloat16 instructions (AVX-512-BF16 or AMX), where bfloat16 autocast is "
                                    "several times slower than float32; training in float32")
    return AmpPlan(None, False, f"--amp ignored: no autocast plan for {device.type}; training in float32")
