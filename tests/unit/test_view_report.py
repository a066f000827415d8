"""The evaluate stage's view report: weight distribution, inference-time view ablation, slices."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cliper.config import FusionConfig, Params, from_dict
from cliper.evaluate import Splits, evaluate_model
from cliper.features import write_features
from cliper.fusion import build_fusion
from cliper.models import Features, InteractionData, build_model
from cliper.view_report import GAIN, GAIN_HIGH, GAIN_LOW, ablation_table, rescored, variants, weight_summary

N_USERS, N_ITEMS, DIM, PER_USER = 24, 20, 8, 6
VIEWS = ("title", "brand", "global")
SMALL = {"embedding_size": DIM, "feat_embed_dim": DIM, "knn_k": 4}


def interactions() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    items = np.argsort(rng.random((N_USERS, N_ITEMS)), axis=1)[:, :PER_USER]
    labels = np.tile(np.r_[np.zeros(PER_USER - 2), 1, 2].astype(np.int8), N_USERS)
    return pd.DataFrame(
        {"user_id": np.repeat(np.arange(N_USERS), PER_USER), "item_id": items.ravel(), "x_label": labels}
    )


def arrays() -> tuple[np.ndarray, np.ndarray]:
    """Text views [V, I, D] (title close to the image, brand noisy, global noise) and image [I, D]."""
    rng = np.random.default_rng(3)
    image = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    noise = rng.normal(size=(len(VIEWS), N_ITEMS, DIM))
    text = np.stack([image + 0.2 * noise[0], image + 2.0 * noise[1], 3.0 * noise[2]]).astype(np.float32)
    return text, image


@pytest.fixture(scope="module")
def setup():  # noqa: ANN201
    s = Splits.from_frame(interactions())
    data = InteractionData(s.n_users, s.n_items, s.users["train"], s.items["train"])
    text, image = arrays()
    features = Features(torch.from_numpy(image), torch.from_numpy(text), VIEWS)
    return s, data, features


def make(name: str, data, features, fusion: str = "attention"):  # noqa: ANN001, ANN201
    torch.manual_seed(0)
    fus = build_fusion(FusionConfig(name=fusion), len(VIEWS), DIM)
    config = {k: v for k, v in SMALL.items() if name == "freedom" or k == "embedding_size"}
    model = build_model(name, data, config, features=features, fusion=fus)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    users, items = torch.from_numpy(data.train_users), torch.from_numpy(data.train_items)
    for step in range(5):  # move the weights away from their initialisation
        model.train()
        model.pre_epoch()
        loss = model.calculate_loss(users, items, torch.roll(items, step + 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_weight_summary_is_a_distribution_over_views(setup) -> None:
    _, data, features = setup
    weights = make("freedom", data, features).view_weights()
    summary = weight_summary(weights, VIEWS)
    assert list(summary["view"]) == list(VIEWS)
    assert summary["mean"].sum() == pytest.approx(1.0) and summary["top_share"].sum() == pytest.approx(1.0)
    assert summary.loc[0, "mean"] == summary["mean"].max()  # the image-consistent title view leads


def test_variants_cover_single_views_leave_one_out_and_other_fusions(setup) -> None:
    _, data, features = setup
    model = make("freedom", data, features)
    labels = [v.label for v in variants(VIEWS, model.fusion)]
    assert labels[0] == "all views (attention, trained)"
    assert {f"only {v}" for v in VIEWS} | {f"without {v}" for v in VIEWS} <= set(labels)
    assert {"all views (mean)", "all views (sum)", "all views (attention, normalize)"} <= set(labels)
    learnable = make("freedom", data, features, fusion="self_attention")
    assert len(variants(VIEWS, learnable.fusion)) == 1  # tied to its views: no ablation rows


def test_rescoring_keeps_trained_weights_and_rebuilds_the_item_graph(setup) -> None:
    _, data, features = setup
    model = make("freedom", data, features)
    users = torch.arange(N_USERS)
    same = rescored(model, data, features, variants(VIEWS, model.fusion)[0])
    torch.testing.assert_close(same.full_sort_predict(users), model.full_sort_predict(users))
    only_global = next(v for v in variants(VIEWS, model.fusion) if v.label == "only global")
    other = rescored(model, data, features, only_global)
    assert not torch.equal(other.mm_adj.to_dense(), model.mm_adj.to_dense())
    assert not torch.allclose(other.full_sort_predict(users), model.full_sort_predict(users))
    torch.testing.assert_close(other.user_embedding, model.user_embedding)


def test_ablation_table_first_row_is_the_trained_model(setup) -> None:
    s, data, features = setup
    model = make("vbpr", data, features)
    target = s.target("test")
    table = ablation_table(model, data, features, target, [5, 10], 64)
    assert len(table) == len(variants(VIEWS, model.fusion)) == 1 + 2 * len(VIEWS) + 3
    assert table.loc[0, "recall@10"] == pytest.approx(evaluate_model(model, target, [5, 10], 64)["recall@10"])
    assert table["recall@10"].nunique() > 1  # VBPR's scores depend on the text views
    assert GAIN not in table.columns  # no bootstrap asked for


def test_ablation_takes_the_trained_models_hits_instead_of_ranking_it_again(setup) -> None:
    """The evaluate stage has ranked the trained model on test: the first row is computed from
    those hits (the table equals the self-ranked one), and only that row comes from them."""
    from cliper.evaluate import model_hits

    s, data, features = setup
    model = make("vbpr", data, features)
    target = s.target("test")
    own = ablation_table(model, data, features, target, [5, 10], 64)
    hits = model_hits(model, target, 10, 64)
    pd.testing.assert_frame_equal(ablation_table(model, data, features, target, [5, 10], 64,
                                                 trained_hits=hits), own)
    no_hits = ablation_table(model, data, features, target, [5, 10], 64, trained_hits=np.zeros_like(hits))
    assert no_hits.loc[0, "recall@10"] == 0 < own.loc[0, "recall@10"]
    pd.testing.assert_frame_equal(no_hits.iloc[1:], own.iloc[1:])


def test_ablation_rows_carry_a_paired_gain_over_the_trained_model(setup) -> None:
    """Each rescored row's recall@K gain over the first row, with a paired interval over test users:
    the point gain is the ratio of the table's own recalls, and the interval brackets it."""
    from cliper.config import BootstrapConfig
    from cliper.uncertainty import paired_gain_interval

    s, data, features = setup
    model = make("vbpr", data, features)
    target, boot = s.target("test"), BootstrapConfig(n_resamples=200, level=0.9, seed=3)
    table = ablation_table(model, data, features, target, [5, 10], 64, boot, metric_k=5)
    assert np.isnan(table.loc[0, [GAIN, GAIN_LOW, GAIN_HIGH]].astype(float)).all()
    rest = table.iloc[1:]
    np.testing.assert_allclose(rest[GAIN], rest["recall@5"] / table.loc[0, "recall@5"] - 1, rtol=1e-12)
    assert (rest[GAIN_LOW] <= rest[GAIN]).all() and (rest[GAIN] <= rest[GAIN_HIGH]).all()
    assert (rest[GAIN_HIGH] > rest[GAIN_LOW]).any()  # rows that differ from the trained model
    # the interval is the paired one: the same users resampled for both rows, at the K asked for
    only = table.index[table["variant"] == f"only {VIEWS[0]}"][0]
    per_user = [evaluate_per_user(m, target, 5) for m in
                (rescored(model, data, features, variants(VIEWS, model.fusion)[only]), model)]
    expected = paired_gain_interval([per_user[0][None]], [per_user[1][None]], 200, 0.9, 3)
    assert (table.loc[only, GAIN_LOW], table.loc[only, GAIN_HIGH]) == pytest.approx(
        (expected["low"], expected["high"]), rel=1e-12)


def evaluate_per_user(model, target, k: int) -> np.ndarray:  # noqa: ANN001
    from cliper.evaluate import model_hits, per_user_metrics

    return per_user_metrics(model_hits(model, target, k, 64), target.pos_len)["recall"][:, k - 1]


def test_evaluate_stage_writes_the_view_report(tmp_path) -> None:
    from cliper.stages.evaluate import run as evaluate
    from cliper.stages.train import run as train

    root = tmp_path / "proj"
    (root / "data/ingested").mkdir(parents=True)
    interactions().to_parquet(root / "data/ingested/interactions.parquet")
    text, image = arrays()
    write_features(root / "data/features", text, image, list(VIEWS))
    params = from_dict(
        Params,
        {
            "train": {
                "backbone": "freedom",
                "epochs": 2,
                "device": "cpu",
                "progress": False,
                "backbones": {"freedom": SMALL},
            },
            "evaluate": {"topk": [5, 10], "valid_metric": "recall@10"},
            "tracking": {"enabled": False},
        },
    )
    train(params, root)
    result = evaluate(params, root)
    out = root / "reports/evaluate"
    for key, rel in (
        ("view_report", "views/view_report.md"),
        ("view_ablation", "views/ablation.csv"),
        ("view_weights_summary", "views/view_weights.csv"),
        ("view_weights_hist", "plots/view_weights_hist.png"),
    ):
        assert result.outputs[key] == str(out / rel) and (out / rel).exists()
    report = (out / "views/view_report.md").read_text()
    assert "only title" in report and "without global" in report and "cold_start" in report
    # the stage's evaluate.bootstrap gives every ablation row its paired gain over the trained model
    ablation = pd.read_csv(out / "views/ablation.csv")
    assert ablation[GAIN].iloc[1:].notna().all() and np.isnan(ablation[GAIN].iloc[0])
    section = report.split("## Inference-time ablation")[1].split("##")[0]
    assert "| test recall@10 vs trained (95% interval) |" in section
    row = ablation.iloc[1]
    cell = f"{row[GAIN]:+.1%} ({row[GAIN_LOW]:+.1%} to {row[GAIN_HIGH]:+.1%})"
    assert f"| {row['variant']} | {row['recall@10']:.4f} | {row['ndcg@10']:.4f} | {cell} |" in section
    # the benchmark's reader (benchmarks/ablation_runs.py) takes the table as this stage writes it
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from ablation_runs import read_ablation

    written = [list(pair) for pair in zip(ablation["variant"], ablation["recall@10"], strict=True)]
    assert read_ablation(out, "recall@10") == written


@pytest.mark.parametrize("backbone", ["lightgcn", "bpr"])
def test_id_only_backbone_still_writes_the_views_output(tmp_path, backbone) -> None:
    """``reports/evaluate/views`` is a DVC output: an ID-only run must create it (else dvc repro fails)."""
    from cliper.stages.evaluate import run as evaluate
    from cliper.stages.train import run as train

    root = tmp_path / "proj"
    (root / "data/ingested").mkdir(parents=True)
    interactions().to_parquet(root / "data/ingested/interactions.parquet")
    params = from_dict(
        Params,
        {
            "train": {"backbone": backbone, "epochs": 2, "device": "cpu", "progress": False,
                      "backbones": {backbone: {"embedding_size": DIM}}},
            "evaluate": {"topk": [5, 10], "valid_metric": "recall@10"},
            "tracking": {"enabled": False},
        },
    )  # fmt: skip
    train(params, root)
    result = evaluate(params, root)
    report = root / "reports/evaluate/views/view_report.md"
    assert result.outputs["view_report"] == str(report)
    text = report.read_text()
    assert f"{backbone} is an ID-only backbone" in text and "no view ablation" in text


def _fusion_project(tmp_path, backbone: str = "freedom", compare: list[str] | None = None,
                    grid: dict | None = None):  # noqa: ANN202
    root = tmp_path / "proj"
    (root / "data/ingested").mkdir(parents=True)
    interactions().to_parquet(root / "data/ingested/interactions.parquet")
    text, image = arrays()
    write_features(root / "data/features", text, image, list(VIEWS))
    config = SMALL if backbone == "freedom" else {"embedding_size": DIM}
    params = from_dict(Params, {
        "train": {"backbone": backbone, "epochs": 3, "device": "cpu", "progress": False,
                  "backbones": {backbone: {**config, **(grid or {"reg_weight": [0.0, 0.1]})}
                                if backbone == "freedom" else config},
                  "compare_fusions": ["mean", "concat", "self_attention"] if compare is None else compare},
        "evaluate": {"topk": [5, 10], "valid_metric": "recall@10"},
        "tracking": {"enabled": False},
    })  # fmt: skip
    return root, params


def test_retrained_fusions_sit_beside_the_trained_model(tmp_path) -> None:
    """train.compare_fusions: each fusion retrained at the chosen point, scored on test by evaluate."""
    from cliper import io
    from cliper.models import Recommender
    from cliper.stages.evaluate import run as evaluate
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path)
    train(params, root)
    meta = io.read_json(root / "models/recommender/train_meta.json")
    listing = {e.pop("name"): e for e in io.read_json(root / "models/fusions/comparison.json")["fusions"]}
    assert list(listing) == ["mean", "concat", "self_attention"]
    s = Splits.from_frame(interactions())
    data = InteractionData(s.n_users, s.n_items, s.users["train"], s.items["train"])
    text, image = arrays()
    features = Features(torch.from_numpy(image), torch.from_numpy(text), VIEWS)
    target = s.target("test")
    stage = evaluate(params, root)
    fusions = io.read_json(root / "reports/evaluate/metrics.json")["fusions"]
    assert sorted(fusions) == ["attention", "concat", "mean", "self_attention"]
    assert fusions["attention"]["trained"]
    for name, record in listing.items():
        assert record["point"] == meta["point"], "every fusion is trained at the chosen grid point"
        model = Recommender.load(root / "models/fusions" / name, data, features).eval()
        assert model.fusion.name == name
        assert fusions[name]["test"] == pytest.approx(evaluate_model(model, target, [5, 10], 4096))
        assert fusions[name]["valid"] == record["valid"] and not fusions[name]["trained"]
    assert fusions["concat"]["test"] != fusions["attention"]["test"]
    assert "vs_trained" not in fusions["attention"]
    for name in listing:  # the paired gain over the trained model, on the same test users
        gain, k = fusions[name]["vs_trained"], "recall@10"  # the valid metric's K
        assert gain["gain"] == pytest.approx(fusions[name]["test"][k] / fusions["attention"]["test"][k] - 1)
        assert gain["low"] <= gain["gain"] <= gain["high"] and gain["metric"] == k
    metrics = io.read_json(root / "reports/evaluate/metrics.json")
    ci = metrics["test_ci"]["recall@10"]  # bootstrap over test users of the trained model's figure
    assert ci["mean"] == pytest.approx(metrics["test"]["recall@10"]) and ci["low"] <= ci["mean"] <= ci["high"]
    assert metrics["test_ci"]["n_users"] == target.n_users and ci["sd"] > 0
    interval = (stage.metrics["test_recall@10_ci_low"], stage.metrics["test_recall@10_ci_high"])
    assert interval == (ci["low"], ci["high"])
    users = pd.read_csv(root / "reports/evaluate/per_user_test.csv")
    assert users["user_id"].tolist() == target.users.tolist()
    assert users["recall@10"].mean() == pytest.approx(metrics["test"]["recall@10"], abs=1e-6)
    assert users["ndcg@10"].mean() == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-6)
    table = pd.read_csv(root / "reports/evaluate/views/fusions.csv")
    assert table["fusion"].tolist() == ["attention (trained model)", "mean", "concat", "self_attention"]
    assert table["recall vs trained"].isna().tolist() == [True, False, False, False]
    report = (root / "reports/evaluate/views/view_report.md").read_text()
    assert "Fusions retrained at the chosen grid point" in report and "| self_attention |" in report
    concat = fusions["concat"]["vs_trained"]
    assert f"{concat['gain']:+.1%} ({concat['low']:+.1%} to {concat['high']:+.1%})" in report


def test_retrained_fusions_train_on_the_trained_models_random_stream(tmp_path) -> None:
    """A paired comparison. With the modality terms off (reg_weight 0) and one text graph per view,
    no fusion changes what FREEDOM computes, so each retrained fusion must equal the trained model
    bit for bit. Unpaired, concat's wider projection shifted the edge-pruning draws and
    self-attention's weights shifted the ID embeddings' initialisation."""
    from cliper import io
    from cliper.models import Recommender
    from cliper.stages.evaluate import run as evaluate
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path, grid={"reg_weight": [0.0], "dropout": [0.5],
                                                   "text_graph": ["views"]})
    train(params, root)
    s = Splits.from_frame(interactions())
    data = InteractionData(s.n_users, s.n_items, s.users["train"], s.items["train"])
    text, image = arrays()
    features = Features(torch.from_numpy(image), torch.from_numpy(text), VIEWS)
    trained = Recommender.load(root / "models/recommender", data, features).state_dict()
    meta = io.read_json(root / "models/recommender/train_meta.json")
    for entry in io.read_json(root / "models/fusions/comparison.json")["fusions"]:
        model = Recommender.load(root / "models/fusions" / entry["name"], data, features).state_dict()
        for key in ("user_embedding", "item_id_embedding"):
            assert torch.equal(model[key], trained[key]), f"{entry['name']}: {key} differs"
        assert (entry["best_epoch"], entry["valid"]) == (meta["best_epoch"], meta["valid"])
    evaluate(params, root)
    for row in io.read_json(root / "reports/evaluate/metrics.json")["fusions"].values():
        if not row["trained"]:  # equal models: no gain, and an interval of width 0
            gain = row["vs_trained"]
            assert (gain["gain"], gain["low"], gain["high"]) == (0, 0, 0)


def test_a_revised_fusion_is_retrained_not_resumed_from_the_cache(tmp_path, monkeypatch) -> None:
    """A fusion whose arithmetic changed (``revision``) gets a checkpoint folder of its own: the
    train stage retrains it instead of resuming the former arithmetic's finished run, and every
    other run (grid points, unrevised fusions) is still found in the cache."""
    from cliper.fusion import SelfAttentionFusion
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path, compare=["mean", "self_attention"])
    cache = root / params.train.cache_dir

    def runs() -> set[str]:
        return {p.name for p in cache.iterdir() if p.name != "graphs"}

    train(params, root)
    before = runs()
    train(params, root)
    assert runs() == before  # same code: every run resumed, none retrained
    monkeypatch.setattr(SelfAttentionFusion, "revision", SelfAttentionFusion.revision + 1)
    train(params, root)
    assert len(runs() - before) == 1 and before <= runs()


def test_compare_fusions_empty_or_id_only_writes_an_empty_listing(tmp_path) -> None:
    from cliper import io
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path, backbone="lightgcn")
    train(params, root)  # an ID-only backbone has no text to fuse: nothing retrained, the DVC out exists
    assert io.read_json(root / "models/fusions/comparison.json") == {"fusions": []}


def test_an_unknown_compared_fusion_is_refused_before_training(tmp_path) -> None:
    from cliper.errors import CliperError
    from cliper.stages.train import run as train

    root, params = _fusion_project(tmp_path, compare=["mean", "gated"])
    with pytest.raises(CliperError, match=r"train.compare_fusions: unknown fusion\(s\) \['gated'\]"):
        train(params, root)
    assert not (root / "models").exists()
