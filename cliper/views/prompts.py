"""Item text views (spec section 1) and token-level chunking of long prompts.

Each item is described by several *views*, one prompt per view:

============  ==============================================  ====================================
view          prompt when the field is present                when missing
============  ==============================================  ====================================
title         ``The product title is {title}.``               ``The product title is Missing.``
brand         ``The product brand is {brand}.``               ``The product brand is Missing.``
categories    ``The product categories are {c1 c2 ...}.``     ``The product categories are Missing.``
description   ``The product description is {description}``    ``The product description is Missing.``
global        ``The product titled {title}, by the brand {brand}, in the categories {c1 c2 ...},
              described as {description}.`` (present fields only; none: ``The product is Missing.``)
============  ==============================================  ====================================

All fields are HTML-unescaped; whitespace (newlines included) collapses to single spaces;
categories use the first path of the list of lists, space-joined. A field is missing when
absent, null, or shorter than ``min_field_length`` characters after stripping. The templates
are params (``preprocess.templates`` / ``preprocess.global_clauses``); the original's global
prompt was broken by operator precedence and held only the categories.

Long prompts are chunked on *tokens*: the prompt's body (after the view prefix, i.e. the
template text before ``{value}``) is split into pieces that fit the context with the prefix,
and every chunk is re-prefixed, as the original did with 230-character pieces.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cliper.config import PreprocessConfig
from cliper.errors import CliperError, DataError

FIELDS: tuple[str, ...] = ("title", "brand", "categories", "description")
GLOBAL_VIEW = "global"
GLOBAL_PREFIX = "The product "
PLACEHOLDER = "{value}"
_SPACE = re.compile(r"\s+")


def _is_null(value: Any) -> bool:
    """None, NaN or pd.NA (a scalar; lists are values)."""
    return value is None or (not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value)))


def clean_field(value: Any, min_length: int) -> str | None:
    """HTML-unescape and collapse whitespace; ``None`` when the field counts as missing."""
    if _is_null(value):
        return None
    text = _SPACE.sub(" ", html.unescape(str(value))).strip()
    return text if len(text) >= min_length else None


def first_category_path(raw: Any, item: Any = None) -> str | None:
    """Space-joined first path of the ``categories`` JSON (list of lists); ``None`` if empty.

    Raises:
        DataError: the value is not JSON of a list (names the item).
    """
    if _is_null(raw):
        return None
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise DataError(
            f"items.parquet: item {item}: 'categories' is not JSON ({exc}); "
            "expected a JSON list of lists of strings"
        ) from exc
    if not isinstance(parsed, list):
        raise DataError(f"items.parquet: item {item}: 'categories' must be a JSON list of lists, got {raw!r}")
    if not parsed:
        return None
    path = parsed[0] if isinstance(parsed[0], list) else parsed
    return " ".join(str(c) for c in path)


def check_templates(cfg: PreprocessConfig) -> None:
    """Raise CliperError on an unknown view or a template without ``{value}``."""
    known = set(FIELDS) | {GLOBAL_VIEW}
    for view in cfg.views:
        if view not in known:
            raise CliperError(
                f"params.yaml: preprocess.views: unknown view '{view}'; choose from {sorted(known)}"
            )
    if len(set(cfg.views)) != len(cfg.views):
        raise CliperError(f"params.yaml: preprocess.views lists a view twice: {cfg.views}")
    for name, table in (("templates", cfg.templates), ("global_clauses", cfg.global_clauses)):
        for fld in FIELDS:
            tpl = table.get(fld)
            if tpl is None or tpl.count(PLACEHOLDER) != 1:
                raise CliperError(
                    f"params.yaml: preprocess.{name}.{fld} must contain '{PLACEHOLDER}' "
                    f"exactly once, got {tpl!r}"
                )


def view_prefix(view: str, cfg: PreprocessConfig) -> str:
    """The text every chunk of ``view`` starts with (template text before ``{value}``)."""
    if view == GLOBAL_VIEW:
        return GLOBAL_PREFIX
    return cfg.templates[view].split(PLACEHOLDER)[0]


def _fill(template: str, value: str) -> str:
    return template.replace(PLACEHOLDER, value)


def field_prompt(view: str, value: str | None, cfg: PreprocessConfig) -> str:
    """Prompt of a single-field view (missing -> template with ``missing_value`` and a full stop)."""
    if value is None:
        text = _fill(cfg.templates[view], cfg.missing_value)
        return text if text.endswith(".") else text + "."
    return _fill(cfg.templates[view], value)


def global_prompt(values: dict[str, str | None], cfg: PreprocessConfig) -> str:
    """One sentence with every present field, e.g. ``The product titled X, by the brand Y.``"""
    clauses = [_fill(cfg.global_clauses[f], values[f].rstrip(" .")) for f in FIELDS if values.get(f)]
    if not clauses:
        return f"{GLOBAL_PREFIX}is {cfg.missing_value}."
    return GLOBAL_PREFIX + ", ".join(clauses) + "."


def clean_items(items: pd.DataFrame, cfg: PreprocessConfig) -> dict[str, list]:
    """Cleaned field values per item (``None`` = missing): ``{"item_id": [...], field: [...]}``."""
    if "item_id" not in items.columns:
        raise DataError("items.parquet: column 'item_id' is missing")
    ids = items["item_id"].tolist()
    none = [None] * len(items)
    out: dict[str, list] = {"item_id": ids}
    for fld in ("title", "brand", "description"):
        values = items[fld].astype(object).tolist() if fld in items.columns else none
        out[fld] = [clean_field(v, cfg.min_field_length) for v in values]
    cats = items["categories"].astype(object).tolist() if "categories" in items.columns else none
    out["categories"] = [
        clean_field(first_category_path(raw, item), cfg.min_field_length)
        for raw, item in zip(cats, ids, strict=True)
    ]
    return out


def build_views(items: pd.DataFrame, cfg: PreprocessConfig) -> pd.DataFrame:
    """Long table of prompts: one row per (view, item), views in ``cfg.views`` order.

    Returns:
        DataFrame with columns item_id, view, text.
    """
    check_templates(cfg)
    clean = clean_items(items, cfg)
    frames = []
    for view in cfg.views:
        if view == GLOBAL_VIEW:
            texts = [
                global_prompt(dict(zip(FIELDS, vals, strict=True)), cfg)
                for vals in zip(*(clean[f] for f in FIELDS), strict=True)
            ]
        else:
            texts = [field_prompt(view, v, cfg) for v in clean[view]]
        frames.append(
            pd.DataFrame(
                {"item_id": np.asarray(clean["item_id"], dtype=np.int64), "view": view, "text": texts}
            )
        )
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- token chunking


@dataclass(frozen=True)
class BpeTokenizer:
    """The parts of open_clip's ``SimpleTokenizer`` that chunking needs."""

    encode: Any
    sot: int
    eot: int
    context_length: int

    @classmethod
    def from_open_clip(cls, tokenizer: Any, context_length: int) -> BpeTokenizer:
        """Wrap an open_clip tokenizer; only CLIP's BPE ``SimpleTokenizer`` is supported."""
        if not all(hasattr(tokenizer, a) for a in ("encode", "sot_token_id", "eot_token_id")):
            raise CliperError(
                f"token chunking needs open_clip's CLIP BPE tokenizer (SimpleTokenizer); "
                f"this model uses {type(tokenizer).__name__}: choose a CLIP-tokenizer model"
            )
        return cls(tokenizer.encode, tokenizer.sot_token_id, tokenizer.eot_token_id, context_length)


def chunk_tokens(text: str, prefix: str, tok: BpeTokenizer) -> list[list[int]]:
    """Token ids of ``text`` as one or more chunks, each ``[SOT] prefix body [EOT]`` within the context.

    Args:
        text: the full prompt (starting with ``prefix``, or not: then no re-prefixing).
        prefix: the view prefix repeated at the start of every chunk.
        tok: the tokenizer.

    Raises:
        CliperError: the prefix alone leaves no room in the context.
    """
    ids = tok.encode(text)
    if len(ids) + 2 <= tok.context_length:
        return [[tok.sot, *ids, tok.eot]]
    prefix_ids = tok.encode(prefix) if prefix and text.startswith(prefix) else []
    if ids[: len(prefix_ids)] != prefix_ids:  # BPE merged across the boundary: no re-prefixing
        prefix_ids = []
    body = ids[len(prefix_ids) :]
    room = tok.context_length - 2 - len(prefix_ids)
    if room < 1:
        raise CliperError(
            f"view prefix {prefix!r} needs {len(prefix_ids)} tokens; context is {tok.context_length}"
        )
    return [[tok.sot, *prefix_ids, *body[i : i + room], tok.eot] for i in range(0, len(body), room)]


def count_tokens(
    texts: Sequence[str], prefixes: Sequence[str], tok: BpeTokenizer
) -> tuple[list[int], list[int]]:
    """(n_tokens incl. SOT/EOT of the whole prompt, n_chunks) per text."""
    n_tokens, n_chunks = [], []
    for text, prefix in zip(texts, prefixes, strict=True):
        n_tokens.append(len(tok.encode(text)) + 2)
        n_chunks.append(1 if n_tokens[-1] <= tok.context_length else len(chunk_tokens(text, prefix, tok)))
    return n_tokens, n_chunks
