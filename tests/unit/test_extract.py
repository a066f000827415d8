"""Extraction: exact features vs a plain per-prompt encode, chunk combining, resume after a kill."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from cliper.clip.extract import combine_chunks, order_views, plan_text
from cliper.clip.load import load_clip
from cliper.config import load_params
from cliper.errors import DataError
from cliper.io import sha256_array
from cliper.stages import run_stage
from cliper.views.prompts import BpeTokenizer
from tests.conftest import write_item_catalog

N_ITEMS = 14


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(**overrides):
    base = {
        "clip.adapt.epochs": 0,
        "clip.extract.num_workers": 0,
        "clip.extract.batch_size": 4,
        "clip.device": "cpu",
        "clip.adapt.val_fraction": 0.2,
    }
    return load_params("params.yaml", {**base, **overrides})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A preprocessed + adapted (epochs 0) tiny project; tests copy nothing, they write features."""
    root = tmp_path_factory.mktemp("extract")
    write_item_catalog(root, N_ITEMS)
    items = pd.read_parquet(root / "data" / "ingested" / "items.parquet")
    items.loc[4, "image_path"] = None  # an item without an image gets the placeholder
    items.to_parquet(root / "data" / "ingested" / "items.parquet")
    params = _params()
    run_stage("preprocess", params, root)
    run_stage("adapt", params, root)
    run_stage("extract", params, root)
    return root


def test_outputs_match_contract_and_plain_encoding(project):
    feats = project / "data" / "features"
    text, image = np.load(feats / "text_views.npy"), np.load(feats / "image.npy")
    meta = json.loads((feats / "meta.json").read_text())
    assert text.shape == (5, N_ITEMS, 128) and image.shape == (N_ITEMS, 128) and text.dtype == np.float32
    assert meta["views"] == ["title", "brand", "categories", "description", "global"]
    assert meta["content_hash"] == sha256_array(text, image) and meta["chunk_combine"] == "mean"
    views = pd.read_parquet(project / "data" / "preprocessed" / "views.parquet")
    loaded = load_clip(
        _params().clip.model, str(project / "models" / "clip" / "open_clip_pytorch_model.bin"), "fp32", "cpu"
    )
    short = views[views["n_chunks"] == 1]
    with torch.inference_mode():  # the original's way: full context, one prompt string each
        ref = F.normalize(loaded.model.encode_text(loaded.tokenizer(short["text"].tolist())), dim=-1).numpy()
    rank = short["view"].map({v: k for k, v in enumerate(meta["views"])}).to_numpy()
    np.testing.assert_allclose(text[rank, short["item_id"].to_numpy()], ref, atol=1e-5)
    assert (views.loc[(views["item_id"] == 2) & (views["view"] == "description"), "n_chunks"] > 1).all()
    assert np.isfinite(text).all() and np.isfinite(image).all()


def test_plan_deduplicates_and_sorts_chunks():
    tok = BpeTokenizer.from_open_clip(load_clip("cliper-tiny").tokenizer, 77)
    views = pd.DataFrame(
        {
            "item_id": [0, 1, 0, 1],
            "view": ["brand", "brand", "title", "title"],
            "text": [
                "The product brand is Missing.",
                "The product brand is Missing.",
                "The product title is Cup.",
                "The product title is a long " + "x " * 120,
            ],
        }
    )
    plan = plan_text(
        order_views(views, ["brand", "title"], 2),
        {"brand": "The product brand is ", "title": "The product title is "},
        tok,
    )
    assert plan.n_prompts == 3 and plan.codes.tolist() == [0, 0, 1, 2]
    lengths = [len(c) for c in plan.chunks]
    assert lengths == sorted(lengths) and max(lengths) <= 77 and (plan.owner == 2).sum() >= 2


def test_chunk_combine_rules():
    emb = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]], dtype=np.float32)
    owner = np.array([0, 0, 1])
    np.testing.assert_allclose(combine_chunks(emb, owner, 2, "sum"), [[3, 6], [1, 0]])
    np.testing.assert_allclose(combine_chunks(emb, owner, 2, "mean"), [[0.3, 0.9], [1, 0]], atol=1e-6)


def test_incomplete_views_are_refused():
    views = pd.DataFrame({"item_id": [0], "view": ["title"], "text": ["x"]})
    with pytest.raises(DataError, match="views.parquet"):
        order_views(views, ["title"], 2)
    with pytest.raises(DataError, match=r"views \['brand'\]"):
        order_views(views, ["title", "brand"], 1)


class _Killed(RuntimeError):
    pass


def test_killed_run_resumes_to_identical_arrays_and_never_leaves_partial_outputs(project):
    out = "data/features_resume"
    params = _params(**{"clip.extract.out_dir": out, "clip.extract.cache_dir": ".cache/resume"})
    seen = []

    def kill_after_three(kind, index):
        seen.append((kind, index))
        if len(seen) == 3:
            raise _Killed("simulated kill")

    with pytest.raises(_Killed):
        _run_extract(params, project, kill_after_three)
    assert not (project / out).exists()
    shards = sorted(p.name for p in (project / ".cache" / "resume").rglob("*.npy"))
    assert len(shards) == 3
    resumed = []
    _run_extract(params, project, lambda kind, index: resumed.append((kind, index)))
    assert not set(resumed) & set(seen)  # finished shards were not recomputed
    for name in ("text_views.npy", "image.npy"):
        assert np.array_equal(np.load(project / out / name), np.load(project / "data" / "features" / name))


def test_channels_last_extracts_the_same_features_under_a_cache_key_of_its_own(project):
    """clip.channels_last: an NHWC image tower, the default layout's features but for rounding, own shards."""
    from cliper.stages import extract

    nhwc = _params(**{"clip.channels_last": True, "clip.extract.out_dir": "data/features_nhwc"})
    setup = extract.prepare(nhwc, project)
    assert setup.loaded.model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert setup.key != extract.prepare(_params(), project).key  # shards of the two layouts never mix
    run_stage("extract", nhwc, project)
    for name in ("text_views.npy", "image.npy"):
        ref = np.load(project / "data" / "features" / name)
        np.testing.assert_allclose(np.load(project / "data" / "features_nhwc" / name), ref, atol=1e-5)


def test_float16_output(project):
    params = _params(**{"clip.extract.out_dir": "data/features16", "clip.extract.dtype": "float16"})
    run_stage("extract", params, project)
    text = np.load(project / "data" / "features16" / "text_views.npy")
    ref = np.load(project / "data" / "features" / "text_views.npy")
    assert text.dtype == np.float16
    np.testing.assert_allclose(text.astype(np.float32), ref, atol=2e-3)


def _run_extract(params, root, on_shard):
    from cliper.stages import extract

    return extract.run(params, root, on_shard=on_shard)
