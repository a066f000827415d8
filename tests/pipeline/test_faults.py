"""Faults: ``kill -9`` at a random point of every stage, and a full disk during a stage's write.

One tiny project (the shared tiny params, MLflow off) runs the 8 stages uncut as the reference.
Then each stage, in DAG order, is started again as ``cliper run <stage>`` (the command DVC runs),
killed with SIGKILL (its whole process group, DataLoader workers included) at a seeded random
moment of its reference duration, and rerun: the rerun must succeed and its outputs must equal
the reference byte for byte (every stage here is deterministic on CPU; the validate stage's GX
Data Docs carry run times, so its ``summary.json`` is compared). The full-disk cases run a stage
under ``RLIMIT_FSIZE`` (writes past the limit fail with EFBIG, as on a full disk): exit 2, a
message naming the output, the previous outputs unchanged and no temporary folder left.
"""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cliper.stages import STAGES
from tests.conftest import make_project, tiny_params

SEED = int(os.environ.get("CLIPER_FAULT_SEED", "12"))  # a failing draw is reproduced with this seed
KILL_AT = (0.2, 0.95)  # fraction of the stage's reference duration
KILL_TRIES = 4
OUTPUTS: dict[str, tuple[str, ...]] = {
    "demo_data": ("data/raw/demo",),
    "ingest": ("data/ingested",),
    "fetch": ("reports/fetch",),  # off in the tiny params: its empty report and metrics
    "validate": ("reports/validate/summary.json",),
    "preprocess": ("data/preprocessed",),
    "adapt": ("models/clip", "reports/adapt/metrics.json"),
    "extract": ("data/features",),
    "train": ("models/recommender", "reports/train"),
    "evaluate": ("reports/evaluate/metrics.json",),
}
FILE_SIZE_LIMIT = 2048  # bytes: below every output these stages write, above nothing they read
STAGE_TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def _cmd(stage: str) -> list[str]:
    return [sys.executable, "-m", "cliper.cli", "run", stage]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}


def run_stage(root: Path, stage: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        _cmd(stage), cwd=root, env=_env(), capture_output=True, text=True, timeout=STAGE_TIMEOUT_S, **kwargs
    )


def snapshot(root: Path, stage: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for rel in OUTPUTS[stage]:
        path = root / rel
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out.update({str(p.relative_to(root)): p.read_bytes() for p in files})
    assert out, f"{stage}: no outputs under {OUTPUTS[stage]}"
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, float], dict[str, dict[str, bytes]]]:
    """The tiny project after an uncut run: root, seconds per stage, outputs per stage."""
    root = make_project(
        tmp_path_factory.mktemp("faults") / "p", tiny_params({"tracking": {"enabled": False}})
    )
    seconds, outputs = {}, {}
    for stage in STAGES:
        start = time.monotonic()
        done = run_stage(root, stage)
        seconds[stage] = time.monotonic() - start
        assert done.returncode == 0, f"{stage}: {done.stderr[-2000:]}"
        outputs[stage] = snapshot(root, stage)
    return root, seconds, outputs


def kill_at_random(root: Path, stage: str, seconds: float, draw: random.Random) -> float | None:
    """Start ``stage``, SIGKILL its process group at a random moment; None if it always finished first.

    A stage that finished before the moment (it ran faster than in the reference) is started
    again with a moment drawn from the first half of the previous range, up to ``KILL_TRIES`` times.
    """
    low, high = KILL_AT
    for _ in range(KILL_TRIES):
        delay = draw.uniform(low, high) * seconds
        proc = subprocess.Popen(
            _cmd(stage),
            cwd=root,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return delay
        low, high = low / 2, (low + high) / 2
    return None


def test_kill_9_at_a_random_point_of_every_stage_then_rerun_equals_uncut(reference):
    root, seconds, outputs = reference
    draw = random.Random(SEED)
    for stage in STAGES:
        delay = kill_at_random(root, stage, seconds[stage], draw)
        assert delay is not None, f"{stage} always finished before the kill ({KILL_TRIES} tries)"
        done = run_stage(root, stage)
        assert done.returncode == 0, f"rerun of {stage} after kill -9 at {delay:.1f}s: {done.stderr[-2000:]}"
        after = snapshot(root, stage)
        changed = sorted(
            k for k in outputs[stage].keys() | after.keys() if outputs[stage].get(k) != after.get(k)
        )
        assert not changed, f"{stage} killed at {delay:.1f}s (seed {SEED}): rerun outputs differ: {changed}"


def _limit_file_size() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as ENOSPC on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.parametrize(
    ("stage", "out_dir"),
    [("ingest", "data/ingested"), ("preprocess", "data/preprocessed"), ("extract", "data/features")],
)
def test_full_disk_during_a_write_is_a_clear_error_and_leaves_no_partial_output(reference, stage, out_dir):
    root = reference[0]
    before = snapshot(root, stage)
    done = run_stage(root, stage, preexec_fn=_limit_file_size)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "cannot write the output" in done.stderr
    assert "free disk space" in done.stderr and out_dir in done.stderr
    assert snapshot(root, stage) == before
    parent = (root / out_dir).parent
    leftovers = [p.name for p in parent.iterdir() if p.name.endswith(".tmp")]
    leftovers += [p.name for p in (root / out_dir).rglob("*.tmp")]
    assert not leftovers, f"partial output left behind: {leftovers}"
