"""The demo's train stage: one process vs ``train.workers`` processes, side by side in one run.

Each arm runs ``cliper run train`` (the DVC stage's command) as a fresh process in its own copy
of a project whose features exist (``--root``, after ``dvc repro extract``), with its own empty
checkpoint cache, one arm after another on an otherwise idle machine. Arms:

* ``before``: one process, a checkpoint after every epoch (``workers: 1``, ``checkpoint_every_s: 0``);
* ``spaced checkpoints``: one process, a checkpoint at most every 30 s;
* ``workers N``: ``N`` processes, each with 1/N of the torch threads, checkpoints spaced as above.

Recorded per arm: wall seconds, the chosen point, test Recall@20, and whether ``model.pt``,
``metrics.json``, ``history.json`` and the compared fusions' ``comparison.json`` are byte-identical
to the first arm's. Results: ``benchmarks/results/train_workers.{json,md}``.

Usage::

    python benchmarks/train_workers.py --root ../probe_c2024 --workers 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from demo_experiments import cpu_model  # noqa: E402

from cliper import io  # noqa: E402
from cliper.config import load_params  # noqa: E402

SPACED_S = 30.0  # checkpoint_every_s of the spaced arms (params.yaml's demo value)
COMPARED = ("models/recommender/model.pt", "reports/train/metrics.json", "reports/train/history.json",
            "models/fusions/comparison.json")


def arms(workers: int) -> list[tuple[str, dict[str, object]]]:
    """(label, train overrides) per arm, the baseline first."""
    return [
        ("before: 1 process, checkpoint every epoch", {"workers": 1, "checkpoint_every_s": 0}),
        ("1 process, spaced checkpoints", {"workers": 1, "checkpoint_every_s": SPACED_S}),
        (f"{workers} worker processes, spaced checkpoints",
         {"workers": workers, "checkpoint_every_s": SPACED_S}),
    ]


def run_arm(source: Path, overrides: dict[str, object], work: Path) -> dict:
    """``cliper run train`` in a copy of ``source``'s inputs; wall time and the outputs' bytes."""
    params = load_params(source / "params.yaml")
    work.mkdir(parents=True)
    for rel in (params.ingest.out_dir, params.clip.extract.out_dir):
        shutil.copytree(source / rel, work / rel)
    shutil.copy2(source / "params.yaml", work / "params.yaml")
    sets = [a for k, v in {**overrides, "progress": False}.items() for a in ("-S", f"train.{k}={v}")]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cliper.cli", "run", "train", *sets], cwd=work,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"train failed in {work}:\n{done.stderr[-3000:]}")
    metrics = io.read_json(work / "reports/train/metrics.json")
    meta = io.read_json(work / "models/recommender/train_meta.json")
    return {"seconds": seconds, "point": meta["point"], "best_epoch": metrics["best_epoch"],
            "test_recall@20": metrics["test"]["recall@20"],
            "sha256": {rel: io.sha256_file(work / rel) for rel in COMPARED}}


def markdown(result: dict) -> str:
    base = result["arms"][0]
    lines = [
        "# Train stage: one process vs worker processes",
        "",
        f"Written by `benchmarks/train_workers.py` on {result['machine']} ({result['threads']} torch "
        f"threads), features of `{result['root']}`; each arm a fresh `cliper run train` with an empty "
        "checkpoint cache, one after another. Grid: the demo's 4 image weights, then the 3 compared fusions.",
        "",
        "| arm | wall seconds | vs before | chosen point | test Recall@20 | outputs = before's bytes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm in result["arms"]:
        same = all(arm["sha256"][k] == base["sha256"][k] for k in COMPARED)
        lines.append(
            f"| {arm['label']} | {arm['seconds']:.0f} | {base['seconds'] / arm['seconds']:.2f}x | "
            f"{arm['point']} | {arm['test_recall@20']:.4f} | {'yes' if same else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="project with ingested data and features")
    parser.add_argument("--workers", type=int, default=2, help="processes of the parallel arm")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_workers")
    args = parser.parse_args(argv)
    import torch

    root = args.root.resolve()
    result = {"machine": cpu_model(), "threads": torch.get_num_threads(), "root": root.name, "arms": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, overrides) in enumerate(arms(args.workers)):
            print(f"arm {label} ...", flush=True)
            arm = run_arm(root, overrides, Path(tmp) / str(i))
            result["arms"].append({"label": label, "overrides": overrides, **arm})
            print(f"  {arm['seconds']:.0f} s, test R@20 {arm['test_recall@20']:.4f}", flush=True)
    io.write_json(args.out.with_suffix(".json"), result)
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
