"""open_clip model + transforms + tokenizer from a model name and a local checkpoint (thin wrapper).

``clip.model`` is any open_clip architecture name (``ViT-B-32``, ...) or the name of a JSON
config shipped in ``cliper/clip/model_configs/`` (registered with ``open_clip.add_model_config``;
``cliper-tiny-resnet`` (the demo's: a small ModifiedResNet image tower) and ``cliper-tiny`` (a small
ViT) are sized for 2 CPU cores; ``LongCLIP-B-16`` / ``LongCLIP-L-14`` have
the 248-token text context of Long-CLIP). ``clip.pretrained`` is ``None`` (random init, seeded),
a local checkpoint file, an open_clip tag or ``hf-hub:org/repo[/file]`` (downloaded only with
``clip.allow_download``; :mod:`cliper.clip.pretrained`). A checkpoint in Long-CLIP's format is
converted on load (:mod:`cliper.clip.longclip`); a checkpoint whose text context differs from the
model's is refused instead of being silently interpolated.
The image transform is open_clip's own ``preprocess_val`` (bicubic resize, centre crop, CLIP
mean/std) so it always matches the model.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

from cliper.clip.longclip import check_text_context, is_longclip, to_open_clip
from cliper.clip.pretrained import Checkpoint, resolve_pretrained
from cliper.errors import CliperError
from cliper.io import sha256_file, write_torch

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
# What torch / open_clip raise for a truncated, corrupt or mismatched checkpoint file.
_CORRUPT_FILE_ERRORS: tuple[type[BaseException], ...] = (
    EOFError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, UnicodeDecodeError
)
_CHECKPOINT_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, *_CORRUPT_FILE_ERRORS)
_CORRUPT_MARKS: tuple[str, ...] = ("PytorchStreamReader", "central directory", "unexpected EOF")
_WRONG_MODEL_MARKS: tuple[str, ...] = ("size mismatch", "Missing key", "Unexpected key", "reshape")
_REASON_CHARS = 160
# clip.precision -> open_clip's weight precision (amp keeps fp32 weights; autocast at run time).
_WEIGHT_PRECISION = {"fp32": "fp32", "amp": "fp32", "fp16": "fp16", "bf16": "bf16"}


@dataclass
class LoadedClip:
    """A ready model with its matching image transform and tokenizer."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Any
    name: str
    checkpoint: str | None
    sha256: str | None
    device: torch.device
    precision: str

    @property
    def context_length(self) -> int:
        """Text context length of the model (tokens incl. SOT/EOT)."""
        return int(getattr(self.model, "context_length", None) or self.tokenizer.context_length)

    @property
    def embed_dim(self) -> int:
        """Output dimension of both towers."""
        return int(self.model.visual.output_dim)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision (fp16 autocast) on CUDA when ``precision`` is ``amp``; else a no-op."""
        if self.device.type == "cuda" and self.precision == "amp":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def register_model_configs() -> None:
    """Make the JSON configs in ``cliper/clip/model_configs`` known to open_clip (idempotent)."""
    names = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if not names <= set(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU raises CliperError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CliperError(
            "clip.device is 'cuda' but no CUDA device is available; set clip.device: auto or cpu"
        )
    return torch.device(device)


def model_context(model: str) -> int:
    """Text context length of an open_clip model config (77 when the config does not say)."""
    return int((open_clip.get_model_config(model) or {}).get("text_cfg", {}).get("context_length", 77))


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict, memory-mapped where torch can (a large file is not read twice)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):  # a damaged file: checkpoint_error explains it
            raise
        obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_model(model: str, ckpt: Checkpoint | None, precision: str, dev: torch.device) -> tuple[Any, Any]:
    """(model, eval transform) with the checkpoint's weights (Long-CLIP converted, context checked)."""
    kwargs = {"precision": _WEIGHT_PRECISION[precision], "device": dev, **(ckpt.transform if ckpt else {})}
    if ckpt is None:
        net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=None, **kwargs)
        return net, preprocess
    state = read_state_dict(ckpt.path)
    check_text_context(state, model, model_context(model), ckpt.path)
    if not is_longclip(state):
        del state
        net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=ckpt.path, **kwargs)
        return net, preprocess
    net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=None, **kwargs)
    net.load_state_dict(to_open_clip(state), strict=True)
    log.info("loaded Long-CLIP checkpoint %s (%d-token context)", ckpt.path, model_context(model))
    return net, preprocess


def checkpoint_error(checkpoint: str, model: str, exc: BaseException) -> str:
    """The message for a checkpoint file that open_clip cannot load into ``model``."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:_REASON_CHARS]
    text = f"{type(exc).__name__}: {exc}"
    if any(mark in text for mark in _WRONG_MODEL_MARKS):
        kind = f"holds weights of another architecture than clip.model '{model}'"
    elif isinstance(exc, _CORRUPT_FILE_ERRORS) or any(mark in text for mark in _CORRUPT_MARKS):
        kind = "is not a complete checkpoint (truncated or corrupt file)"
    else:
        kind = f"cannot be loaded into clip.model '{model}'"
    return (
        f"{checkpoint}: checkpoint {kind} ({reason}); expected a whole state_dict saved for "
        f"'{model}' (re-copy the file, or set clip.model / clip.pretrained to match)"
    )


def load_clip(
    model: str,
    pretrained: str | None = None,
    precision: str = "fp32",
    device: str = "cpu",
    root: Path | None = None,
    seed: int = 0,
    allow_download: bool = False,
    channels_last: bool = False,
) -> LoadedClip:
    """Build ``model`` with open_clip, load the local checkpoint, return model + transform + tokenizer.

    Args:
        model: open_clip model name or a config in ``cliper/clip/model_configs``.
        pretrained: ``None``, a local checkpoint file (relative to ``root``), an open_clip tag or
            ``hf-hub:org/repo[/file]``.
        precision: ``fp32`` | ``amp`` | ``fp16`` | ``bf16``.
        device: ``auto`` | ``cpu`` | ``cuda``.
        root: project root for relative checkpoint paths.
        seed: torch seed for a random-init model (same seed, same weights).
        allow_download: let open_clip / huggingface_hub download a tag or hub checkpoint.
        channels_last: keep the convolution weights in NHWC layout (faster on oneDNN and cuDNN;
            the outputs differ from the default layout's by rounding only).

    Raises:
        CliperError: unknown model, unusable ``pretrained``, or fp16 on CPU.
    """
    register_model_configs()
    if model not in open_clip.list_models():
        raise CliperError(
            f"clip.model: unknown model '{model}'; choose an open_clip model "
            f"(e.g. ViT-B-32) or a config in {MODEL_CONFIG_DIR}"
        )
    dev = resolve_device(device)
    if precision == "fp16" and dev.type != "cuda":
        raise CliperError("clip.precision fp16 needs CUDA; use fp32, amp or bf16 on CPU")
    ckpt = resolve_pretrained(model, pretrained, root, allow_download)
    checkpoint = ckpt.path if ckpt else None
    torch.manual_seed(seed)
    try:
        net, preprocess = build_model(model, ckpt, precision, dev)
    except _CHECKPOINT_ERRORS as exc:
        if checkpoint is None:
            raise
        raise CliperError(checkpoint_error(checkpoint, model, exc)) from exc
    if channels_last:
        net.to(memory_format=torch.channels_last)  # only 4-d tensors change; activations follow
    net.eval()
    tokenizer = open_clip.get_tokenizer(model)
    sha = sha256_file(checkpoint) if checkpoint else None
    log.info("CLIP %s (%s) on %s, precision %s", model, checkpoint or "random init", dev, precision)
    return LoadedClip(net, preprocess, tokenizer, model, checkpoint, sha, dev, precision)


def save_checkpoint(model: torch.nn.Module, path: str | Path) -> str:
    """Save ``model.state_dict()`` (fp32, CPU, default layout) atomically; loadable as ``pretrained``.

    Returns:
        The file's sha256.
    """
    state = {
        k: _row_major(v.detach().float() if v.is_floating_point() else v.detach()).cpu()
        for k, v in model.state_dict().items()
    }
    return sha256_file(write_torch(path, state))


def _row_major(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with row-major strides: an NHWC (``channels_last``) weight is copied, so the bytes
    of a checkpoint do not depend on the layout it was trained in (``is_contiguous`` is not enough:
    a weight with a size-1 axis can be both)."""
    if tensor.stride() == torch.empty(tensor.shape, device="meta").stride():
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, restoring its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
