"""Choose the device and dtype a model is served in.

The decisions are pure functions of what the machine offers (tested with tables); `probe()` is the
only place that asks torch and /proc/cpuinfo. bf16 is preferred wherever the hardware computes it
natively: on the measured 2-core EPYC, bf16 matmuls ran at ~390 GFLOP/s against ~160 for fp32
(notes/runtime-performance-facts.md). Without native bf16 (no AVX512_BF16/AMX), oneDNN emulates it
and fp32 is the safer choice.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

# Every spelling a user may pass, mapped to torch's canonical dtype name.
DTYPE_ALIASES: dict[str, str] = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}
# CPU flags (Linux /proc/cpuinfo spelling) that mean bf16 is computed in hardware.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What the machine offers, as far as the dtype/device decision cares."""

    cuda_available: bool
    cuda_bf16: bool
    cpu_bf16: bool


def normalize_dtype(name: str) -> str:
    """Canonical torch dtype name for a user-facing spelling; "auto" stays "auto"."""
    key = name.strip().lower()
    if key == "auto":
        return "auto"
    if key.startswith("torch."):
        key = key.removeprefix("torch.")
    if key not in DTYPE_ALIASES:
        choices = ", ".join(["auto", *sorted(DTYPE_ALIASES)])
        raise ValueError(f"unknown dtype {name!r}; choose one of {choices}")
    return DTYPE_ALIASES[key]


def choose_device(requested: str, hw: Hardware) -> str:
    """`auto` -> cuda when present, else cpu. Asking for cuda on a machine without it is an error
    rather than a silent fallback: a pod scheduled for a GPU must not quietly serve on CPU."""
    req = requested.strip().lower()
    if req == "auto":
        return "cuda" if hw.cuda_available else "cpu"
    if req == "cpu":
        return "cpu"
    if req == "cuda" or req.startswith("cuda:"):
        if not hw.cuda_available:
            raise ValueError(f"device {requested!r} was asked for but CUDA is not available")
        return req
    raise ValueError(f"unknown device {requested!r}; choose auto, cpu, cuda or cuda:N")


def choose_dtype(requested: str, *, device: str, hw: Hardware) -> str:
    """An explicit dtype wins; `auto` picks bf16 where the hardware has it, else fp16 on CUDA and
    fp32 on CPU (fp16 on CPU has no fast kernels)."""
    dtype = normalize_dtype(requested)
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if hw.cuda_bf16 else "float16"
    return "bfloat16" if hw.cpu_bf16 else "float32"


def cpu_flags_have_bf16(flags: frozenset[str]) -> bool:
    """True when the CPU computes bf16 natively (x86 AVX512_BF16 or AMX, Arm BF16)."""
    return bool(flags & CPU_BF16_FLAGS)


def parse_cpuinfo_flags(text: str) -> frozenset[str]:
    """The union of the `flags` (x86) and `Features` (Arm) lines of /proc/cpuinfo."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in {"flags", "features"}:
            flags.update(value.split())
    return frozenset(flags)


def read_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's flags, or none where /proc/cpuinfo is missing (then fp32 is the safe default)."""
    try:
        return parse_cpuinfo_flags(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return frozenset()


def probe() -> Hardware:
    """Ask torch and the CPU what this machine offers."""
    import torch

    cuda = bool(torch.cuda.is_available())
    return Hardware(
        cuda_available=cuda,
        cuda_bf16=cuda and bool(torch.cuda.is_bf16_supported()),
        cpu_bf16=cpu_flags_have_bf16(read_cpu_flags()),
    )


def resolve(*, device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """(device, dtype) for this machine: what `load_model` uses."""
    hw = probe()
    chosen = choose_device(device, hw)
    return chosen, choose_dtype(dtype, device=chosen, hw=hw)
