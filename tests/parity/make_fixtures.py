"""Generate the MMRec parity fixtures (loss, gradients, scores of the reference models).

Runs the MMRec reference (``../shared/reference/mmrec``, GPL-3.0, never imported by ``cliper``)
in this process only: it is a generator script, started with the project's venv python, and
the committed output in ``tests/fixtures/parity/`` lets the parity tests run without
``../shared``. The live test (``tests/parity/test_mmrec_parity.py``) runs it again into a
temporary folder when the reference is present.

    .venv/bin/python tests/parity/make_fixtures.py                 # rewrite tests/fixtures/parity
    .venv/bin/python tests/parity/make_fixtures.py --out /tmp/p    # elsewhere

What it writes (all float32 unless noted):

* ``data.npz``: tiny fixed interactions (``users``, ``items``, ``x_label``; int64/int8) and the
  features: ``image`` ``[I, D]``, ``text_views`` ``[V, I, D]`` and ``t_feat`` ``[I, D]``, the
  CLIPER fusion of spec section 3 computed here in float64 numpy (weights ``softmax_k(cos(T_k,
  V) / tau)``, weighted sum of the raw views) and fed to MMRec as its text feature.
* ``<model>.npz`` per backbone: the reference's initial weights ``w/<mmrec name>``, the batch
  (``batch/users``, ``batch/pos``, ``batch/neg``), the train-mode ``loss``, the gradients
  ``g/<mmrec name>`` of that loss, eval-mode ``scores`` ``[U, I]`` of every user; FREEDOM adds
  its kept edges (``kept/users``, ``kept/items``) and the dense frozen item graph ``mm_adj``;
  BM3 the seeded dropout masks of its target views in call order (``dropout/<n>``).
* ``manifest.json``: configs, shapes, the reference commit, library versions, sha256 per file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference"
DEFAULT_OUT = REPO / "tests" / "fixtures" / "parity"
REFERENCE_COMMIT = "e775373"  # enoche/MMRec, as vendored (../shared/reference/README.md)

N_USERS, N_ITEMS, DIM = 12, 15, 8
VIEWS = ("title", "brand", "global")
PER_USER = (5, 1, 1)  # train, valid, test interactions per user
TEMPERATURE = 0.2  # spec section 3 default
DATA_SEED, INIT_SEED, BATCH = 7, 2024, 24
FREEDOM_KEEP_SEED = 11
DROPOUT_SEED = 13
EMB = 8

# One dict per backbone; the keys are the same in MMRec and cliper (cliper/models/configs/*.yaml).
CONFIGS: dict[str, dict[str, Any]] = {
    "BPR": {"embedding_size": EMB, "reg_weight": 1e-2},
    "LightGCN": {"embedding_size": EMB, "n_layers": 2, "reg_weight": 1e-2},
    "VBPR": {"embedding_size": EMB, "reg_weight": 1e-2},
    "FREEDOM": {
        "embedding_size": EMB,
        "feat_embed_dim": EMB,
        "n_mm_layers": 1,
        "n_ui_layers": 2,
        "knn_k": 3,
        "mm_image_weight": 0.3,
        "dropout": 0.5,
        "reg_weight": 1e-1,
    },
    # BM3's target dropout draws seeded masks, recorded as ``dropout/<n>`` and replayed by the test.
    "BM3": {"embedding_size": EMB, "n_layers": 2, "dropout": 0.5, "reg_weight": 1e-1, "cl_weight": 2.0},
}


def make_data() -> dict[str, np.ndarray]:
    """Deterministic tiny interactions and features (every item has a train interaction)."""
    rng = np.random.default_rng(DATA_SEED)
    n_per = sum(PER_USER)
    while True:
        items = np.stack([rng.choice(N_ITEMS, n_per, replace=False) for _ in range(N_USERS)])
        if len(np.unique(items[:, : PER_USER[0]])) == N_ITEMS:
            break
    labels = np.repeat(np.arange(3, dtype=np.int8), PER_USER)
    image = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    views = np.stack([image * s + rng.normal(size=image.shape) for s in (1.0, 0.3, 0.0)]).astype(np.float32)
    views *= np.asarray([1.0, 2.5, 0.6], dtype=np.float32)[:, None, None]  # unequal norms matter
    return {
        "users": np.repeat(np.arange(N_USERS), n_per).astype(np.int64),
        "items": items.reshape(-1).astype(np.int64),
        "x_label": np.tile(labels, N_USERS),
        "image": image,
        "text_views": views,
        "t_feat": spec_fusion(views, image),
    }


def spec_fusion(views: np.ndarray, image: np.ndarray, tau: float = TEMPERATURE) -> np.ndarray:
    """Spec section 3 in float64: cosine weights, softmax over views, weighted sum of raw views."""
    v, im = views.astype(np.float64), image.astype(np.float64)
    cos = (v * im).sum(-1) / (np.linalg.norm(v, axis=-1) * np.linalg.norm(im, axis=-1))  # [V, I]
    logits = cos.T / tau
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)  # [I, V]
    return np.einsum("iv,vid->id", weights, v).astype(np.float32)


def make_batch(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``BATCH`` train pairs (with repeats) and one negative each, never a train item of the user."""
    rng = np.random.default_rng(DATA_SEED + 1)
    train = data["x_label"] == 0
    users, items = data["users"][train], data["items"][train]
    pick = rng.choice(len(users), BATCH, replace=BATCH > len(users))
    seen = np.zeros((N_USERS, N_ITEMS), bool)
    seen[users, items] = True
    neg = rng.integers(0, N_ITEMS, BATCH)
    while seen[users[pick], neg].any():
        bad = seen[users[pick], neg]
        neg[bad] = rng.integers(0, N_ITEMS, int(bad.sum()))
    return {"batch/users": users[pick], "batch/pos": items[pick], "batch/neg": neg.astype(np.int64)}


@contextlib.contextmanager
def mmrec_workdir(reference: Path, data: dict[str, np.ndarray]):
    """A temporary MMRec working dir (configs + dataset ``ref``) with ``src`` importable."""
    src = reference / "mmrec" / "src"
    work = Path(tempfile.mkdtemp(prefix="mmrec-parity-"))
    cwd = os.getcwd()
    try:
        shutil.copytree(src / "configs", work / "configs")
        ds = work / "data" / "ref"
        ds.mkdir(parents=True)
        lines = ["userID\titemID\tx_label"] + [
            f"{u}\t{i}\t{x}" for u, i, x in zip(data["users"], data["items"], data["x_label"], strict=True)
        ]
        (ds / "ref.inter").write_text("\n".join(lines) + "\n")
        np.save(ds / "image_feat.npy", data["image"])
        np.save(ds / "text_feat.npy", data["t_feat"])
        (work / "configs" / "dataset" / "ref.yaml").write_text(
            yaml.safe_dump(
                {
                    "USER_ID_FIELD": "userID",
                    "ITEM_ID_FIELD": "itemID",
                    "inter_file_name": "ref.inter",
                    "vision_feature_file": "image_feat.npy",
                    "text_feature_file": "text_feat.npy",
                    "field_separator": "\t",
                    "filter_out_cod_start_users": True,
                }
            )
        )
        os.chdir(work)
        sys.path.insert(0, str(src))
        yield work
    finally:
        os.chdir(cwd)
        if str(src) in sys.path:
            sys.path.remove(str(src))
        shutil.rmtree(work, ignore_errors=True)


def build_reference(name: str, work: Path) -> tuple[torch.nn.Module, Any]:
    """The MMRec model ``name`` on the dataset of ``work`` (seeded as MMRec's ``init_seed``)."""
    from utils.configurator import Config
    from utils.dataloader import TrainDataLoader
    from utils.dataset import RecDataset
    from utils.utils import get_model, init_seed

    cfg = {"data_path": str(work / "data") + "/", "use_gpu": False, "seed": INIT_SEED, **CONFIGS[name]}
    config = Config(name, "ref", cfg)
    dataset = RecDataset(config)
    train_ds = dataset.split()[0]
    str(train_ds)  # MMRec sets inter_num while printing its statistics (as its quick_start does)
    loader = TrainDataLoader(config, train_ds, batch_size=BATCH, shuffle=False)
    init_seed(INIT_SEED)
    return get_model(name)(config, loader), config


def fix_freedom_edges(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Run FREEDOM's ``pre_epoch_processing`` with a fixed kept-edge set instead of its draw."""
    n_edges = model.edge_values.numel()
    n_keep = int(n_edges * (1.0 - model.dropout))
    idx = torch.from_numpy(np.random.default_rng(FREEDOM_KEEP_SEED).choice(n_edges, n_keep, replace=False))
    real = torch.multinomial
    torch.multinomial = lambda weights, n, *a, **k: idx  # noqa: ARG005 - the reference's only draw
    try:
        model.pre_epoch_processing()
    finally:
        torch.multinomial = real
    kept = model.edge_indices[:, idx]
    return {
        "kept/users": kept[0].numpy(),
        "kept/items": kept[1].numpy(),
        "mm_adj": model.mm_adj.to_dense().numpy(),
    }


@contextlib.contextmanager
def recorded_dropout(out: dict[str, np.ndarray]):
    """Functional dropout with seeded masks, each recorded in ``out`` as ``dropout/<call number>``."""
    gen = torch.Generator().manual_seed(DROPOUT_SEED)
    real = torch.nn.functional.dropout

    def seeded(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        if not training or p == 0.0:
            return x
        mask = (torch.rand(x.shape, generator=gen) >= p).to(x.dtype)
        out[f"dropout/{sum(k.startswith('dropout/') for k in out)}"] = mask.numpy()
        return x * mask / (1.0 - p)

    torch.nn.functional.dropout = seeded
    try:
        yield
    finally:
        torch.nn.functional.dropout = real


def run_model(name: str, work: Path, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Initial weights, loss, gradients and scores of one reference model."""
    model, _ = build_reference(name, work)
    out: dict[str, np.ndarray] = {f"w/{k}": v.detach().clone().numpy() for k, v in model.named_parameters()}
    model.train()
    if name == "FREEDOM":
        out.update(fix_freedom_edges(model))
    interaction = torch.stack([torch.from_numpy(batch[f"batch/{k}"]) for k in ("users", "pos", "neg")])
    with recorded_dropout(out):
        loss = model.calculate_loss(interaction).sum()
    loss.backward()
    for key, param in model.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        out[f"g/{key}"] = grad.detach().numpy()
    model.eval()
    with torch.no_grad():
        out["scores"] = model.full_sort_predict(torch.arange(N_USERS).unsqueeze(0)).numpy()
    out["loss"] = np.asarray(loss.item(), dtype=np.float64)
    return {**out, **batch}


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(reference: Path, out: Path) -> dict[str, Any]:
    """Write every fixture into ``out``; returns the manifest."""
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)  # the reference's deprecated torch calls
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    data = make_data()
    batch = make_batch(data)
    np.savez(out / "data.npz", **data)
    with mmrec_workdir(reference.resolve(), data) as work:
        for name in CONFIGS:
            np.savez(out / f"{name.lower()}.npz", **run_model(name, work, batch))
    manifest = {
        "generator": "tests/parity/make_fixtures.py",
        "reference": f"enoche/MMRec {REFERENCE_COMMIT} (../shared/reference/mmrec, patched per its README)",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "n_users": N_USERS,
        "n_items": N_ITEMS,
        "dim": DIM,
        "views": list(VIEWS),
        "temperature": TEMPERATURE,
        "configs": CONFIGS,
        "files": {p.name: sha256(p) for p in sorted(out.glob("*.npz"))},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="../shared/reference")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if not (args.reference / "mmrec" / "src").is_dir():
        raise SystemExit(f"no MMRec reference at {args.reference}; nothing generated")
    manifest = generate(args.reference, args.out)
    print(json.dumps(manifest["files"], indent=2))


if __name__ == "__main__":
    main()
