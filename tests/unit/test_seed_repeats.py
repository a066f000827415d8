"""``train.repeat_seeds``: the chosen grid point retrained per seed, the mean ± sd over seeds.

On the small FREEDOM project of ``test_view_report`` (a 2-point grid, 3 epochs): each repeated
seed's record must be what a run with that ``train.seed`` alone trains at that point, the trained
model must be the one a run without repeats saves, and the summary, the train metrics and the
MLflow metrics must carry the mean and sd over the seeds.
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch
from test_view_report import _fusion_project

from cliper import io
from cliper.config import TrainConfig
from cliper.errors import CliperError
from cliper.run_summary import read_summary, summary_lines
from cliper.seed_repeats import over_seeds, repeat_seeds
from cliper.tracking import run_metrics

METRIC = "recall@10"  # the small project's evaluate.valid_metric
SEEDS = [7, 8]


def _with_train(params, **changes):  # noqa: ANN001, ANN202
    return dataclasses.replace(params, train=dataclasses.replace(params.train, **changes))


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):  # noqa: ANN201
    """The project trained and evaluated with ``repeat_seeds: [7, 8]``."""
    from cliper.stages.evaluate import run as evaluate
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path_factory.mktemp("seeds"), compare=[])
    params = _with_train(params, repeat_seeds=SEEDS)
    stage = train(params, root)
    evaluate(params, root)
    return root, params, stage


def _model(root) -> dict:  # noqa: ANN001
    return torch.load(root / "models/recommender/model.pt", map_location="cpu", weights_only=False)


def test_each_repeated_seed_is_the_run_that_seed_alone_trains_at_the_chosen_point(repeated, tmp_path):
    from cliper.stages.train import run as train

    root, params, _ = repeated
    meta = io.read_json(root / "models/recommender/train_meta.json")
    runs = io.read_json(root / "reports/train/seeds.json")["seeds"]
    assert [r["seed"] for r in runs] == [params.train.seed, *SEEDS]
    assert all(r["point"] == meta["point"] for r in runs), "every seed is trained at the chosen point"
    first = runs[0]
    assert (first["best_epoch"], first["valid"], first["test"]) == (meta["best_epoch"], meta["valid"],
                                                                    meta["test"])
    for run in runs[1:]:  # a project of its own: train.seed = that seed, the chosen point alone
        alone_root, alone = _fusion_project(tmp_path / str(run["seed"]), compare=[],
                                            grid={k: [v] for k, v in meta["point"].items()})
        train(_with_train(alone, seed=run["seed"]), alone_root)
        solo = io.read_json(alone_root / "models/recommender/train_meta.json")
        assert (run["best_epoch"], run["valid"], run["test"]) == (solo["best_epoch"], solo["valid"],
                                                                  solo["test"]), run["seed"]
    assert len({r["test"][METRIC] for r in runs}) > 1, "the seeds train different models"


def test_the_repeats_leave_the_trained_model_as_it_is(repeated, tmp_path):
    from cliper.stages.train import run as train

    root, params, stage = repeated
    plain_root, plain = _fusion_project(tmp_path, compare=[])
    train(plain, plain_root)
    a, b = _model(root), _model(plain_root)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with_repeats = io.read_json(root / "reports/train/metrics.json")
    without = io.read_json(plain_root / "reports/train/metrics.json")
    assert "over_seeds" not in without
    assert {k: v for k, v in with_repeats.items() if k != "over_seeds"} == without
    runs = [r["seed"] for r in io.read_json(plain_root / "reports/train/seeds.json")["seeds"]]
    assert runs == [plain.train.seed]  # seeds.json is written either way (a DVC out)
    assert f"test_{METRIC}_seed_mean" in stage.metrics


def test_train_metrics_carry_the_mean_and_sd_over_seeds(repeated):
    root, _, stage = repeated
    runs = io.read_json(root / "reports/train/seeds.json")["seeds"]
    block = io.read_json(root / "reports/train/metrics.json")["over_seeds"]
    values = [r["test"][METRIC] for r in runs]
    assert block["metric"] == METRIC and block["n_seeds"] == 3
    assert block["test"] == {str(r["seed"]): r["test"][METRIC] for r in runs}
    assert block["mean"] == pytest.approx(statistics.fmean(values))
    assert block["sd"] == pytest.approx(statistics.stdev(values))  # sample sd (n - 1)
    assert stage.metrics[f"test_{METRIC}_seed_mean"] == block["mean"]
    logged = run_metrics(io.read_json(root / "reports/train/metrics.json"), {"test": {METRIC: 0.5}})
    assert logged["seeds/recall_at_10.mean"] == block["mean"]
    assert logged["seeds/recall_at_10.sd"] == block["sd"]
    assert logged["seeds/recall_at_10.test.7"] == block["test"]["7"]


def test_the_summary_leads_with_the_mean_over_seeds(repeated):
    root, params, _ = repeated
    s = read_summary(params, root)
    block = io.read_json(root / "reports/train/metrics.json")["over_seeds"]
    lines = summary_lines(s)
    per_seed = ", ".join(f"{seed} {block['test'][str(seed)]:.4f}" for seed in (7, 8, 999))  # numeric order
    assert lines[0] == (f"freedom + attention fusion of 3 text views: test {METRIC} {block['mean']:.4f} ± "
                        f"{block['sd']:.4f}, mean ± sd over 3 train seeds ({per_seed})")
    assert lines[1].startswith(f"  the trained model (train seed 999): test {METRIC} {s.test:.4f} (")
    assert any(line.startswith("Mean ± sd: over train seeds") for line in lines)
    single = summary_lines(dataclasses.replace(s, over_seeds=None))
    assert single[0].startswith(f"freedom + attention fusion of 3 text views: test {METRIC} {s.test:.4f} (")


@pytest.mark.parametrize(("seeds", "message"), [([999, 5], "lists train.seed"), ([5, 5], "a seed twice")])
def test_a_bad_seed_list_is_refused_before_training(tmp_path, seeds, message):
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path, compare=[])
    with pytest.raises(CliperError, match=f"params.yaml train.repeat_seeds: .*{message}"):
        train(_with_train(params, repeat_seeds=seeds), root)
    assert not (root / "models").exists()


def test_over_seeds_is_the_sample_mean_and_sd():
    records = [{"seed": s, "test": {"m": v}} for s, v in ((1, 0.10), (2, 0.12), (3, 0.14))]
    block = over_seeds(records, "m")
    assert block == {"metric": "m", "n_seeds": 3, "test": {"1": 0.10, "2": 0.12, "3": 0.14},
                     "mean": pytest.approx(0.12), "sd": pytest.approx(0.02)}
    assert over_seeds(records[:1], "m")["sd"] is None
    assert repeat_seeds(TrainConfig(seed=1, repeat_seeds=[3, 2])) == [3, 2]
