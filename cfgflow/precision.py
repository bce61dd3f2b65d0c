"""The mixed-precision policy of training: one function decides it from the device.

    choose_precision("cpu")            -> fp32 (autocast off, no scaler)
    choose_precision("cuda")  # A100   -> bf16 autocast (compute capability 8.0 and up)
    choose_precision("cuda")  # T4     -> fp16 autocast + GradScaler (capability below 8.0)

GPUs older than Ampere (the Colab free tier's T4 is compute capability 7.5) have fp16 tensor
cores but no bf16 ones: bf16 autocast runs there on slow fallback kernels, fp16 is fast. fp16
has a narrow exponent range, so small gradients underflow to 0 unless the loss is scaled up
before ``backward`` and the gradients are scaled back before the optimiser step:
``torch.amp.GradScaler`` does both and skips the steps whose gradients overflowed. bf16 has
fp32's exponent range and needs no scaler. On a CPU, training autocast does not pay
(docs/benchmarks.md), so ``"auto"`` keeps fp32 there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Precision:
    """How a training step runs: ``dtype`` of the autocast region (None: fp32, no autocast)
    and whether a gradient scaler guards the backward pass (fp16 only)."""

    name: str  # "bf16", "fp16" or "fp32"
    dtype: Optional[torch.dtype]
    grad_scaler: bool

    def autocast(self, device_type: str):
        """The autocast context of the forward pass (a disabled one for fp32)."""
        return torch.autocast(device_type, dtype=self.dtype or torch.float32,
                              enabled=self.dtype is not None)

    def make_scaler(self, device_type: str) -> "torch.amp.GradScaler":
        """A ``GradScaler`` that is enabled for fp16 and a pass-through otherwise."""
        return torch.amp.GradScaler(device_type, enabled=self.grad_scaler)

    def __str__(self) -> str:
        return {"bf16": "bf16 autocast", "fp16": "fp16 autocast + gradient scaler",
                "fp32": "fp32"}[self.name]


FP32 = Precision("fp32", None, False)
BF16 = Precision("bf16", torch.bfloat16, False)
FP16 = Precision("fp16", torch.float16, True)
_BY_NAME = {"fp32": FP32, "bf16": BF16, "fp16": FP16}


def choose_precision(device: Union[str, torch.device],
                     precision: Union[str, Precision] = "auto") -> Precision:
    """The :class:`Precision` to train with on ``device``.

    ``precision="auto"``: on CUDA bf16 from compute capability 8.0 on (A100, L4, H100), fp16
    with a gradient scaler below (T4, V100); fp32 on every other device. ``"bf16"``,
    ``"fp16"`` and ``"fp32"`` force a choice; ``"fp16"`` needs a CUDA device, or a CPU
    (where torch supports fp16 autocast and ``GradScaler`` too, slowly: for tests).
    """
    if isinstance(precision, Precision):
        return precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision != "auto":
        if precision == "fp16" and device.type not in ("cuda", "cpu"):
            raise ValueError(f"precision='fp16' needs a CUDA (or CPU) device, got {device}")
        return _BY_NAME[precision]
    if device.type != "cuda":
        return FP32
    major, _minor = torch.cuda.get_device_capability(device)
    return BF16 if major >= 8 else FP16
