"""The instruction-set caps the "another CPU" check relies on (``benchmarks/float_paths.py``).

The AVX2 emulation of ``benchmarks/results/grid_probe_avx2.md`` is only a check if the caps reach
PyTorch in a fresh process and every probe row says it ran under them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import float_paths  # noqa: E402
from demo_experiments import ISA_CAPS, cpu_model  # noqa: E402


def test_cpu_model_names_the_caps_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    plain = cpu_model()
    assert "(" not in plain and plain
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert cpu_model() == f"{plain} (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)"


def test_compare_lists_the_ops_that_differ_from_the_first_config() -> None:
    results = {
        "a": {"md5": {"conv": "1", "softmax": "2", "sum": "3"}},
        "b": {"md5": {"conv": "1", "softmax": "9", "sum": "3"}},
        "c": {"md5": {"conv": "8", "softmax": "2", "sum": "3"}},
    }
    assert float_paths.compare(results) == {"b": ["softmax"], "c": ["conv"]}
    table = float_paths.markdown({k: v | {"capability": "X"} for k, v in results.items()}, "cpu")
    assert "| softmax | 2 | 9 | same |" in table


def test_probe_is_deterministic_in_one_process() -> None:
    threads = torch.get_num_threads()
    try:
        assert float_paths.probe(1)["md5"] == float_paths.probe(1)["md5"]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"), reason="needs an x86 CPU with AVX2"
)
def test_avx2_caps_reach_pytorch_in_a_fresh_process() -> None:
    capped = float_paths.run_config(1, float_paths.AVX2_CAPS)
    assert capped["capability"] == "AVX2"
    assert capped["caps"] == float_paths.AVX2_CAPS
    native = float_paths.run_config(1, {})
    assert native["capability"] == torch.backends.cpu.get_cpu_capability()
