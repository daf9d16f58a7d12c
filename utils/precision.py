"""Mixed precision, one vocabulary for configs, script flags, training, inference and benchmarks: an `amp` name and
the autocast dtype it means on a device.

    off    fp32 everywhere (the evaluation protocol's precision)
    fp16   float16 autocast (training adds a GradScaler); on the CPU fp32, which has no fast float16
    bf16   bfloat16 autocast, on CUDA and on the CPU

This module imports PyTorch only when a dtype is asked for: the scripts read AMP_NAMES for --help before
PyTorch loads.
"""
from __future__ import annotations

AMP_NAMES = ("off", "fp16", "bf16")
_DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16"}


def autocast_dtype(amp: str, device_type: str):
    """The torch dtype autocast runs in for `amp` on a device type ("cuda", "cpu", ...), or None for fp32."""
    if amp not in AMP_NAMES:
        raise ValueError(f"amp must be one of {', '.join(AMP_NAMES)}, got {amp!r}")
    if amp == "off" or (amp == "fp16" and device_type != "cuda"):
        return None
    import torch  # noqa: PLC0415 — not at the top: --help reads AMP_NAMES before PyTorch loads
    return getattr(torch, _DTYPE_NAMES[amp])


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX): bf16 autocast is faster than fp32 there, and
    slower elsewhere, where PyTorch emulates it."""
    import torch  # noqa: PLC0415 — as above

    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
