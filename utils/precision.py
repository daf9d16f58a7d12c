"""Mixed precision, one vocabulary for configs, script flags, training, inference and benchmarks: an `amp` name and
the autocast dtype it means on a device.

    auto   bf16 on a CPU that computes bf16 natively (AVX512_BF16 or AMX), fp32 everywhere else, CUDA included
    off    fp32 everywhere (the evaluation protocol's precision)
    fp16   float16 autocast (training adds a GradScaler); on the CPU fp32, which has no fast float16
    bf16   bfloat16 autocast, on CUDA and on the CPU (slower than fp32 on CPUs without native bf16)

`auto` on CUDA is fp32: at batch 1 the networks are bound by kernel launches there, and fp16 or bf16 autocast
adds casts without saving time (BENCHMARKS.md, "GPU"). This module imports PyTorch only when a dtype is asked
for: the scripts read AMP_NAMES for --help before PyTorch loads.
"""
from __future__ import annotations

PRECISIONS = ("off", "fp16", "bf16")  # the amp names of a precision each
AMP_NAMES = ("auto", *PRECISIONS)    # what may be asked for
_DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16"}


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512_BF16 or AMX-BF16), as PyTorch's cpuinfo reads it.
    Without it oneDNN emulates bf16, slower than fp32."""
    import torch  # noqa: PLC0415 — not at the top: --help reads AMP_NAMES before PyTorch loads
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def precision(amp: str, device_type: str) -> str:
    """The precision `amp` runs in on a device type ("cuda", "cpu", ...): fp32, fp16 or bf16."""
    if amp not in AMP_NAMES:
        raise ValueError(f"amp must be one of {', '.join(AMP_NAMES)}, got {amp!r}")
    if amp == "auto":
        return "bf16" if device_type == "cpu" and cpu_computes_bf16() else "fp32"
    return "fp32" if amp == "off" or (amp == "fp16" and device_type != "cuda") else amp


def autocast_dtype(amp: str, device_type: str):
    """The torch dtype autocast runs in for `amp` on a device type, or None for fp32."""
    name = precision(amp, device_type)
    if name == "fp32":
        return None
    import torch  # noqa: PLC0415 — as above
    return getattr(torch, _DTYPE_NAMES[name])
