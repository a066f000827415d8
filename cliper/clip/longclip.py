"""Long-CLIP checkpoints (Zhang et al., ECCV 2024; beichenzbc/Long-CLIP) in an open_clip model.

Format of ``longclip-B.pt`` / ``longclip-L.pt``: an OpenAI-CLIP state dict (``visual.*``,
``token_embedding``, ``transformer.*``, ``ln_final``, ``text_projection``, ``logit_scale``)
whose text tower has **two** position tables, ``positional_embedding`` and
``positional_embedding_res``, both ``[248, width]``. Long-CLIP's text encoder adds
``pe * mask1 + pe_res * mask2`` to the token embeddings, with ``mask1`` = 1 on positions
0-19 (the well-trained CLIP positions, kept) and ``mask2`` = 1 on positions 20-247 (the
stretched ones). Both masks are fixed, so this equals **one** table
``pe[:20] ++ pe_res[20:]``, which is what an open_clip text tower with a 248-token context
holds: :func:`to_open_clip` builds it, and the model then runs unmodified.

A 248-token table loaded into a model built with context 77 would be interpolated down to 77
positions by open_clip's ``resize_text_pos_embed`` without a word, losing the long context;
:func:`check_text_context` refuses any such mismatch. Shipped configs with the right context:
``LongCLIP-B-16`` and ``LongCLIP-L-14`` (``cliper/clip/model_configs``; QuickGELU as OpenAI's).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cliper.errors import CliperError

KEPT_POSITIONS = 20  # Long-CLIP's mask1: positions 0..19 use positional_embedding
RES_KEY = "positional_embedding_res"
PE_KEY = "positional_embedding"
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "mask1", "mask2")


def is_longclip(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is in Long-CLIP's format (it has ``positional_embedding_res``)."""
    return RES_KEY in state


def merged_positions(pe: torch.Tensor, pe_res: torch.Tensor) -> torch.Tensor:
    """``pe * mask1 + pe_res * mask2`` as one ``[context, width]`` table (mask1 = first 20 rows)."""
    if pe.shape != pe_res.shape or pe.ndim != 2:
        raise CliperError(
            f"Long-CLIP checkpoint: {PE_KEY} {tuple(pe.shape)} and {RES_KEY} {tuple(pe_res.shape)} must both "
            "be [context, width]"
        )
    mask1 = torch.zeros(pe.shape[0], 1, dtype=pe.dtype)
    mask1[:KEPT_POSITIONS] = 1
    return pe * mask1 + pe_res * (1 - mask1)


def to_open_clip(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Long-CLIP state dict -> the state dict of an open_clip ``CLIP`` with the same context (fp32)."""
    out = {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS and k != RES_KEY}
    out[PE_KEY] = merged_positions(state[PE_KEY], state[RES_KEY])
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def text_context(state: Mapping[str, torch.Tensor]) -> int | None:
    """Rows of the checkpoint's text position table (None when it has none, e.g. an HF text tower)."""
    for key in (PE_KEY, "text.positional_embedding"):
        if key in state and getattr(state[key], "ndim", 0) == 2:
            return int(state[key].shape[0])
    return None


def check_text_context(
    state: Mapping[str, torch.Tensor], model: str, context_length: int, source: str
) -> None:
    """Refuse a checkpoint whose text context differs from the model's (open_clip would interpolate it).

    Raises:
        CliperError: naming both lengths and the model config to use instead.
    """
    found = text_context(state)
    if found is None or found == context_length:
        return
    hint = " (a Long-CLIP checkpoint: LongCLIP-B-16 or LongCLIP-L-14)" if is_longclip(state) else ""
    raise CliperError(
        f"{source}: the checkpoint's text position table has {found} positions but clip.model '{model}' "
        f"has a {context_length}-token context; open_clip would silently interpolate the table to "
        f"{context_length} and lose the long context. Set clip.model to a config with context_length "
        f"{found}{hint}."
    )
