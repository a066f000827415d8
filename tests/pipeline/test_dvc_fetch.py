"""Real ``dvc repro`` of the fetch stage in a temporary git + DVC repo, against a local image host.

The demo catalog's ``imUrl`` values (``http://ecx.images-amazon.com/images/I/<asin>.jpg``) are
sent through ``HTTP_PROXY`` to the local server of ``tests/image_server.py``; ingest is pointed
at an empty image folder, so every item with a URL is fetched and preprocess uses the fetched
files. A forced rerun of the stage must request nothing again (``persist: true`` keeps them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_project, tiny_params
from tests.image_server import ImageServer

DVC_TIMEOUT_S = 600


def _dvc(project: Path, proxy: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "GX_ANALYTICS_ENABLED": "false", "HTTP_PROXY": proxy, "http_proxy": proxy})
    return subprocess.run(["dvc", *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=DVC_TIMEOUT_S)


@pytest.mark.slow
def test_dvc_repro_fetch_then_preprocess_and_a_forced_rerun_fetches_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    params = tiny_params({"ingest": {"image_dir": "no-local-images"},
                          "fetch": {"enabled": True, "timeout_s": 5.0, "progress": False}})
    project = make_project(tmp_path / "project", params)
    with ImageServer() as server:
        repro = _dvc(project, server.base, "repro", "preprocess")
        assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
        first = dict(server.hits)
        metrics = json.loads((project / "reports/fetch/metrics.json").read_text())
        report = pd.read_csv(project / "reports/fetch/report.csv", dtype={"asin": str})
        assert metrics["ok"] == len(first) > 100 and metrics["failed"] == 0
        assert metrics["ok"] + metrics["no_url"] == metrics["items"] == len(report)
        images = pd.read_parquet(project / "data/preprocessed/images.parquet")
        fetched = report.loc[report["outcome"] == "ok", "item_id"]
        assert images.set_index("item_id").loc[fetched, "status"].eq("ok").all()
        assert images.set_index("item_id").loc[fetched, "path"].str.startswith("data/images/").all()

        status = _dvc(project, server.base, "status", "fetch", "preprocess")
        assert status.returncode == 0 and "changed" not in status.stdout, status.stdout

        again = _dvc(project, server.base, "repro", "-f", "-s", "fetch")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert dict(server.hits) == first, "a rerun requests no image already fetched"
    rerun = json.loads((project / "reports/fetch/metrics.json").read_text())
    assert (rerun["ok"], rerun["cached"]) == (0, metrics["ok"])
    from tasks.dvc import read_metrics  # what the Prefect task publishes as the stage's artifact

    assert read_metrics("fetch", project)["reports/fetch/metrics.json"]["cached"] == metrics["ok"]
