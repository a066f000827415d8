"""``benchmarks/train_workers.py``: the arms, and a report that flags outputs differing from the first arm."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import train_workers  # noqa: E402


def test_the_baseline_arm_is_one_process_checkpointing_every_epoch() -> None:
    arms = train_workers.arms(3)
    assert arms[0][1] == {"workers": 1, "checkpoint_every_s": 0}
    assert arms[-1][1] == {"workers": 3, "checkpoint_every_s": train_workers.SPACED_S}


def test_the_report_flags_an_arm_whose_outputs_differ() -> None:
    same = {rel: "a" for rel in train_workers.COMPARED}
    other = {**same, train_workers.COMPARED[0]: "b"}
    arm = {"point": {"w": 0.5}, "test_recall@20": 0.11}
    result = {"machine": "cpu", "threads": 2, "root": "r", "arms": [
        {**arm, "label": "before", "seconds": 400.0, "sha256": same},
        {**arm, "label": "fast", "seconds": 200.0, "sha256": same},
        {**arm, "label": "drifted", "seconds": 100.0, "sha256": other},
    ]}
    rows = [line for line in train_workers.markdown(result).splitlines() if line.startswith("| ")][2:]
    assert rows[1].startswith("| fast | 200 | 2.00x |") and rows[1].endswith("| yes |")
    assert rows[2].startswith("| drifted | 100 | 4.00x |") and rows[2].endswith("| no |")
