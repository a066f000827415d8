"""Contrastive adaptation improves held-out image-text retrieval on a catalog with shared attributes.

Images are solid colours (with noise) and every text view names the colour, so the pairing
is learnable; a random-init model starts near chance and adaptation must beat its start on
items it never trained on. The stage run checks the checkpoint and report it writes.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cliper.clip.adapt import adapt_clip, image_dataset, split_items
from cliper.clip.hard_batches import hard_batches
from cliper.clip.load import load_clip
from cliper.config import AdaptConfig, load_params
from cliper.stages import run_stage

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 50, 220),
    "yellow": (230, 220, 30),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
}
NOUNS = ["ball", "cup", "hat", "sock"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def colour_catalog(root, n_items: int = 96, size: int = 32) -> pd.DataFrame:
    """Items whose image colour is named in the title/description (written under ``root``)."""
    rng = np.random.default_rng(7)
    (root / "img").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    rows = []
    for i in range(n_items):
        colour, noun = names[i % len(names)], NOUNS[(i // len(names)) % len(NOUNS)]
        pixels = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 12, (size, size, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(root / "img" / f"{i}.jpg")
        rows.append(
            {
                "item_id": i,
                "asin": f"B{i:04d}",
                "title": f"{colour} {noun}",
                "brand": None,
                "description": f"A {colour} {noun} for babies.",
                "categories": None,
                "price": None,
                "image_path": f"img/{i}.jpg",
            }
        )
    return pd.DataFrame(rows)


def _mean_recall(metrics: dict[str, float], k: int) -> float:
    return (metrics[f"i2t_recall@{k}"] + metrics[f"t2i_recall@{k}"]) / 2


def test_split_is_seeded_and_disjoint():
    train, val = split_items(50, 0.2, seed=1)
    again = split_items(50, 0.2, seed=1)
    assert len(val) == 10 and not set(train) & set(val) and len(train) + len(val) == 50
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])


def test_adaptation_beats_its_start_on_held_out_items(tmp_path):
    items = colour_catalog(tmp_path)
    texts = np.array(
        [
            [f"The product title is {t}." for t in items["title"]],
            [f"The product description is {d}" for d in items["description"]],
        ]
    )
    loaded = load_clip("cliper-tiny", None, "fp32", "cpu", seed=0)
    images = image_dataset(loaded, [tmp_path / p for p in items["image_path"]])
    cfg = AdaptConfig(epochs=7, batch_size=24, lr=3e-4, weight_decay=0.0, val_fraction=0.25, seed=0)
    result = adapt_clip(loaded, texts, images, cfg, eval_view=0)
    assert result.n_val == 24 and len(result.losses) == 7
    assert result.losses[-1] < result.losses[0]
    assert _mean_recall(result.after, 10) > _mean_recall(result.before, 10) + 0.15
    assert _mean_recall(result.after, 10) > result.chance["recall@10"] + 0.15


def test_stage_writes_checkpoint_and_report_and_epochs_zero_keeps_weights(tmp_path):
    items = colour_catalog(tmp_path, n_items=24, size=16)
    (tmp_path / "data" / "ingested").mkdir(parents=True)
    items.to_parquet(tmp_path / "data" / "ingested" / "items.parquet")
    params = load_params(
        "params.yaml",
        {
            "clip.adapt.epochs": 0,
            "clip.adapt.val_fraction": 0.25,
            "clip.extract.num_workers": 0,
            "clip.device": "cpu",
        },
    )
    run_stage("preprocess", params, tmp_path)
    result = run_stage("adapt", params, tmp_path)
    report = json.loads((tmp_path / "reports" / "adapt" / "metrics.json").read_text())
    assert report["before"] == report["after"] and report["n_val"] == 6
    assert report["chance"] == {"recall@1": 1 / 6, "recall@10": 1.0}
    info = json.loads((tmp_path / "models" / "clip" / "model.json").read_text())
    assert info["model"] == params.clip.model and len(info["sha256"]) == 64
    start = load_clip(params.clip.model, None, "fp32", "cpu", seed=params.clip.adapt.seed)
    saved = load_clip(params.clip.model, result.outputs["checkpoint"], "fp32", "cpu")
    assert all(
        torch.equal(a, b)
        for a, b in zip(start.model.state_dict().values(), saved.model.state_dict().values(), strict=True)
    )


def test_stage_trains_in_the_layout_of_clip_channels_last(tmp_path, monkeypatch):
    """The adapt stage hands clip.channels_last to the model it trains (NHWC weights when true)."""
    from cliper.stages import adapt as adapt_stage

    items = colour_catalog(tmp_path, n_items=24, size=16)
    (tmp_path / "data" / "ingested").mkdir(parents=True)
    items.to_parquet(tmp_path / "data" / "ingested" / "items.parquet")
    seen = []

    def spy(loaded, *args, **kwargs):
        seen.append(loaded.model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last))
        return adapt_clip(loaded, *args, **kwargs)

    monkeypatch.setattr(adapt_stage, "adapt_clip", spy)
    for channels_last in (True, False):
        params = load_params("params.yaml", {"clip.adapt.epochs": 0, "clip.adapt.val_fraction": 0.25,
                                             "clip.extract.num_workers": 0, "clip.device": "cpu",
                                             "clip.channels_last": channels_last})
        run_stage("preprocess", params, tmp_path)
        run_stage("adapt", params, tmp_path)
    assert seen == [True, False]


def _noun_agreement(loaded, items: pd.DataFrame, val: np.ndarray) -> float:
    """Share of held-out titles whose nearest held-out description names the same noun."""
    from cliper.clip.adapt import _encode_texts

    titles = [f"The product title is {t}." for t in items["title"].iloc[val]]
    descriptions = [f"The product description is {d}" for d in items["description"].iloc[val]]
    with torch.inference_mode():
        a = _encode_texts(loaded, loaded.tokenizer(titles))
        b = _encode_texts(loaded, loaded.tokenizer(descriptions))
    sim = a @ b.T
    sim.fill_diagonal_(-2.0)  # the item's own description would make it trivial
    nouns = items["title"].iloc[val].str.split().str[-1].to_numpy()
    return float(np.mean(nouns == nouns[sim.argmax(dim=1).numpy()]))


def test_text_weight_keeps_what_only_the_texts_share(tmp_path):
    """The noun is in every text view but never in the image: only the text-text term learns it."""
    items = colour_catalog(tmp_path)
    texts = np.array(
        [
            [f"The product title is {t}." for t in items["title"]],
            [f"The product description is {d}" for d in items["description"]],
        ]
    )
    agreement = {}
    for weight in (0.0, 1.0):
        loaded = load_clip("cliper-tiny", None, "fp32", "cpu", seed=0)
        images = image_dataset(loaded, [tmp_path / p for p in items["image_path"]])
        cfg = AdaptConfig(epochs=7, batch_size=24, lr=3e-4, val_fraction=0.25, seed=0, text_weight=weight)
        result = adapt_clip(loaded, texts, images, cfg, eval_view=0)
        assert np.isfinite(result.losses).all()
        agreement[weight] = _noun_agreement(loaded, items, split_items(len(items), 0.25, 0)[1])
    assert agreement[1.0] > agreement[0.0] + 0.15, agreement  # measured: 0.33 -> 0.58


def _adapted_weights(tmp_path, **cfg_fields: float) -> tuple[dict[str, torch.Tensor], list[float]]:
    items = colour_catalog(tmp_path, n_items=48, size=16)
    texts = np.array([[f"The product title is {t}." for t in items["title"]]])
    loaded = load_clip("cliper-tiny", None, "fp32", "cpu", seed=0)
    images = image_dataset(loaded, [tmp_path / p for p in items["image_path"]])
    cfg = AdaptConfig(epochs=3, batch_size=12, lr=3e-4, val_fraction=0.25, seed=0, **cfg_fields)
    result = adapt_clip(loaded, texts, images, cfg, eval_view=0)  # in process: a forked loader worker is
    # flaky late in a long pytest run (it exited 1 once); preloading forces 0 workers anyway
    return {k: v.clone() for k, v in loaded.model.state_dict().items()}, result.losses


def test_preloaded_images_train_the_same_weights(tmp_path):
    """Decoding the images once into memory changes the speed, not one weight."""
    on_the_fly, _ = _adapted_weights(tmp_path, preload_images_mb=0.0)
    preloaded, _ = _adapted_weights(tmp_path, preload_images_mb=64.0)
    assert all(torch.equal(on_the_fly[k], preloaded[k]) for k in on_the_fly)


def test_hard_negative_batches_are_mined_from_the_previous_epoch(tmp_path, monkeypatch):
    """Epoch 1 is random (no embeddings yet); every later epoch mines k neighbours per training item."""
    import cliper.clip.adapt as adapt_module

    seen = []

    def recording(n_train, batch_size, neighbours, share, gen):
        seen.append(None if neighbours is None else tuple(neighbours.shape))
        return hard_batches(n_train, batch_size, neighbours, share, gen)

    monkeypatch.setattr(adapt_module, "hard_batches", recording)
    _, losses = _adapted_weights(tmp_path, hard_negatives=0.5, hard_negatives_k=3)
    assert np.isfinite(losses).all() and len(losses) == 3
    assert seen == [None, (36, 3), (36, 3)]  # 48 items, 12 held out


def test_grayscale_share_reaches_the_training_images(tmp_path, monkeypatch):
    """clip.adapt.grayscale: that share of the images the model trains on is grey, none at 0."""
    import cliper.clip.adapt as adapt_module
    from cliper.clip.augment import normalisation

    step, seen = adapt_module._train_step, []

    def recording(loaded, opt, images, *args):
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalisation(loaded.preprocess))
        p = images * std + mean
        seen.append(((p.amax(1) - p.amin(1)).flatten(1).amax(1) < 1e-4).float().mean().item())
        return step(loaded, opt, images, *args)

    monkeypatch.setattr(adapt_module, "_train_step", recording)
    _adapted_weights(tmp_path, grayscale=0.0)
    base = float(np.mean(seen))  # some black and white items are grey after JPEG already
    assert base < 0.2, seen
    seen.clear()
    _adapted_weights(tmp_path, grayscale=0.5)
    expected = base + 0.5 * (1 - base)
    assert abs(float(np.mean(seen)) - expected) < 0.15, (seen, expected)


def test_cosine_schedule_warms_up_then_decays_the_optimiser_lr(tmp_path, monkeypatch):
    """clip.adapt.lr_schedule: the lr each step trains with; constant stays at lr."""
    import math

    import cliper.clip.adapt as adapt_module

    step, seen = adapt_module._train_step, []

    def recording(loaded, opt, *args):
        seen.append(opt.param_groups[0]["lr"])
        return step(loaded, opt, *args)

    monkeypatch.setattr(adapt_module, "_train_step", recording)
    _adapted_weights(tmp_path)
    assert seen == [3e-4] * 9  # 36 training items, batches of 12, 3 epochs
    seen.clear()
    _adapted_weights(tmp_path, lr_schedule="cosine", warmup_fraction=0.34)  # 3 warm-up steps of 9
    cosine = [0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)]
    expected = [3e-4 * f for f in [1 / 3, 2 / 3, 1.0, *cosine]]
    assert np.allclose(seen, expected, rtol=1e-9, atol=0), (seen, expected)


def test_swap_negatives_reach_the_training_step(tmp_path, monkeypatch):
    """clip.adapt.swap_negatives: each step gets negatives that differ from a positive by one sentence."""
    import cliper.clip.adapt as adapt_module

    step, seen = adapt_module._train_step, []

    def recording(loaded, opt, images, tokens, other, text_weight, negatives=None, words=None):
        seen.append((tokens.clone(), None if negatives is None else negatives.clone()))
        return step(loaded, opt, images, tokens, other, text_weight, negatives, words)

    monkeypatch.setattr(adapt_module, "_train_step", recording)
    items = colour_catalog(tmp_path, n_items=48, size=16)
    # two sentences per caption, both unique per item: a swap never rebuilds a true caption
    texts = np.array([[f"The product is {t} number {i}. It is lot {i} of the batch." for i, t in
                       enumerate(items["title"])]])
    loaded = load_clip("cliper-tiny", None, "fp32", "cpu", seed=0)
    images = image_dataset(loaded, [tmp_path / p for p in items["image_path"]])
    for share in (0.0, 1.0):
        seen.clear()
        cfg = AdaptConfig(epochs=2, batch_size=12, lr=3e-4, val_fraction=0.25, seed=0, swap_negatives=share)
        result = adapt_clip(loaded, texts, images, cfg, eval_view=0)
        assert np.isfinite(result.losses).all() and len(seen) == 6  # 36 training items / 12
        if share == 0:
            assert all(neg is None for _, neg in seen)
            continue
        positives = {tuple(row.tolist()) for tokens, _ in seen for row in tokens}
        negatives = [tuple(row.tolist()) for _, neg in seen if neg is not None for row in neg]
        assert len(negatives) > 30 and not positives & set(negatives)  # most rows, never a true caption


def test_caption_word_targets_reach_the_training_step(tmp_path, monkeypatch):
    """clip.adapt.words_weight: each step's image loss gets the word targets of exactly its items."""
    import cliper.clip.adapt as adapt_module

    step, real_vocabulary, seen, built = adapt_module._train_step, adapt_module.caption_words, [], []

    def recording(loaded, opt, images, tokens, other, text_weight, negatives=None, words=None):
        seen.append(None if words is None else (*words, tokens.clone()))
        return step(loaded, opt, images, tokens, other, text_weight, negatives, words)

    def vocabulary(*args):
        built.append(real_vocabulary(*args))
        return built[-1]

    monkeypatch.setattr(adapt_module, "_train_step", recording)
    monkeypatch.setattr(adapt_module, "caption_words", vocabulary)
    items = colour_catalog(tmp_path, n_items=48, size=16)
    texts = np.array([[f"The product title is {t}." for t in items["title"]]])
    loaded = load_clip("cliper-tiny", None, "fp32", "cpu", seed=0)
    images = image_dataset(loaded, [tmp_path / p for p in items["image_path"]])
    for weight in (0.0, 2.0):
        seen.clear()
        cfg = AdaptConfig(epochs=1, batch_size=12, lr=3e-4, val_fraction=0.25, seed=0, words_weight=weight,
                          words_min_items=2)
        assert np.isfinite(adapt_clip(loaded, texts, images, cfg, eval_view=0).losses).all()
        if weight == 0:
            assert seen == [None] * 3
            continue
        item_of = {tuple(row.tolist()): i for i, row in enumerate(loaded.tokenizer(list(texts[0])))}
        for head, targets, w, tokens in seen:
            assert w == 2.0 and targets.shape == (12, head.linear.out_features)
            assert (targets.sum(1) == 2).all()  # each title: one colour word + one noun
            items = [item_of[tuple(row.tolist())] for row in tokens]  # the step's items, by caption
            assert torch.equal(targets, built[-1].targets[items])


def test_caption_views_restrict_the_training_captions(tmp_path, monkeypatch):
    """clip.adapt.caption_views: every step's captions come from the listed views only; listing
    every view draws exactly what null draws (the demo's default checkpoint keeps its bytes)."""
    import cliper.clip.adapt as adapt_module

    step, seen = adapt_module._train_step, []

    def recording(loaded, opt, images, tokens, *args):
        seen.append(tokens.clone())
        return step(loaded, opt, images, tokens, *args)

    monkeypatch.setattr(adapt_module, "_train_step", recording)
    items = colour_catalog(tmp_path, n_items=48, size=16)
    texts = np.array([[f"{view} {i} {t}." for i, t in enumerate(items["title"])]
                      for view in ("one", "two", "three")])
    weights, drawn = {}, {}
    for rows in (None, [0, 1, 2], [1, 2]):
        seen.clear()
        loaded = load_clip("cliper-tiny", None, "fp32", "cpu", seed=0)
        images = image_dataset(loaded, [tmp_path / p for p in items["image_path"]])
        cfg = AdaptConfig(epochs=2, batch_size=12, lr=3e-4, val_fraction=0.25, seed=0)
        adapt_clip(loaded, texts, images, cfg, eval_view=0, caption_views=rows)
        view_of = {tuple(r.tolist()): v for v in range(3) for r in loaded.tokenizer(list(texts[v]))}
        drawn[str(rows)] = [view_of[tuple(r.tolist())] for tokens in seen for r in tokens]
        weights[str(rows)] = loaded.model.state_dict()
    assert set(drawn["[1, 2]"]) == {1, 2} and set(drawn["None"]) == {0, 1, 2}
    assert drawn["None"] == drawn["[0, 1, 2]"]
    assert all(torch.equal(weights["None"][k], weights["[0, 1, 2]"][k]) for k in weights["None"])


@pytest.mark.parametrize("names", [[], ["title", "title"], ["title", "colour"]])
def test_caption_views_that_are_not_distinct_known_views_are_refused(names):
    from cliper.errors import CliperError
    from cliper.stages.adapt import caption_rows

    views = ["title", "brand", "description"]
    assert caption_rows(["description", "brand"], views) == [2, 1] and caption_rows(None, views) is None
    with pytest.raises(CliperError, match=r"clip\.adapt\.caption_views .*preprocess\.views"):
        caption_rows(names, views)


def test_fused_adamw_is_opt_in_and_updates_as_adamw():
    """clip.adapt.fused_adamw: torch's fused kernel on CPU, the same steps as the per-tensor loop."""
    from cliper.clip.adapt import make_optimizer

    plain = make_optimizer([torch.zeros(2, requires_grad=True)], AdaptConfig(), torch.device("cpu"))
    assert not plain.defaults["fused"]  # the default keeps the per-tensor loop (and its float path)
    cfg = AdaptConfig(lr=1e-2, weight_decay=0.1, fused_adamw=True)
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(7)]
    fused_w = [w.clone().requires_grad_() for w in start]
    loop_w = [w.clone().requires_grad_() for w in start]
    fused = make_optimizer(fused_w, cfg, torch.device("cpu"))
    loop = torch.optim.AdamW(loop_w, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    assert fused.defaults["fused"] is True and cfg.lr == fused.defaults["lr"]
    for step in range(5):
        for opt, weights in ((fused, fused_w), (loop, loop_w)):
            opt.zero_grad()
            sum(((w - step) ** 2).sum() for w in weights).backward()
            opt.step()
    for a, b in zip(fused_w, loop_w, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert not torch.equal(fused_w[0], start[0])
