"""Real ``dvc repro validate`` (demo_data -> ingest -> validate) in a temporary git + DVC repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

DVC_TIMEOUT_S = 600


def _dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "GX_ANALYTICS_ENABLED": "false",
    }
    return subprocess.run(
        ["dvc", *args], cwd=project, env=env, capture_output=True, text=True, timeout=DVC_TIMEOUT_S
    )


@pytest.mark.slow
def test_dvc_repro_validate_on_demo_catalog(tiny_project: Path):
    repro = _dvc(tiny_project, "repro", "validate")
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    truth = json.loads((tiny_project / params["demo"]["out_dir"] / "truth.json").read_text())

    stats = json.loads((tiny_project / params["ingest"]["out_dir"] / "stats.json").read_text())
    inter = pd.read_parquet(tiny_project / params["ingest"]["out_dir"] / "interactions.parquet")
    assert stats["interactions"] == len(inter) > 0 and stats["source"] == "amazon2014"
    assert stats["users"] == inter["user_id"].nunique() and stats["items"] == inter["item_id"].nunique()
    assert stats["train"] + stats["valid"] + stats["test"] == stats["interactions"]
    assert stats["k_core"] == params["ingest"]["k_core"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (
        truth["counts"]["n_users"],
        truth["counts"]["n_items"],
        truth["counts"]["n_interactions"],
    )

    out = tiny_project / params["validate"]["out_dir"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] is True and summary["expectations_failed"] == 0
    assert summary["expectations_evaluated"] > 0 and summary["items"] == stats["items"]
    counts = truth["counts"]
    assert summary["images_missing"] == counts["missing_images"]
    assert 1 <= summary["images_corrupt"] <= counts["corrupt_images"]  # a mildly damaged JPEG may decode
    assert summary["image_bad_share"] <= params["validate"]["max_missing_image_share"]
    assert (out / "data_docs" / "index.html").is_file()

    status = _dvc(tiny_project, "status", "validate")
    assert status.returncode == 0 and "changed" not in status.stdout, status.stdout
    metrics = _dvc(tiny_project, "metrics", "show", "--json")
    assert metrics.returncode == 0 and "expectations_evaluated" in metrics.stdout

    # a rerun on the same data leaves dvc.lock as it was: every tracked output is deterministic
    # (the GX Data Docs, which carry their build time, are written but not tracked)
    lock = yaml.safe_load((tiny_project / "dvc.lock").read_text())["stages"]["validate"]
    rerun = _dvc(tiny_project, "repro", "--force", "--single-item", "validate")
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    again = yaml.safe_load((tiny_project / "dvc.lock").read_text())["stages"]["validate"]
    assert again["outs"] == lock["outs"], "a rerun of validate on the same data changed its outputs' hashes"
    assert (out / "data_docs" / "index.html").is_file()
