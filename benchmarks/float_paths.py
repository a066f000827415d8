"""Which float paths a CPU's instruction set and thread count select, byte for byte.

The adapt stage's checkpoint (and so every figure after it) differs by machine because PyTorch
picks its kernels by the CPU's instruction set: ATen's vectorised ops (softmax, reductions) by
``torch.backends.cpu.get_cpu_capability()``, oneDNN's convolutions by its ISA, MKL's GEMM by its
code path; and their float sums by the thread count. On one machine, the environment variables of
:data:`demo_experiments.ISA_CAPS` cap those instruction sets, so an AVX-512 CPU runs the kernels of
an AVX2-only one (AMD Zen 2/3, older Intel) and the pipeline can be checked on "another CPU"
(``benchmarks/results/grid_probe_avx2.md``).

This script runs one small probe (a convolution forward and backward, softmax, a linear layer, a
column sum, on fixed random inputs) in a fresh process per configuration and writes the MD5 of
each output, and which differ from the first configuration, to ``float_paths.{json,md}``.

Usage::

    python benchmarks/float_paths.py                 # native 1 and 2 threads; AVX2, AVX caps at 2 threads
    python benchmarks/float_paths.py --out /tmp/fp
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from demo_experiments import ISA_CAPS, cpu_model  # noqa: E402

AVX2_CAPS = dict(zip(ISA_CAPS, ("avx2", "AVX2", "AVX2"), strict=True))  # AMD Zen 2/3, Intel Haswell+
# no AVX2 (Intel Sandy/Ivy Bridge): ATen runs its "default" kernels on a CPU without AVX2
AVX_CAPS = dict(zip(ISA_CAPS, ("default", "AVX", "AVX"), strict=True))
# name -> (torch threads, instruction-set caps); the first is the reference the others are compared to
CONFIGS: dict[str, tuple[int, dict[str, str]]] = {
    "native, 1 thread": (1, {}),
    "native, 2 threads": (2, {}),
    "AVX2 caps, 2 threads": (2, AVX2_CAPS),
    "AVX caps, 2 threads": (2, AVX_CAPS),
}
SEED = 0


def probe(threads: int) -> dict[str, Any]:
    """MD5 (8 hex digits) of each op's output on fixed inputs, with this process's instruction sets."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    images = torch.randn(64, 3, 64, 64, requires_grad=True)
    conv = torch.nn.Conv2d(3, 32, 3)
    linear = torch.nn.Linear(512, 512)
    pooled = conv(images).relu().mean((2, 3))
    rows = torch.randn(2000, 64)
    (pooled.sum() + linear(torch.randn(256, 512)).tanh().sum()).backward()
    outputs = {
        "conv2d forward (oneDNN)": pooled,
        "conv2d weight grad (oneDNN)": conv.weight.grad,
        "conv2d input grad (oneDNN)": images.grad,
        "linear weight grad (MKL GEMM)": linear.weight.grad,
        "matmul (MKL GEMM)": rows @ rows.T,
        "softmax (ATen)": torch.softmax(rows, 1),
        "column sum (ATen)": rows.sum(0),
    }
    digests = {name: hashlib.md5(t.detach().numpy().tobytes()).hexdigest()[:8] for name, t in outputs.items()}
    return {"capability": torch.backends.cpu.get_cpu_capability(), "threads": threads, "md5": digests}


def run_config(threads: int, caps: dict[str, str]) -> dict[str, Any]:
    """:func:`probe` in a fresh interpreter (the caps are read once, at import) with ``caps`` set."""
    env = {k: v for k, v in os.environ.items() if k not in ISA_CAPS} | caps
    out = subprocess.run(
        [sys.executable, __file__, "--probe", str(threads)],
        env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout) | {"caps": caps}


def compare(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per configuration after the first: the ops whose bytes differ from the first's."""
    names = list(results)
    ref = results[names[0]]["md5"]
    return {n: [op for op, h in results[n]["md5"].items() if h != ref[op]] for n in names[1:]}


def markdown(results: dict[str, dict[str, Any]], machine: str) -> str:
    """The table: one column per configuration, ``same`` where the bytes equal the first column's."""
    names = list(results)
    ref = results[names[0]]["md5"]
    lines = [
        "# Float paths by instruction set and thread count (`python benchmarks/float_paths.py`)",
        "",
        f"Machine: {machine}. MD5 of each op's output on fixed inputs, one fresh process per column;",
        f"`same`: byte-identical to `{names[0]}`.",
        "",
        "| op | " + " | ".join(f"{n} ({results[n]['capability']})" for n in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for op in ref:
        others = [results[n]["md5"][op] for n in names[1:]]
        cells = [ref[op]] + ["same" if digest == ref[op] else digest for digest in others]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every configuration of :data:`CONFIGS` and write ``float_paths.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--probe", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe is not None:
        print(json.dumps(probe(args.probe)))
        return
    results = {name: run_config(threads, caps) for name, (threads, caps) in CONFIGS.items()}
    machine = cpu_model()
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "configs": results, "differ_from_first": compare(results)}
    (args.out / "float_paths.json").write_text(json.dumps(payload, indent=1) + "\n")
    table = markdown(results, machine)
    (args.out / "float_paths.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
