"""Parity with the MMRec reference: same data, features and initial weights -> same loss,
gradients and scores (max abs difference <= 1e-6) for BPR, LightGCN, VBPR, FREEDOM and BM3.

The committed fixtures (``tests/fixtures/parity/``, provenance in ``tests/fixtures/PROVENANCE.md``)
come from ``tests/parity/make_fixtures.py``; the live tests regenerate them from
``../shared/reference`` in a temporary folder (skipped when the reference is absent). The
reference is only ever run as a separate process.

Deliberate deviations, tested against the corrected maths (see PROVENANCE.md):
* text features: cliper fuses the views itself (spec section 3); the fixture's ``t_feat``, the
  text feature MMRec is given, is that formula evaluated independently in float64 numpy.
* BM3's target dropout replays the seeded masks the reference drew (``dropout/<n>``, in call
  order); FREEDOM runs with a fixed kept-edge set (MMRec's sampling order differs; the sampling
  itself is tested in ``tests/unit/test_freedom_sampling.py``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from cliper.config import FusionConfig
from cliper.fusion import build_fusion
from cliper.models import Features, InteractionData, Recommender, build_model

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "parity"
REFERENCE = HERE.parents[2] / "shared" / "reference"
GENERATOR = HERE / "make_fixtures.py"
TOL = 1e-6  # on max |cliper - reference| / max(1, max |reference|): absolute below 1, relative above
MODELS = ("bpr", "lightgcn", "vbpr", "freedom", "bm3")
_LINEARS = ("image_trs", "text_trs")
# MMRec parameter name -> cliper parameter name, per backbone.
NAMES: dict[str, dict[str, str]] = {
    "bpr": {
        "user_embedding.weight": "user_embedding.weight",
        "item_embedding.weight": "item_embedding.weight",
    },
    "lightgcn": {"embedding_dict.user_emb": "user_emb", "embedding_dict.item_emb": "item_emb"},
    "vbpr": {
        "u_embedding": "u_embedding",
        "i_embedding": "i_embedding",
        "item_linear.weight": "item_linear.weight",
        "item_linear.bias": "item_linear.bias",
    },
    "freedom": {
        "user_embedding.weight": "user_embedding",
        "item_id_embedding.weight": "item_id_embedding",
        "image_embedding.weight": "image_table",
        "text_embedding.weight": "text_table",
        **{f"{m}.{p}": f"{m}.{p}" for m in _LINEARS for p in ("weight", "bias")},
    },
    "bm3": {
        "user_embedding.weight": "user_embedding",
        "item_id_embedding.weight": "item_id_embedding",
        "image_embedding.weight": "image_table",
        "text_embedding.weight": "text_table",
        **{f"{m}.{p}": f"{m}.{p}" for m in (*_LINEARS, "predictor") for p in ("weight", "bias")},
    },
}


# FREEDOM's projection biases cancel in its modality BPR terms (u·(Wp+b) - u·(Wn+b)): gradient 0.
ZERO_GRAD = {"freedom": {"image_trs.bias", "text_trs.bias"}}


def load(folder: Path, name: str) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Manifest, shared data and one model's fixture."""
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "data.npz") as data, np.load(folder / f"{name}.npz") as ref:
        return manifest, dict(data), dict(ref)


def build(name: str, manifest: dict, data: dict[str, np.ndarray]) -> Recommender:
    """The cliper backbone on the fixture's train split, features and config (spec fusion)."""
    train = data["x_label"] == 0
    inter = InteractionData(
        manifest["n_users"], manifest["n_items"], data["users"][train], data["items"][train]
    )
    views = torch.from_numpy(data["text_views"])
    features = Features(torch.from_numpy(data["image"]), views, tuple(manifest["views"]))
    fusion = build_fusion(FusionConfig(temperature=manifest["temperature"]), views.shape[0], views.shape[2])
    config = next(c for n, c in manifest["configs"].items() if n.lower() == name)
    return build_model(name, inter, config, features=features, fusion=fusion)


class ReplayedDropout:
    """Stands in for ``torch.nn.functional.dropout``: the reference's recorded masks, one per call."""

    def __init__(self, ref: dict[str, np.ndarray]) -> None:
        n_masks = sum(k.startswith("dropout/") for k in ref)
        self.masks = [torch.from_numpy(ref[f"dropout/{n}"]) for n in range(n_masks)]
        self.used = 0

    def __call__(
        self, x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
    ) -> torch.Tensor:
        assert self.used < len(self.masks), "cliper draws more dropout masks than the reference"
        mask = self.masks[self.used]
        assert mask.shape == x.shape, f"dropout call on {tuple(x.shape)}, reference drew {tuple(mask.shape)}"
        self.used += 1
        return x * mask / (1.0 - p)


def err(got: np.ndarray | float, ref: np.ndarray | float) -> float:
    """``max |got - ref|``, divided by ``max |ref|`` where that exceeds 1 (float32 rounding scales)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(got - ref).max() / max(1.0, np.abs(ref).max()))


def max_diffs(name: str, folder: Path) -> dict[str, float]:
    """Scaled max differences cliper vs reference (:func:`err`): features, graph, loss, gradients, scores."""
    manifest, data, ref = load(folder, name)
    model = build(name, manifest, data)
    diffs: dict[str, float] = {}
    if hasattr(model, "text_table"):  # cliper's own fusion vs the spec formula MMRec was fed
        diffs["t_feat"] = err(model.text_table.detach().numpy(), data["t_feat"])  # float32 vs float64
    if "mm_adj" in ref:
        dense = model.mm_adj.to_dense().numpy()
        diffs["mm_adj"] = err(dense, ref["mm_adj"])
    names = NAMES[name]
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(names.values()), (
        f"{name}: parameters {sorted(trainable)} vs {sorted(names.values())}"
    )
    with torch.no_grad():
        params = dict(model.named_parameters())
        for ref_key, key in names.items():
            params[key].copy_(torch.from_numpy(ref[f"w/{ref_key}"]).reshape(params[key].shape))
    model.train()
    if "kept/users" in ref:
        model.mask_edges(torch.from_numpy(ref["kept/users"]), torch.from_numpy(ref["kept/items"]))
    batch = [torch.from_numpy(ref[f"batch/{k}"]) for k in ("users", "pos", "neg")]
    dropout = ReplayedDropout(ref)
    with mock.patch.object(torch.nn.functional, "dropout", dropout):
        loss = model.calculate_loss(*batch)
    assert dropout.used == len(dropout.masks), "cliper draws fewer dropout masks than the reference"
    loss.backward()
    diffs["loss"] = err(loss.item(), ref["loss"])
    for ref_key, key in names.items():
        grad = params[key].grad
        got = (
            np.zeros_like(ref[f"g/{ref_key}"])
            if grad is None
            else grad.numpy().reshape(ref[f"g/{ref_key}"].shape)
        )
        diffs[f"grad {key}"] = err(got, ref[f"g/{ref_key}"])
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(torch.arange(manifest["n_users"])).numpy()
    diffs["scores"] = err(scores, ref["scores"])
    return diffs


def assert_parity(name: str, folder: Path) -> None:
    diffs = max_diffs(name, folder)
    bad = {k: v for k, v in diffs.items() if not v <= TOL}
    assert not bad, f"{name} differs from MMRec by more than {TOL}: {bad} (all: {diffs})"


@pytest.mark.parametrize("name", MODELS)
def test_matches_committed_reference_fixtures(name: str) -> None:
    assert_parity(name, FIXTURES)


def test_fixtures_match_their_manifest() -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    assert set(manifest["files"]) == {"data.npz", *(f"{m}.npz" for m in MODELS)}
    for file, digest in manifest["files"].items():
        assert hashlib.sha256((FIXTURES / file).read_bytes()).hexdigest() == digest, file


def test_reference_gradients_are_informative() -> None:
    """The fixtures exercise every parameter (a zero gradient would hide a broken path)."""
    for name in MODELS:
        _, _, ref = load(FIXTURES, name)
        for key in set(NAMES[name]) - ZERO_GRAD.get(name, set()):
            assert np.abs(ref[f"g/{key}"]).max() > 1e-4, f"{name}: reference gradient of {key} is ~0"


@pytest.fixture(scope="module")
def live_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REFERENCE / "mmrec" / "src").is_dir():
        pytest.skip(f"MMRec reference not found at {REFERENCE}")
    out = tmp_path_factory.mktemp("parity")
    cmd = [sys.executable, str(GENERATOR), "--reference", str(REFERENCE), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_matches_live_reference(name: str, live_fixtures: Path) -> None:
    assert_parity(name, live_fixtures)
