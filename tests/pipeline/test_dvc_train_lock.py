"""Real ``dvc repro train`` twice on the tiny demo project: equal training, equal ``dvc.lock``.

A fresh clone that retrains the demo on the same machine must find ``git status`` clean. The
train stage's tracked outputs therefore hold no wall-clock time; the seconds go to
``reports/train/timing.json``, which DVC does not track.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cliper.io import sha256_file
from tests.pipeline.test_dvc_validate import _dvc


@pytest.mark.slow
def test_retraining_the_same_model_leaves_the_lock_unchanged(promoted_pipeline, tmp_path: Path) -> None:
    project = tmp_path / "project"  # a copy: the session's promoted project stays as it was
    shutil.copytree(promoted_pipeline[0], project, symlinks=True)
    params = yaml.safe_load((project / "params.yaml").read_text())["train"]
    reports = project / params["reports_dir"]
    timing = json.loads((reports / "timing.json").read_text())
    assert timing["seconds_per_epoch"] > 0 and timing["epochs"]
    assert timing["history_sha256"] == sha256_file(reports / "history.json")
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]
    assert "timing.json" not in json.dumps(lock["outs"]), "wall-clock seconds must not be a DVC out"

    shutil.rmtree(project / params["cache_dir"])  # no resume: every epoch is trained (and timed) again
    again = _dvc(project, "repro", "--force", "--single-item", "train")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    relock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["train"]
    changed = [o["path"] for o, n in zip(lock["outs"], relock["outs"], strict=True) if o != n]
    assert not changed, f"retraining the same model changed these tracked outputs: {changed}"
    retimed = json.loads((reports / "timing.json").read_text())
    assert retimed["epochs"] != timing["epochs"], "the timings were not rewritten by the rerun"
