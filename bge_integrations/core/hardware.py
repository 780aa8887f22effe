"""Device and dtype choice, with CPU features detected at run time."""

from __future__ import annotations

import functools
import warnings

import torch

__all__ = ["resolve_device", "resolve_dtype", "cpu_flags", "cpu_has_native_bf16", "DTYPES"]

DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (empty when they cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512_BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> cuda, else mps, else cpu; anything else is checked and used."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        msg = f"Invalid device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        raise ValueError(msg) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        msg = f"device={device!r} was requested but CUDA is not available; use 'cpu' or 'auto'."
        raise ValueError(msg)
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> str:
    """Name of the compute dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"int8"``.

    ``"auto"`` is float16 on CUDA and float32 elsewhere. bfloat16 on a CPU without native
    bf16 is allowed but warned about: there it is many times slower than float32.
    """
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype is None or dtype == "auto":
        return "float16" if device.type == "cuda" else "float32"
    if dtype not in DTYPES:
        msg = f"Unknown dtype {dtype!r}; valid values: {', '.join(DTYPES)}."
        raise ValueError(msg)
    if dtype == "int8" and device.type != "cpu":
        msg = "dtype='int8' (dynamic quantization) runs on the CPU only; use device='cpu'."
        raise ValueError(msg)
    if dtype == "float16" and device.type == "cpu":
        warnings.warn("float16 on the CPU is slow and lossy; float32 is the CPU default.",
                      stacklevel=3)
    if dtype == "bfloat16" and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "dtype='bfloat16' on a CPU without native bf16 (no AVX512_BF16/AMX in its flags) is "
            "emulated and many times slower than float32; use dtype='float32' or 'int8'.",
            stacklevel=3,
        )
    return dtype
