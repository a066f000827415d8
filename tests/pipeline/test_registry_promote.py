"""Gated promotion on a real SQLite model registry: accept better, keep worse, refuse other data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cliper import registry, tracking, tracking_store
from cliper.cli import app

NAME = "cliper-demo-lightgcn"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path, mlflow_env: None, empty_mlflow_db: Path) -> MlflowClient:
    """A fresh registry in ``tmp_path/mlflow.db`` that the fluent API and new clients use."""
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = tracking_store.configure(tracking_store.resolve_uri(None, tmp_path))
    return MlflowClient(uri)


def add_version(client: MlflowClient, value: float, data_hash: str = "d1",
                metric: str = "recall@20") -> str:
    """A run with test metric ``value``, registered as a new challenger version tagged with ``data_hash``."""
    with mlflow.start_run() as run:
        mlflow.log_metric(registry.TEST_PREFIX + registry.metric_key(metric), value)
    if not client.search_registered_models(filter_string=f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    created = client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run.info.run_id)
    version = str(created.version)
    registry.register_challenger(client, NAME, version, {"data_hash": data_hash, "items_hash": "i1"})
    return version


def champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(NAME, registry.CHAMPION).version)


def test_first_challenger_becomes_champion(store: MlflowClient) -> None:
    add_version(store, 0.10)
    decision = registry.promote(NAME)
    assert decision.decision == "first_champion" and champion(store) == "1"
    assert store.get_model_version(NAME, "1").tags["promotion.decision"] == "first_champion"


def test_a_later_decision_keeps_the_earlier_ones(store: MlflowClient) -> None:
    add_version(store, 0.10)
    registry.promote(NAME)  # v1 becomes the first champion
    again = registry.promote(NAME)  # no new challenger: v1 is challenger and champion
    assert again.decision == "kept_champion"
    tags = store.get_model_version(NAME, "1").tags
    assert tags["promotion.001.decision"] == "first_champion"
    assert tags["promotion.002.decision"] == "kept_champion"
    assert tags["promotion.champion_reason"].startswith("first_champion: no champion yet")
    log = store.get_registered_model(NAME).description.splitlines()
    assert log[0] == registry.LOG_HEADING
    assert [line.split(": ")[1].split(",")[0] for line in log[1:]] == ["first_champion", "kept_champion"]


def test_better_challenger_is_promoted_with_evidence(store: MlflowClient) -> None:
    add_version(store, 0.10)
    registry.promote(NAME)
    add_version(store, 0.15)
    decision = registry.promote(NAME, metric="recall@20", min_gain=0.01)
    assert decision.decision == "promoted" and decision.gain == pytest.approx(0.05)
    assert champion(store) == "2"
    tags = store.get_model_version(NAME, "2").tags
    evidence = json.loads(tags["promotion.evidence"])
    assert (evidence["challenger_value"], evidence["champion_value"], evidence["champion_version"]) == (
        pytest.approx(0.15), pytest.approx(0.10), "1")
    assert evidence["evidence"]["data_hash"] == "d1"
    assert store.get_model_version(NAME, "1").tags["promotion.replaced_by"] == "2"


@pytest.mark.parametrize(("new", "min_gain", "mode", "expected"), [
    (0.08, 0.0, "absolute", "kept_champion"),   # worse
    (0.10, 0.0, "absolute", "kept_champion"),   # equal is not better
    (0.12, 0.05, "absolute", "kept_champion"),  # +0.02 < 0.05
    (0.12, 0.15, "relative", "promoted"),       # +20 % >= 15 %
    (0.11, 0.15, "relative", "kept_champion"),  # +10 % < 15 %
])
def test_gate(store: MlflowClient, new: float, min_gain: float, mode: str, expected: str) -> None:
    add_version(store, 0.10)
    registry.promote(NAME)
    add_version(store, new)
    decision = registry.promote(NAME, min_gain=min_gain, min_gain_mode=mode)
    assert decision.decision == expected
    assert champion(store) == ("2" if expected == "promoted" else "1")
    assert store.get_model_version(NAME, "2").tags["promotion.decision"] == expected


def test_mismatched_data_is_refused_and_changes_nothing(store: MlflowClient) -> None:
    add_version(store, 0.10, data_hash="d1")
    registry.promote(NAME)
    add_version(store, 0.50, data_hash="d2")
    with pytest.raises(registry.PromotionRefused, match="different data/split.*data_hash: d2 vs d1"):
        registry.promote(NAME)
    assert champion(store) == "1"
    assert "promotion.decision" not in store.get_model_version(NAME, "2").tags


def test_dry_run_changes_nothing(store: MlflowClient) -> None:
    add_version(store, 0.10)
    registry.promote(NAME)
    add_version(store, 0.20)
    before = store.get_model_version(NAME, "2").tags
    decision = registry.promote(NAME, dry_run=True)
    assert decision.decision == "promoted" and decision.dry_run
    assert champion(store) == "1" and store.get_model_version(NAME, "2").tags == before


def test_missing_model_or_metric_is_refused(store: MlflowClient) -> None:
    with pytest.raises(registry.PromotionRefused, match="has no 'challenger' version"):
        registry.promote("cliper-nope-bpr")
    add_version(store, 0.10)
    with pytest.raises(registry.PromotionRefused, match=r"no test metric 'ndcg@10'.*\['recall_at_20'\]"):
        registry.promote(NAME, metric="ndcg@10")


def test_data_hash_covers_the_split(synth_project: Path, make_params) -> None:
    params = make_params()
    before = tracking.content_hashes(params, synth_project)
    path = synth_project / "data/ingested/interactions.parquet"
    inter = pd.read_parquet(path)
    inter.loc[0, "x_label"] = 2  # one train interaction moved to test
    inter.to_parquet(path, index=False)
    after = tracking.content_hashes(params, synth_project)
    assert before["data_hash"] != after["data_hash"] and before["items_hash"] == after["items_hash"]


def test_cli_promote(store: MlflowClient, tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    add_version(store, 0.10)
    runner = CliRunner()
    base = ["promote", "--model", NAME, "--root", str(tmp_path)]
    dry = runner.invoke(app, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout[dry.stdout.index("{\n"):])  # stdout may also hold log lines
    assert report["decision"] == "first_champion"
    assert registry.CHAMPION not in store.get_model_version(NAME, "1").aliases
    done = runner.invoke(app, [*base, "--metric", "recall@20", "--min-gain", "0.0"])
    assert done.exit_code == 0 and champion(store) == "1"
    add_version(store, 0.30, data_hash="other")
    refused = runner.invoke(app, base)
    assert refused.exit_code == 2 and "different data/split" in refused.output
    assert "--dry-run" in runner.invoke(app, ["promote", "--help"]).output


def test_a_tag_written_concurrently_by_another_promote_does_not_fail_this_one(
        store: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of concurrent ``cliper promote`` runs, replayed on the real store.

    Another process writes ``promotion.replaced_by`` after this one's upsert looked for it and
    found nothing, so this one's INSERT hits the primary key (a real SQLite IntegrityError).
    """
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersionTag
    from sqlalchemy.orm import Session

    add_version(store, 0.10)
    registry.promote(NAME)
    add_version(store, 0.12)
    merge, raced = Session.merge, []

    def racing_merge(session: Session, row, *args, **kwargs):
        if isinstance(row, SqlModelVersionTag) and row.key == "promotion.replaced_by" and not raced:
            raced.append(row.version)
            other_process = MlflowClient(store.tracking_uri)
            other_process.set_model_version_tag(NAME, "1", row.key, "2")
            session.add(row)  # this one saw no row: a plain INSERT
            return row
        return merge(session, row, *args, **kwargs)

    monkeypatch.setattr(Session, "merge", racing_merge)
    decision = registry.promote(NAME)
    assert raced == [1], "the race was not replayed"
    assert decision.decision == "promoted" and champion(store) == "2"
    assert store.get_model_version(NAME, "1").tags["promotion.replaced_by"] == "2"


def test_other_tag_errors_are_not_retried(store: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    add_version(store, 0.10)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise mlflow.exceptions.MlflowException("permission denied")

    monkeypatch.setattr(store, "set_model_version_tag", refuse)
    with pytest.raises(mlflow.exceptions.MlflowException, match="permission denied"):
        registry.set_version_tag(store, NAME, "1", "promotion.decision", "x")
    assert len(calls) == 1
