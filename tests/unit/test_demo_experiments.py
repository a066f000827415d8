"""The demo benchmark's ``dvc exp run -S`` overrides, applied by DVC's own Hydra code to params.yaml.

Each arm must reach the train stage exactly as written in ``benchmarks/demo_quality.py``: a
quoted dict key or a dict value Hydra merges into ``train.backbones`` broke the LightGCN arm once.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from dvc.utils.hydra import apply_overrides

from cliper.config import load_params

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import demo_experiments  # noqa: E402
from demo_quality import ARMS, FUSION_FORMS, GRIDS, with_grid  # noqa: E402


@pytest.mark.parametrize("arm", list(ARMS | FUSION_FORMS))
def test_every_arm_reaches_params_as_written(arm: str, tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params_file)
    overrides = {**with_grid((ARMS | FUSION_FORMS)[arm]), "demo.seed": 7, "train.seed": 1001}
    args = demo_experiments.exp_args(overrides)
    apply_overrides(params_file, args[1::2])  # what `dvc exp run -S ...` does to params.yaml
    params = load_params(params_file)
    backbone = overrides["train.backbone"]
    assert params.train.backbone == backbone
    # the backbone's grid, under the arm's own fixed values (the fused text graph arm fixes one key)
    assert params.train.backbones[backbone] == overrides["train.backbones"][backbone]
    fixed = (ARMS | FUSION_FORMS)[arm].get("train.backbones", {}).get(backbone, {})
    assert params.train.backbones[backbone] == {**GRIDS[backbone], **fixed}
    assert (params.demo.seed, params.train.seed) == (7, 1001)
    assert params.train.views == overrides.get("train.views")
    assert params.train.fusion.normalize is overrides.get("train.fusion.normalize", False)


def test_names_are_valid_experiment_names() -> None:
    assert demo_experiments.slug("freedom+cliper(attention, normalised views)-c7-s999") == (
        "freedom-cliper-attention-normalised-views-c7-s999"
    )


def test_report_adds_the_retrained_fusions_and_the_test_set_resolution() -> None:
    def run(arm: str, seed: int, value: float, fusions: dict | None = None) -> dict:
        return {"arm": arm, "catalog": 7, "seed": seed, "adapt_i2t_r10": 0.9, "experiment": f"{arm}-{seed}",
                **({"cpu": "Test CPU"} if seed == 2 else {}),  # seed 1: a record from before the field
                "test": {"recall@20": value, "ndcg@20": value / 2},
                "test_ci": {"n_users": 1200, "recall@20": {"rel_sd": 0.08}}, "fusions": fusions or {}}

    arms = list(ARMS | FUSION_FORMS)
    records = []
    for seed, value in ((1, 0.08), (2, 0.09)):
        concat = {"attention": {"trained": True, "test": {"recall@20": value, "ndcg@20": 0.0}},
                  "concat": {"trained": False, "test": {"recall@20": value - 0.01, "ndcg@20": 0.0}}}
        records += [run(arm, seed, value, concat if arm == arms[0] else None) for arm in arms]
    rng = np.random.default_rng(0)
    per_user = {r["experiment"]: rng.binomial(1, r["test"]["recall@20"], 1200).astype(float) for r in records}
    text = demo_experiments.report(records, arms, [7], [1, 2], per_user)
    row = next(line for line in text.splitlines() if "-> concat (retrained)" in line)
    assert "0.0750" in row, row  # mean of 0.07 and 0.08
    assert "-> attention" not in text, "the trained model is its own arm already"
    assert "CPU: Test CPU; not recorded." in text, "the machines the runs came from, per table"
    assert "bootstrap sd over test users (1200 users) of one run's test recall@20 is 8.0%" in text
    target = "| freedom+cliper(attention) vs lightgcn"
    paired = [line for line in text.splitlines() if line.startswith(target)]
    assert len(paired) == 2 and "(required +5%)" in paired[0], "per catalog and pooled"
    a = np.stack([per_user[f"{arms[0]}-{s}"] for s in (1, 2)]).mean()
    b = np.stack([per_user[f"lightgcn-{s}"] for s in (1, 2)]).mean()
    assert f"| {a / b - 1:+.1%} |" in paired[0]


def test_demo_quality_set_overrides_parse_as_yaml() -> None:
    """Both benchmarks read --set with the CLI's own parser (cliper.cli.parse_overrides)."""
    from demo_quality import set_overrides

    assert demo_experiments.set_overrides is set_overrides
    assert set_overrides(["train.patience=150"]) == {"train.patience": 150}
    assert set_overrides(["train.views=[title]"]) == {"train.views": ["title"]}
    with pytest.raises(SystemExit, match="expects KEY=VALUE"):
        set_overrides(["train.patience"])


def test_run_arm_writes_every_train_output_under_its_work_folder(tmp_path: Path, monkeypatch) -> None:
    """An in-process arm must not overwrite the checkout's DVC outputs (models/, reports/)."""
    import demo_quality

    from cliper import io

    seen = {}

    def fake_run(params, root) -> None:
        t = params.train
        seen.update(out=t.out_dir, reports=t.reports_dir, fusions=t.fusions_dir)
        io.write_json(Path(t.reports_dir) / "metrics.json",
                      {"best_epoch": 1, "valid": {"recall@20": 0.1}, "test": {"recall@20": 0.1}})

    monkeypatch.setattr(demo_quality.train_stage, "run", fake_run)
    demo_quality.run_arm("lightgcn", with_grid(ARMS["lightgcn"]), 999, tmp_path)
    assert set(seen) == {"out", "reports", "fusions"}
    assert all(Path(p).is_relative_to(tmp_path) for p in seen.values()), seen


def test_arms_option_runs_only_those_arms(tmp_path: Path, monkeypatch) -> None:
    """``--arms``: the other arms are not run; CLIPER's own arm keeps its compared fusions."""
    import pandas as pd

    ran: dict[str, dict] = {}

    def fake_run(root: Path, name: str, overrides: dict) -> dict:
        ran[name] = overrides
        return {"per_user": pd.DataFrame({"user_id": [1, 2], "recall@20": [0.5, 1.0]}), "experiment": name,
                "test": {"recall@20": 0.5, "ndcg@20": 0.2}, "valid": {}, "adapt_i2t_r10": 0.9, "fusions": {},
                "seconds": 1.0}

    monkeypatch.setattr(demo_experiments, "run_experiment", fake_run)
    monkeypatch.setattr(demo_experiments, "restore", lambda root: None)
    cliper, image_title = list(ARMS)[:2]
    argv = ["demo_experiments.py", "--out", str(tmp_path), "--catalogs", "7", "--seeds", "1",
            "--arms", cliper, image_title]
    monkeypatch.setattr(sys, "argv", argv)
    demo_experiments.main()
    assert set(ran) == {demo_experiments.slug(f"{a}-c7-s1") for a in (cliper, image_title)}
    assert "train.compare_fusions" not in ran[demo_experiments.slug(f"{cliper}-c7-s1")]
    assert ran[demo_experiments.slug(f"{image_title}-c7-s1")]["train.compare_fusions"] == []


def test_a_report_of_some_arms_says_the_targets_were_not_measured() -> None:
    from demo_quality import TARGETS, markdown, summarise

    cliper = next(iter(ARMS))
    records = [{"arm": cliper, "seed": s, "test": {"recall@20": 0.1, "ndcg@20": 0.05}} for s in (1, 2)]
    summary = summarise(records, [cliper])
    assert summary["chain"] == [] and summary["target_met"] is False
    meta = {"seeds": [1, 2], "catalog": "7", "features": "f", "adapt_i2t_r10": 0.9, "adapt_chance_r10": 0.05,
            "tuning": "grid"}
    assert f"- {len(TARGETS)} of {len(TARGETS)} not measured" in markdown(summary, meta)


def test_report_names_the_params_runs_set_beyond_their_arm() -> None:
    """``--set`` overrides reach the report; a merge of runs with and without them says which had which."""
    from demo_quality import with_grid

    cliper, image_title, lightgcn = list(ARMS)[:3]

    def run(arm: str, extra: dict) -> dict:
        return {"arm": arm, "overrides": {**with_grid(ARMS[arm]), **extra}}

    nine = {"clip.adapt.epochs": 9}
    both = [run(cliper, nine), run(image_title, nine)]
    assert demo_experiments.extra_overrides(both) == "clip.adapt.epochs=9"
    assert demo_experiments.extra_overrides([run(cliper, {}), run(lightgcn, {})]) == "none"
    merged = demo_experiments.extra_overrides([run(cliper, nine), run(lightgcn, {})])
    assert merged == f"{cliper}: clip.adapt.epochs=9; {lightgcn}: none"
    # the arm's own grid values are not overrides; another value for one of them is
    changed = {"train.backbones": {"lightgcn": {"n_layers": [3], "reg_weight": [0.001, 0.0001]}}}
    assert "n_layers" in demo_experiments.extra_overrides([run(lightgcn, changed)])
