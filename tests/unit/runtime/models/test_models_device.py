"""Device and dtype decisions, as tables: the serving dtype follows what the hardware computes."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_runtime.models import device

pytestmark = pytest.mark.unit

CPU_BF16 = device.Hardware(cuda_available=False, cuda_bf16=False, cpu_bf16=True)
CPU_PLAIN = device.Hardware(cuda_available=False, cuda_bf16=False, cpu_bf16=False)
GPU_BF16 = device.Hardware(cuda_available=True, cuda_bf16=True, cpu_bf16=False)
GPU_OLD = device.Hardware(cuda_available=True, cuda_bf16=False, cpu_bf16=True)


@pytest.mark.parametrize(
    ("requested", "hw", "expected"),
    [
        ("auto", CPU_BF16, "cpu"),
        ("auto", GPU_BF16, "cuda"),
        ("cpu", GPU_BF16, "cpu"),
        ("cuda", GPU_OLD, "cuda"),
        ("cuda:1", GPU_OLD, "cuda:1"),
        ("AUTO", CPU_PLAIN, "cpu"),
    ],
)
def test_device_choice(requested: str, hw: device.Hardware, expected: str) -> None:
    assert device.choose_device(requested, hw) == expected


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_cuda_requested_without_cuda_is_an_error_not_a_silent_cpu_fallback(requested: str) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        device.choose_device(requested, CPU_BF16)


def test_unknown_device_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown device"):
        device.choose_device("tpu", CPU_BF16)


@pytest.mark.parametrize(
    ("requested", "dev", "hw", "expected"),
    [
        ("auto", "cpu", CPU_BF16, "bfloat16"),
        ("auto", "cpu", CPU_PLAIN, "float32"),
        ("auto", "cuda", GPU_BF16, "bfloat16"),
        ("auto", "cuda:0", GPU_OLD, "float16"),
        ("fp32", "cpu", CPU_BF16, "float32"),
        ("bf16", "cpu", CPU_PLAIN, "bfloat16"),
        ("fp16", "cuda", GPU_BF16, "float16"),
        ("torch.float16", "cuda", GPU_BF16, "float16"),
        ("Float32", "cpu", CPU_PLAIN, "float32"),
    ],
)
def test_dtype_choice(requested: str, dev: str, hw: device.Hardware, expected: str) -> None:
    assert device.choose_dtype(requested, device=dev, hw=hw) == expected


def test_unknown_dtype_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown dtype 'int4'.*bf16"):
        device.normalize_dtype("int4")


CPUINFO_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme avx2 avx512f avx512bw avx512_bf16 avx512_vnni
bugs\t\t: sysret_ss_attrs
"""
CPUINFO_OLD_XEON = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n"
CPUINFO_ARM = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    ("text", "has_bf16"),
    [(CPUINFO_EPYC, True), (CPUINFO_OLD_XEON, False), (CPUINFO_ARM, True), ("", False)],
)
def test_bf16_is_detected_from_cpu_flags(text: str, has_bf16: bool) -> None:
    flags = device.parse_cpuinfo_flags(text)
    assert device.cpu_flags_have_bf16(flags) is has_bf16


def test_bug_lines_do_not_count_as_flags() -> None:
    assert "sysret_ss_attrs" not in device.parse_cpuinfo_flags(CPUINFO_EPYC)


def test_missing_cpuinfo_means_no_flags(tmp_path: Path) -> None:
    assert device.read_cpu_flags(tmp_path / "absent") == frozenset()
