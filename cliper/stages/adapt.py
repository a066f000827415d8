"""Stage ``adapt``: contrastive adaptation of the CLIP model on the catalog's image-text pairs.

Writes ``<clip.adapt.out_dir>/`` (``open_clip_pytorch_model.bin``: a state dict open_clip loads
as a local ``pretrained`` file; ``model.json``: model name, sha256, source checkpoint,
settings) and ``<clip.adapt.report_dir>/metrics.json`` (held-out Recall@1/@10 image->text and
text->image, before and after, chance level). ``epochs: 0`` saves the starting weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cliper.clip.adapt import adapt_clip, image_dataset
from cliper.clip.load import load_clip, save_checkpoint
from cliper.config import Params, to_dict
from cliper.errors import CliperError
from cliper.features import view_rows
from cliper.io import atomic_dir, write_json
from cliper.stages import StageResult
from cliper.stages.preprocess import read_outputs
from cliper.views.images import manifest_paths

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "open_clip_pytorch_model.bin"
MODEL_JSON = "model.json"


def caption_rows(caption_views: list[str] | None, views: list[str]) -> list[int] | None:
    """Rows of ``views`` that ``clip.adapt.caption_views`` names (None: every view).

    Raises:
        CliperError: the list is empty, repeats a view or names one that preprocess does not write.
    """
    if caption_views is None:
        return None
    rows = view_rows(caption_views, views)
    if rows is None:
        unknown = [v for v in caption_views if v not in views]
        raise CliperError(
            f"params.yaml: clip.adapt.caption_views {caption_views} must name distinct views of "
            f"preprocess.views {views}" + (f"; unknown: {unknown}" if unknown else "")
            + " (null = every view)"
        )
    return rows


def run(params: Params, root: Path) -> StageResult:
    """Adapt (or copy, with ``epochs: 0``) the CLIP model and report held-out retrieval."""
    clip, cfg = params.clip, params.clip.adapt
    views = list(params.preprocess.views)
    if cfg.eval_view not in views:
        raise CliperError(
            f"params.yaml: clip.adapt.eval_view '{cfg.eval_view}' is not in preprocess.views {views}"
        )
    captions = caption_rows(cfg.caption_views, views)
    ordered, manifest = read_outputs(params, root)
    texts = ordered["text"].to_numpy().reshape(len(views), len(manifest))
    loaded = load_clip(clip.model, clip.pretrained, clip.precision, clip.device, root, seed=cfg.seed,
                       allow_download=clip.allow_download, channels_last=clip.channels_last)
    images = image_dataset(loaded, manifest_paths(manifest, root))
    result = adapt_clip(loaded, texts, images, cfg, views.index(cfg.eval_view), clip.extract.num_workers,
                         captions)
    out = root / cfg.out_dir
    with atomic_dir(out) as tmp:
        sha = save_checkpoint(loaded.model, tmp / CHECKPOINT_NAME)
        write_json(
            tmp / MODEL_JSON,
            {
                "model": clip.model,
                "checkpoint": CHECKPOINT_NAME,
                "sha256": sha,
                "source": clip.pretrained,
                "source_sha256": loaded.sha256,
                "adapt": to_dict(cfg),
            },
        )
    metrics = {
        "before": result.before,
        "after": result.after,
        "chance": result.chance,
        "n_train": result.n_train,
        "n_val": result.n_val,
        "epochs": cfg.epochs,
        "train_loss": result.losses,
        "eval_view": cfg.eval_view,
        "model": clip.model,
    }
    report = write_json(root / cfg.report_dir / "metrics.json", metrics)
    return StageResult(
        "adapt",
        {"checkpoint": str(out / CHECKPOINT_NAME), "metrics": str(report)},
        {"after": result.after, "before": result.before},
    )
