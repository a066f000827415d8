"""``clip.pretrained`` -> a local checkpoint file (+ the image preprocessing its weights expect).

Three forms:

* a **local file** (relative to the project root or absolute): used as it is, never downloaded;
* an **open_clip tag** of ``clip.model`` (``open_clip.list_pretrained_tags_by_model``), e.g.
  ``ViT-L-14`` + ``openai``: open_clip downloads it (through huggingface_hub where the tag has a
  hub entry) into its cache;
* ``hf-hub:org/repo`` (an open_clip repo: ``open_clip_config.json`` + weights) or
  ``hf-hub:org/repo/file.pt`` (one checkpoint file, e.g. Long-CLIP's
  ``hf-hub:BeichenZhang/LongCLIP-L/longclip-L.pt``): downloaded with huggingface_hub into its
  cache (``HF_HOME``; ``HF_ENDPOINT`` selects a mirror).

Tags and hub repos are fetched only when ``clip.allow_download`` is true; otherwise the error
names that param. No weights are downloaded by code of this project: open_clip's
``download_pretrained`` / ``download_pretrained_from_hf`` and ``huggingface_hub.hf_hub_download``
do it, with their own caches.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
from open_clip.pretrained import download_pretrained, download_pretrained_from_hf

from cliper.errors import CliperError

log = logging.getLogger(__name__)

HF_HUB_PREFIX = "hf-hub:"
HF_CONFIG_FILE = "open_clip_config.json"  # open_clip's hub layout (constants.HF_CONFIG_NAME)
# Preprocessing keys of an open_clip pretrained config / hub preprocess_cfg -> create_model_and_transforms.
PREPROCESS_KEYS = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
                   "resize_mode": "image_resize_mode"}


@dataclass(frozen=True)
class Checkpoint:
    """A resolved ``clip.pretrained``: the local file and the transform settings of its weights."""

    path: str
    source: str  # what clip.pretrained said (file path, tag or hf-hub:...)
    transform: dict[str, Any] = field(default_factory=dict)  # image_mean, image_std, ... overrides


def _refuse_download(pretrained: str, what: str) -> CliperError:
    return CliperError(
        f"clip.pretrained '{pretrained}' is {what}: its weights must be downloaded, and downloads are off. "
        "Set clip.allow_download: true to let open_clip / huggingface_hub fetch it into their cache, or "
        "set clip.pretrained to a local checkpoint file."
    )


def _transform(cfg: dict[str, Any]) -> dict[str, Any]:
    return {arg: cfg[key] for key, arg in PREPROCESS_KEYS.items() if cfg.get(key) is not None}


def resolve_tag(model: str, tag: str, allow_download: bool) -> Checkpoint:
    """Download (or find in open_clip's cache) the weights of an open_clip tag."""
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not allow_download:
        raise _refuse_download(tag, f"an open_clip tag of '{model}'")
    if cfg.get("quick_gelu", False) and not open_clip.get_model_config(model).get("quick_gelu", False):
        raise CliperError(
            f"clip.pretrained '{tag}' was trained with QuickGELU but clip.model '{model}' uses GELU; set "
            f"clip.model to '{model}-quickgelu' (else the activations would silently differ)"
        )
    try:
        path = download_pretrained(cfg)
    except Exception as exc:  # open_clip / huggingface_hub raise many types (HTTP, OS, value)
        raise CliperError(f"clip.pretrained '{tag}': download of '{model}' weights failed: {exc}") from exc
    return Checkpoint(str(path), tag, _transform(cfg))


def resolve_hub(model: str, pretrained: str, allow_download: bool) -> Checkpoint:
    """``hf-hub:org/repo`` (open_clip layout) or ``hf-hub:org/repo/<file>`` through huggingface_hub."""
    ident = pretrained[len(HF_HUB_PREFIX):].strip("/")
    parts = ident.split("/")
    if len(parts) < 2 or not all(parts):
        raise CliperError(f"clip.pretrained '{pretrained}': expected hf-hub:org/repo or hf-hub:org/repo/file")
    if not allow_download:
        raise _refuse_download(pretrained, "a Hugging Face Hub repository")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    try:
        transform = {} if filename else _check_hub_config(model, repo)
        path = download_pretrained_from_hf(repo, filename=filename)
    except CliperError:
        raise
    except Exception as exc:  # huggingface_hub: HTTP errors, missing files, offline mode
        raise CliperError(f"clip.pretrained '{pretrained}': download from the Hub failed: {exc}") from exc
    return Checkpoint(str(path), pretrained, transform)


def _check_hub_config(model: str, repo: str) -> dict[str, Any]:
    """The repo's ``open_clip_config.json`` must describe ``clip.model``; returns its preprocessing."""
    from huggingface_hub import hf_hub_download

    config = json.loads(Path(hf_hub_download(repo, HF_CONFIG_FILE)).read_text(encoding="utf-8"))
    theirs, ours = config.get("model_cfg", config), open_clip.get_model_config(model)
    if theirs != ours:
        raise CliperError(
            f"clip.pretrained 'hf-hub:{repo}': its {HF_CONFIG_FILE} describes another architecture than "
            f"clip.model '{model}' (text context {theirs.get('text_cfg', {}).get('context_length')}, "
            f"embed_dim {theirs.get('embed_dim')}); set clip.model to the open_clip name of that architecture"
        )
    return _transform(config.get("preprocess_cfg", {}))


def resolve_pretrained(model: str, pretrained: str | None, root: Path | None = None,
                       allow_download: bool = False) -> Checkpoint | None:
    """Resolve ``clip.pretrained`` to a local checkpoint (``None`` = random init).

    Raises:
        CliperError: a download without ``clip.allow_download``, a failed download, or a path that
            is neither a file, a tag of ``model`` nor ``hf-hub:...``.
    """
    if pretrained is None or str(pretrained).strip() == "":
        return None
    if pretrained.startswith(HF_HUB_PREFIX):
        return resolve_hub(model, pretrained, allow_download)
    path = Path(pretrained).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    if path.is_file():
        return Checkpoint(str(path), pretrained)
    if open_clip.get_pretrained_cfg(model, pretrained):
        return resolve_tag(model, pretrained, allow_download)
    raise CliperError(
        f"clip.pretrained '{pretrained}': no such checkpoint file ({path}), not an open_clip tag of "
        f"'{model}' (tags: {open_clip.list_pretrained_tags_by_model(model)}) and not hf-hub:org/repo"
    )
