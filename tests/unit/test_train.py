"""Trainer and train stage: falling loss per backbone, selection on valid, resume, bad inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cliper.config import Params, from_dict
from cliper.errors import CliperError, DataError
from cliper.evaluate import Splits
from cliper.features import write_features
from cliper.grid import expand_grid, grid_search
from cliper.models import InteractionData, build_model, get_model_class, list_models
from cliper.train import Trainer, TrainSettings, seed_everything

REPO = Path(__file__).resolve().parents[2]
N_USERS, N_ITEMS, N_CLUSTERS, DIM = 48, 40, 4, 16
FAST = TrainSettings(
    epochs=4,
    patience=3,
    batch_size=64,
    learning_rate=0.01,
    seed=3,
    device="cpu",
    topk=(5, 10),
    valid_metric="recall@10",
    progress=False,
)


def tiny_interactions(seed: int = 0) -> pd.DataFrame:
    """Users in clusters that like their cluster's items; per user 6 train, 1 valid, 1 test."""
    rng = np.random.default_rng(seed)
    per = N_ITEMS // N_CLUSTERS
    rows = []
    for u in range(N_USERS):
        c = u % N_CLUSTERS
        items = rng.choice(np.arange(c * per, (c + 1) * per), size=8, replace=False)
        rows += [(u, int(i), lab) for i, lab in zip(items, [0] * 6 + [1, 2], strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "x_label"]).astype({"x_label": "int8"})


def tiny_features(n_items: int = N_ITEMS, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(n_items, dim)).astype(np.float32)
    text = np.stack([image + rng.normal(scale=s, size=image.shape) for s in (0.1, 1.0, 3.0)]).astype(
        np.float32
    )
    return text, image


def make_root(tmp_path: Path, df: pd.DataFrame | None = None, feats=None) -> Path:
    root = tmp_path / "proj"
    (root / "data/ingested").mkdir(parents=True)
    (tiny_interactions() if df is None else df).to_parquet(root / "data/ingested/interactions.parquet")
    text, image = tiny_features() if feats is None else feats
    write_features(root / "data/features", text, image, ["title", "brand", "global"])
    return root


def tiny_params(**train) -> Params:
    base = {
        "epochs": 3,
        "patience": 2,
        "batch_size": 64,
        "learning_rate": 0.01,
        "device": "cpu",
        "progress": False,
        "backbone": "bpr",
    }
    return from_dict(
        Params,
        {
            "train": {**base, **train},
            "evaluate": {"topk": [5, 10], "valid_metric": "recall@10"},
            "tracking": {"enabled": False},  # MLflow logging is tested in tests/pipeline
        },
    )


def _splits() -> Splits:
    return Splits.from_frame(tiny_interactions())


def _data(s: Splits) -> InteractionData:
    return InteractionData(s.n_users, s.n_items, s.users["train"], s.items["train"])


@pytest.mark.parametrize("name", list_models())
def test_each_backbone_trains_with_falling_loss(name, tmp_path):
    from cliper.features import load_features

    s = _splits()
    feats = fusion = None
    if get_model_class(name).needs_features:
        write_features(tmp_path, *tiny_features(), ["title", "brand", "global"])
        feats, _ = load_features(tmp_path, s.n_items)
        from cliper.config import FusionConfig
        from cliper.fusion import build_fusion

        fusion = build_fusion(FusionConfig(), 3, DIM)
    seed_everything(0)
    model = build_model(name, data=_data(s), features=feats, fusion=fusion)
    trainer = Trainer(
        model,
        s.users["train"],
        s.items["train"],
        s.n_items,
        s.target("valid"),
        replace(FAST, patience=100, epochs=3),
    )
    state = trainer.fit()
    losses = [h["loss"] for h in state.history]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert 0.0 <= trainer.evaluate(s.target("test"))["recall@10"] <= 1.0


class Oracle(torch.nn.Module):
    """Scores fixed by config: 'valid' ranks the valid items first, 'test' the test items."""

    def __init__(self, splits: Splits, mode: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        table = torch.zeros(splits.n_users, splits.n_items)
        table[splits.users[mode], splits.items[mode]] = 1.0
        self.register_buffer("table", table)

    def pre_epoch(self) -> None:
        pass

    def calculate_loss(self, users, pos, neg):
        return (self.w**2).sum() + 1.0

    def full_sort_predict(self, users):
        return self.table[users] + 0 * self.w


def test_grid_is_chosen_on_valid_not_test():
    s = _splits()
    points = expand_grid({"mode": ["test", "valid"], "x": 1})
    assert points == [{"mode": "test", "x": 1}, {"mode": "valid", "x": 1}]
    res = grid_search(
        points,
        lambda p: Oracle(s, p["mode"]),
        s.users["train"],
        s.items["train"],
        s.n_items,
        s.target("valid"),
        s.target("test"),
        replace(FAST, epochs=2),
    )
    valid_scores = [p["valid"]["recall@10"] for p in res.points]
    test_scores = [p["test"]["recall@10"] for p in res.points]
    assert np.argmax(test_scores) == 0 and np.argmax(valid_scores) == 1  # they disagree
    assert res.best_index == 1 and res.points[1]["point"]["mode"] == "valid"


def _run(settings, ckpt, stop_after=None):
    s = _splits()
    seed_everything(settings.seed)
    model = build_model("bpr", data=_data(s))
    trainer = Trainer(model, s.users["train"], s.items["train"], s.n_items, s.target("valid"), settings, ckpt)
    state = trainer.fit(stop_after=stop_after)
    return state, trainer


def test_resume_after_interruption_gives_identical_results(tmp_path):
    settings = replace(FAST, epochs=4, patience=100)
    full, t_full = _run(settings, tmp_path / "a")
    _, _ = _run(settings, tmp_path / "b", stop_after=2)
    resumed, t_res = _run(settings, tmp_path / "b")  # fresh model + trainer, restored from checkpoint
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.best_valid == full.best_valid and resumed.best_epoch == full.best_epoch
    assert t_res.evaluate(_splits().target("test")) == t_full.evaluate(_splits().target("test"))


SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from dataclasses import replace
    from unit.test_train import _run, FAST
    from cliper.train import Trainer
    orig = Trainer.fit
    def fit(self, stop_after=None, on_epoch_end=None):
        def hook(epoch):
            if epoch + 1 == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return orig(self, stop_after, hook)
    Trainer.fit = fit
    _run(replace(FAST, epochs=4, patience=100), sys.argv[1])
""")


def test_sigkill_and_restart_resumes_to_the_same_metrics(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, str(script), str(tmp_path / "ck")], env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    settings = replace(FAST, epochs=4, patience=100)
    resumed, t_res = _run(settings, tmp_path / "ck")  # a fresh trainer picks up the killed run's checkpoint
    full, t_full = _run(settings, tmp_path / "fresh")
    assert len(resumed.history) == 4
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.best_valid == full.best_valid
    assert t_res.evaluate(_splits().target("test")) == t_full.evaluate(_splits().target("test"))


# ----------------------------------------------------------------------------- stage + bad inputs


def test_train_stage_writes_model_metrics_history(tmp_path):
    from cliper.stages.train import run

    root = make_root(tmp_path)
    result = run(tiny_params(backbones={"bpr": {"reg_weight": [1e-4, 1e-2]}}), root)
    meta = pd.read_json(root / "models/recommender/train_meta.json", typ="series")
    assert len(meta["grid"]) == 2 and meta["backbone"] == "bpr"
    for f in ("model.pt", "config.json", "embeddings.npz"):
        assert (root / "models/recommender" / f).exists()
    for f in ("metrics.json", "history.json", "plots/history.png"):
        assert (root / "reports/train" / f).exists()
    assert "test_recall@10" in result.metrics
    again = run(
        tiny_params(backbones={"bpr": {"reg_weight": [1e-4, 1e-2]}}), root
    )  # finished checkpoints reused
    assert again.metrics == result.metrics

    # The evaluate stage reloads the saved model and reproduces the train stage's test metrics.
    from cliper.stages.evaluate import run as evaluate

    (root / "data/preprocessed").mkdir(parents=True)
    pd.DataFrame({"item_id": [0, 1, 2, 3, 4]}).to_csv(
        root / "data/preprocessed/missing_images.csv", index=False
    )
    ev = evaluate(tiny_params(), root)
    report = pd.read_json(root / "reports/evaluate/metrics.json", typ="series")
    assert ev.metrics["test_recall@10"] == pytest.approx(result.metrics["test_recall@10"])
    assert set(report["slices"]) == {"cold_start", "missing_image"}
    assert report["slices"]["missing_image"]["n_users"] <= N_USERS
    assert (root / "reports/evaluate/plots/metrics_at_k.png").exists()


@pytest.mark.parametrize(
    "train, match",
    [
        ({"backbone": "nope"}, "unknown model 'nope'"),
        ({"backbones": {"bpr": {"embedding_size": "big"}}}, "embedding_size: expected int"),
        ({"backbones": {"bpr": {"no_such_key": 1}}}, "unknown config key 'no_such_key'"),
        ({"fusion": {"name": "nope"}}, "unknown fusion 'nope'"),
    ],
)
def test_bad_params_fail_before_training(tmp_path, train, match):
    from cliper.stages.train import run

    with pytest.raises(CliperError, match=match):
        run(tiny_params(**train), make_root(tmp_path))
    assert not (tmp_path / "proj/models").exists()


def test_wrong_param_type_is_a_config_error():
    from cliper.config import ConfigError

    with pytest.raises(ConfigError, match="train.epochs"):
        from_dict(Params, {"train": {"epochs": "many"}}, source="params.yaml")


def _feature_cases():
    text, image = tiny_features()
    nan = text.copy()
    nan[1, 7, 3] = np.nan
    return [
        ((text[:, :-1], image[:-1]), "features for 39 items, but the interactions have 40"),
        ((text[..., :8], image), "text dim 8 != image dim 16"),
        ((nan, image), "non-finite value.*item 7"),
    ]


@pytest.mark.parametrize("feats, match", _feature_cases())
def test_bad_features_fail_before_training(tmp_path, feats, match):
    from cliper.stages.train import run

    with pytest.raises(DataError, match=match):
        run(tiny_params(backbone="freedom"), make_root(tmp_path, feats=feats))


def test_empty_valid_split_fails_before_training(tmp_path):
    from cliper.stages.train import run

    df = tiny_interactions()
    df.loc[df["x_label"] == 1, "x_label"] = 0
    with pytest.raises(DataError, match="valid split"):
        run(tiny_params(), make_root(tmp_path, df=df))


def test_train_views_selects_a_view_subset_and_keys_the_cache(tmp_path):
    from cliper.features import load_features

    text, image = tiny_features()
    write_features(tmp_path, text, image, ["title", "brand", "global"])
    all_views, all_hash = load_features(tmp_path, N_ITEMS)
    title, title_hash = load_features(tmp_path, N_ITEMS, ["title"])
    swapped, swapped_hash = load_features(tmp_path, N_ITEMS, ["global", "title"])
    assert all_views.view_names == ("title", "brand", "global")
    assert title.view_names == ("title",) and torch.equal(title.text_views[0], torch.from_numpy(text[0]))
    assert torch.equal(swapped.text_views[0], torch.from_numpy(text[2]))
    assert len({all_hash, title_hash, swapped_hash}) == 3  # a view subset never reuses another's cache
    for bad in (["colour"], [], ["title", "title"]):
        with pytest.raises(DataError, match="train.views"):
            load_features(tmp_path, N_ITEMS, bad)


def test_train_stage_with_one_view_trains_and_weights_that_view(tmp_path):
    from cliper.stages.train import run

    multimodal = [m for m in list_models() if get_model_class(m).needs_features]
    root = make_root(tmp_path)
    trained = run(tiny_params(backbone=multimodal[0], epochs=1, views=["brand"]), root)
    weights = pd.read_csv(root / "reports/train/view_weights.csv")
    assert set(weights["view"]) == {"brand"} and np.allclose(weights["weight"], 1.0)

    from cliper.stages.evaluate import run as evaluate  # reloads the model with the same view

    (root / "data/preprocessed").mkdir(parents=True)
    pd.DataFrame({"item_id": [0]}).to_csv(root / "data/preprocessed/missing_images.csv", index=False)
    ev = evaluate(tiny_params(backbone=multimodal[0]), root)
    assert ev.metrics["test_recall@10"] == pytest.approx(trained.metrics["test_recall@10"])
