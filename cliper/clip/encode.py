"""Text encoding trimmed to the batch's longest prompt (same results, less work).

open_clip's ``CLIP.encode_text`` always runs the full context (77 tokens for CLIP): it adds
the whole positional table and the 77x77 causal mask. Item prompts are mostly far shorter,
so :func:`encode_text_trimmed` slices the positional embedding and the causal mask
(``attn_mask``) to the batch length ``L``. With a causal mask, the token at position ``t``
only attends to positions ``<= t``, so the padding after the EOT token never influences the
EOT state that is pooled: outputs equal the full-context ones up to float rounding. Pooling
follows the model's ``text_pool_type``: ``argmax`` (EOT has the highest token id), ``eos``
and ``first`` are position-safe; any other pooling, a model without a causal mask, or a
``CustomTextCLIP`` falls back to the full-context ``encode_text``.
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
from open_clip.transformer import text_global_pool

_TRIM_SAFE_POOLS = ("argmax", "eos", "first")


def pad_tokens(seqs: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    """Right-pad token id lists with 0 to ``length`` (default: the longest) -> LongTensor [B, L]."""
    width = length or max(len(s) for s in seqs)
    out = torch.zeros(len(seqs), width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def can_trim(model: torch.nn.Module) -> bool:
    """True when trimming the context provably keeps the outputs (see module docstring)."""
    return (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) in _TRIM_SAFE_POOLS
    )


def encode_text_trimmed(model: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` on ``tokens`` [B, L] with L <= context, without padding to the context.

    Mirrors ``open_clip.model.CLIP.encode_text`` (open_clip 3.x) with the positional table and
    the causal mask sliced to ``L``.
    """
    length = tokens.shape[1]
    if length > model.context_length:
        raise ValueError(f"{length} tokens exceed the model context {model.context_length}")
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = (
            model.text_projection(x)
            if isinstance(model.text_projection, torch.nn.Linear)
            else x @ model.text_projection
        )
    return x


def encode_token_lists(
    model: torch.nn.Module,
    seqs: Sequence[Sequence[int]],
    context_length: int,
    device: torch.device,
    trim: bool = True,
) -> torch.Tensor:
    """Encode token id lists (each ``[SOT] ... [EOT]``, within the context) as one batch.

    Args:
        trim: pad only to the longest sequence when :func:`can_trim` allows; else the full context.
    """
    if trim and can_trim(model):
        return encode_text_trimmed(model, pad_tokens(seqs).to(device))
    return model.encode_text(pad_tokens(seqs, context_length).to(device))
