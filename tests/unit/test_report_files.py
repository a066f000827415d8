"""Report files people open: readable modes, an offline validation page, natural metric order."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from cliper import io
from cliper.data.validation_report import render_markdown, render_report
from tasks import artifacts, dvc

SUMMARY = {"success": False, "expectations_evaluated": 3, "expectations_failed": 1, "users": 4, "items": 5,
           "interactions": 20, "suites": {"interactions": {"evaluated": 2, "failed": 1},
                                          "items": {"evaluated": 1, "failed": 0}}}
ROWS = [
    {"suite": "interactions", "expectation": "expect_column_values_to_not_be_null",
     "kwargs": {"column": "user_id"}, "success": True, "observed": "0 unexpected of 20"},
    {"suite": "interactions", "expectation": "expect_column_values_to_be_in_set",
     "kwargs": {"column": "x_label", "value_set": [0, 1, 2]}, "success": False,
     "observed": "2 unexpected of 20"},
    {"suite": "items", "expectation": "expect_column_values_to_be_unique", "kwargs": {"column": "asin"},
     "success": True, "observed": None},
]


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_outputs_get_the_umask_mode_not_tempfiles_0600(tmp_path: Path, umask_022: None) -> None:
    path = io.write_json(tmp_path / "out" / "metrics.json", {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with io.atomic_dir(tmp_path / "docs") as folder:
        (folder / "index.html").write_text("x")
    assert stat.S_IMODE((tmp_path / "docs").stat().st_mode) == 0o755


def test_validation_page_is_self_contained_and_lists_every_suite() -> None:
    page = render_report(SUMMARY, ROWS, ["interactions: x_label has values [7]"], "data/ingested")
    assert "<style>" in page and "FAILED" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no asset may come from the network"
    for suite in SUMMARY["suites"]:
        assert f'id="suite-{suite}"' in page
    assert page.count("<tr class=\"failed\">") == 2  # the failing suite row and its failed expectation
    assert "x_label has values [7]" in page


def test_validation_markdown_lists_failures_first() -> None:
    text = render_markdown(SUMMARY, ROWS, [], "data/ingested")
    rows = [line for line in text.splitlines() if line.startswith("| interactions | `")]
    assert "**FAILED**" in rows[0] and rows[1].endswith("| ok |")
    assert "| interactions | 2 | 1 |" in text and "| items | 1 | 0 |" in text


def test_metric_rows_sort_by_the_number_after_the_at() -> None:
    outcome = dvc.StageOutcome("evaluate", "ran", 1.0, {"m.json": {
        "test": {"recall@50": 0.4, "recall@10": 0.2, "recall@5": 0.1, "recall@20": 0.3}}})
    text = artifacts.metrics_markdown(outcome)
    order = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| test.")]
    assert order == ["test.recall@5", "test.recall@10", "test.recall@20", "test.recall@50"]


def test_atomic_path_removes_a_killed_runs_temp_sibling(tmp_path: Path) -> None:
    stale = tmp_path / ".history.png.abc123.tmp"
    stale.write_bytes(b"half a plot")
    io.write_text(tmp_path / "history.png", "x")
    assert not stale.exists() and (tmp_path / "history.png").read_text() == "x"
