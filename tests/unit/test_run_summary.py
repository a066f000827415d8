"""``cliper summary``: the finished run on one screen, read from what train and evaluate wrote."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from test_view_report import VIEWS, _fusion_project
from typer.testing import CliRunner

from cliper import io
from cliper.cli import app
from cliper.errors import CliperError
from cliper.run_summary import read_summary, summary_lines
from cliper.view_report import GAIN, GAIN_HIGH, GAIN_LOW

METRIC = "recall@10"  # the small project's evaluate.valid_metric


@pytest.fixture(scope="module")
def finished(tmp_path_factory):  # noqa: ANN201
    """A project after the real train and evaluate stages (FREEDOM, a 2-point grid, one retrained fusion)."""
    from cliper.stages.evaluate import run as evaluate
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path_factory.mktemp("summary"), compare=["mean"])
    train(params, root)
    evaluate(params, root)
    return root, params


def test_summary_reports_what_the_stages_wrote(finished) -> None:
    root, params = finished
    s = read_summary(params, root)
    metrics = io.read_json(root / "reports/evaluate/metrics.json")
    meta = io.read_json(root / "models/recommender/train_meta.json")
    assert (s.backbone, s.fusion, s.metric) == ("freedom", "attention", METRIC)
    assert s.test == metrics["test"][METRIC] and s.valid == metrics["valid"][METRIC]
    ci = metrics["test_ci"]
    assert s.interval == (ci[METRIC]["low"], ci[METRIC]["high"]) and s.n_test_users == ci["n_users"]
    assert s.point == meta["point"] and s.grid_size == 2 and s.best_epoch == metrics["best_epoch"]
    # every view of the trained model, in its order, with its "only <view>" ablation row
    ablation = pd.read_csv(root / "reports/evaluate/views/ablation.csv").set_index("variant")
    weights = pd.read_csv(root / "reports/evaluate/views/view_weights.csv").set_index("view")
    assert [v.view for v in s.views] == list(VIEWS)
    for v in s.views:
        row = ablation.loc[f"only {v.view}"]
        assert (v.alone, v.gain, v.low, v.high) == (row[METRIC], row[GAIN], row[GAIN_LOW], row[GAIN_HIGH])
        assert v.mean_weight == weights.loc[v.view, "mean"]
    fusions = pd.read_csv(root / "reports/evaluate/views/fusions.csv")
    assert [f["fusion"] for f in s.fusions] == ["mean"]  # the trained model's row is the headline
    assert s.fusions[0]["test"] == fusions.loc[1, f"test {METRIC}"]
    assert s.files["view report"] == str(root / "reports/evaluate/views/view_report.md")
    assert s.mlflow == {}  # tracking is off in this project

    lines = summary_lines(s)
    assert lines[0].startswith(f"freedom + attention fusion of 3 text views: test {METRIC} {s.test:.4f}")
    title = next(line for line in lines if line.strip().startswith("title "))
    assert f"{s.views[0].alone:.4f}" in title and f"{s.views[0].gain:+.1%}" in title
    assert not any("MLflow" in line for line in lines)


def test_summary_shows_how_close_valid_s_choice_was(finished) -> None:
    """Every grid point's valid metric, the chosen one marked, and the runner-up's gap."""
    import dataclasses

    root, params = finished
    s = read_summary(params, root)
    grid = io.read_json(root / "models/recommender/train_meta.json")["grid"]
    assert s.grid == [{"point": g["point"], "valid": g["valid"][METRIC]} for g in grid] and len(grid) == 2
    (chosen,) = [g for g in s.grid if g["point"] == s.point]
    (other,) = [g for g in s.grid if g["point"] != s.point]

    def cells_and_tail(summary) -> tuple[list[str], str]:  # noqa: ANN001
        line = next(x for x in summary_lines(summary) if x.startswith(f"  valid {METRIC} per grid point"))
        cells, tail = line.split("): ", 1)[1].split("; ")
        return cells.split(", "), tail

    cells, tail = cells_and_tail(s)
    assert [c.endswith(" (chosen)") for c in cells] == [g is chosen for g in s.grid]
    assert all(f"{g['valid']:.4f}" in c for g, c in zip(s.grid, cells, strict=True))
    assert tail == "the runner-up ties it"  # this small project's two points tie on valid
    lower = {**other, "valid": chosen["valid"] - 0.05}
    cells, tail = cells_and_tail(dataclasses.replace(s, grid=[lower, chosen]))  # the chosen point second
    assert [c.endswith(" (chosen)") for c in cells] == [False, True]
    assert tail == f"the runner-up is 0.0500 ({0.05 / s.valid:.1%}) behind"
    alone = dataclasses.replace(s, grid=[chosen], grid_size=1)
    assert not any("per grid point" in line for line in summary_lines(alone))


def test_cli_prints_the_summary_and_its_json(finished) -> None:
    root, params = finished
    (root / "params.yaml").write_text(_params_yaml(params))
    runner = CliRunner()
    text = runner.invoke(app, ["summary", "--root", str(root)])
    assert text.exit_code == 0, text.output
    assert text.output.splitlines() == summary_lines(read_summary(params, root))
    as_json = runner.invoke(app, ["summary", "--root", str(root), "--json"])
    data = json.loads(as_json.output)
    assert data["test"] == read_summary(params, root).test and len(data["views"]) == len(VIEWS)


def test_a_project_without_a_finished_run_gets_the_command_to_run(tmp_path) -> None:
    root, params = _fusion_project(tmp_path)
    (root / "params.yaml").write_text(_params_yaml(params))
    result = CliRunner().invoke(app, ["summary", "--root", str(root)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "reports/evaluate/metrics.json not found" in message and "dvc repro" in message


def test_a_cut_short_metrics_file_names_the_missing_field(finished) -> None:
    root, params = finished
    path = root / "reports/evaluate/metrics.json"
    good = path.read_text()
    try:
        broken = json.loads(good)
        del broken["test"][METRIC]
        path.write_text(json.dumps(broken))
        with pytest.raises(CliperError, match=rf"metrics.json: no 'test.{METRIC}' field.*dvc repro"):
            read_summary(params, root)
    finally:
        path.write_text(good)


def test_id_only_run_has_no_view_lines(tmp_path) -> None:
    from cliper.stages.evaluate import run as evaluate
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path, backbone="lightgcn", compare=[])
    train(params, root)
    evaluate(params, root)
    s = read_summary(params, root)
    assert s.backbone == "lightgcn" and s.views == [] and s.fusions == []
    assert summary_lines(s)[0].startswith(f"lightgcn: test {METRIC}")
    assert not math.isnan(s.test)


def _params_yaml(params) -> str:  # noqa: ANN001
    import yaml

    from cliper.config import to_dict

    return yaml.safe_dump(to_dict(params))


def test_an_ndcg_run_shows_ndcg_and_labels_the_recall_gains(finished) -> None:
    """The view report's gain columns are recall at the valid metric's K, whatever that metric is."""
    import dataclasses

    root, params = finished
    ndcg = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, valid_metric="ndcg@10"))
    s = read_summary(ndcg, root)
    ablation = pd.read_csv(root / "reports/evaluate/views/ablation.csv").set_index("variant")
    assert s.metric == "ndcg@10" and s.views[0].alone == ablation.loc["only title", "ndcg@10"]
    assert s.views[0].gain == ablation.loc["only title", GAIN]  # recall@10 based, as the report's
    text = "\n".join(summary_lines(s))
    assert "test ndcg@10 of the trained model fed that view alone, and its test recall@10 change" in text
    assert "Fusions retrained at the chosen point, test recall@10 against the trained model" in text
