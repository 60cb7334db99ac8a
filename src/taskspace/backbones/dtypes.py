"""The dtype of a backbone's frozen weights: what ``dtype`` may be, what it resolves to on a device, and whether a
device computes bfloat16 fast."""

from __future__ import annotations

import os
import platform

import torch

from ..errors import ConfigError


#: Set to 1 (or 0) to make ``dtype=auto`` resolve on this CPU as it would on one with (or without) fast bfloat16:
#: the way to check on any host what a host of the other kind computes (the suite runs under both).
FAST_BF16_ENV = "TASKSPACE_FAST_BF16"

#: Where Linux describes the CPU: its model name and instruction-set flags.
CPUINFO = "/proc/cpuinfo"


def _cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU has AMX or AVX-512 BF16, or what :data:`FAST_BF16_ENV` says it has."""
    forced = os.environ.get(FAST_BF16_ENV, "").strip()
    if forced:
        if forced not in ("0", "1"):
            raise ConfigError(f"{FAST_BF16_ENV}={forced!r}: expected 1 (resolve dtype=auto as on a CPU with fast "
                              "bfloat16) or 0 (as on one without)")
        return forced == "1"
    flags = (_cpuinfo("flags") or "").split()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _cpuinfo(key: str) -> str | None:
    """The first value of ``key`` in :data:`CPUINFO`; None where there is none (or no such file)."""
    try:
        with open(CPUINFO, encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":", 1)[0].strip() == key),
                        None)
    except OSError:
        return None


def cpu_model() -> str:
    """This machine's CPU in words: its model name where /proc/cpuinfo has one, else its architecture."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def fast_bfloat16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products fast: CUDA with bf16 support, or a CPU with AMX or
    AVX-512 BF16 (elsewhere PyTorch emulates bf16 on the CPU, many times slower than float32). On the CPU,
    :data:`FAST_BF16_ENV` overrides what the flags say."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return _cpu_has_fast_bfloat16()


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: What ``dtype`` may be: ``auto``, ``default`` (the library's choice, :func:`default_dtype`) or a dtype's name.
DTYPE_CHOICES = ("auto", "default", *DTYPES)


def default_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype of the frozen weights when none is asked for: float32 on the CPU, so that a command computes the
    same numbers on every CPU host whatever its instruction set; on CUDA, bfloat16 where the GPU supports it
    (not measured by taskspace yet: ``benchmarks/gpu.sh`` measures both), else float32."""
    device = torch.device(device)
    if device.type == "cuda" and fast_bfloat16(device):
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype of the frozen weights: ``None`` or ``default`` is :func:`default_dtype`; ``auto`` is bfloat16
    where :func:`fast_bfloat16` (a CPU with AMX or AVX-512 BF16, or CUDA with bf16), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "default":
        return default_dtype(device)
    if dtype == "auto":
        return torch.bfloat16 if fast_bfloat16(device) else torch.float32
    try:
        return DTYPES[dtype]
    except (KeyError, TypeError):
        raise ConfigError(f"dtype={dtype!r}: expected {', '.join(DTYPE_CHOICES)}") from None
