"""Allowed ranges of the numeric params, checked once when ``params.yaml`` is loaded.

One table, :data:`BOUNDS`, maps each dotted key to a :class:`Bound`; a dataclass field may
instead declare its range next to its default with ``field(default=..., metadata={"ge": 1})``
(keys ``ge``, ``gt``, ``le``, ``lt``), which wins over the table. :func:`check_bounds` walks the
loaded :class:`cliper.config.Params` and raises :class:`cliper.config.ConfigError` naming the
file, the key, the value and the allowed range; list values (``evaluate.topk``) are checked per
element. ``tests/unit/test_config_bounds.py`` asserts that every numeric field has a bound.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

BOUND_KEYS: tuple[str, ...] = ("ge", "gt", "le", "lt")


@dataclass(frozen=True)
class Bound:
    """A closed/open interval: ``ge`` <= x, ``gt`` < x, x <= ``le``, x < ``lt`` (None = no limit)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        limits = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        return " and ".join(f"{op} {v:g}" for op, v in limits if v is not None) or "any finite number"


# Pillow's Image.open refuses images over twice Image.MAX_IMAGE_PIXELS (89,478,485) whatever we allow.
MAX_DECODABLE_PIXELS = 178_956_970
POSITIVE_INT = Bound(ge=1)
NON_NEGATIVE = Bound(ge=0)
POSITIVE = Bound(gt=0)
SHARE = Bound(ge=0, le=1)

BOUNDS: dict[str, Bound] = {
    "demo.seed": NON_NEGATIVE,
    "demo.scale": POSITIVE,
    "demo.n_items": POSITIVE_INT,
    "demo.n_users": POSITIVE_INT,
    "demo.image_size": POSITIVE_INT,
    "ingest.k_core": NON_NEGATIVE,
    "ingest.split_seed": NON_NEGATIVE,
    "validate.k_core": NON_NEGATIVE,
    "validate.min_image_size": POSITIVE_INT,
    "validate.max_image_pixels": Bound(ge=1, le=MAX_DECODABLE_PIXELS),
    "validate.max_missing_image_share": SHARE,
    "validate.max_missing_text_share": SHARE,
    "preprocess.min_field_length": NON_NEGATIVE,
    "clip.adapt.epochs": NON_NEGATIVE,
    "clip.adapt.batch_size": Bound(ge=2),  # InfoNCE needs at least one negative per row
    "clip.adapt.lr": POSITIVE,
    "clip.adapt.weight_decay": NON_NEGATIVE,
    "clip.adapt.text_weight": NON_NEGATIVE,
    "clip.adapt.hard_negatives": Bound(ge=0, le=0.5),  # at most one mined neighbour per anchor
    "clip.adapt.hard_negatives_k": Bound(ge=1),
    "clip.adapt.preload_images_mb": NON_NEGATIVE,
    "clip.adapt.val_fraction": Bound(ge=0, lt=1),
    "clip.adapt.seed": NON_NEGATIVE,
    "clip.extract.batch_size": POSITIVE_INT,
    "clip.extract.num_workers": NON_NEGATIVE,
    "train.fusion.temperature": POSITIVE,
    "train.fusion.n_heads": POSITIVE_INT,
    "train.epochs": POSITIVE_INT,
    "train.patience": POSITIVE_INT,
    "train.eval_every": POSITIVE_INT,
    "train.batch_size": POSITIVE_INT,
    "train.batches_per_epoch": POSITIVE_INT,
    "train.learning_rate": POSITIVE,
    "train.seed": NON_NEGATIVE,
    "evaluate.topk": POSITIVE_INT,
    "evaluate.batch_users": POSITIVE_INT,
    "evaluate.cold_start_max_train": NON_NEGATIVE,
    "tracking.serve_k": POSITIVE_INT,
    "tracking.max_k": POSITIVE_INT,
    "promote.min_gain": NON_NEGATIVE,
    "orchestration.interval_seconds": POSITIVE_INT,
    "orchestration.retries": NON_NEGATIVE,
    "orchestration.retry_delay_seconds": NON_NEGATIVE,
    "orchestration.timeout_seconds": POSITIVE_INT,
}


def numeric_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    """``(dotted key, field)`` of every int/float field (plain, optional or list) under ``cls``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, key)
        elif _is_numeric(tp):
            yield key, f


def bound_of(key: str, f: dataclasses.Field) -> Bound | None:
    """The field's own ``metadata`` bound, else the table's, else None."""
    own = {k: f.metadata[k] for k in BOUND_KEYS if k in f.metadata}
    return Bound(**own) if own else BOUNDS.get(key)


def check_bounds(params: Any, source: str) -> None:
    """Raise ConfigError for the first numeric param outside its allowed range.

    Raises:
        ConfigError: names ``source``, the dotted key, the value and the range.
    """
    from cliper.config import ConfigError

    for key, f in numeric_fields(type(params)):
        bound = bound_of(key, f)
        value = _get(params, key)
        if bound is None or value is None:
            continue
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if not bound.contains(item):
                where = f"{key}[{i}]" if isinstance(value, list) else key
                raise ConfigError(f"{source}: '{where}' is {item!r}; allowed range: {bound.describe()}")


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _is_numeric(tp: Any) -> bool:
    if tp in (int, float):
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType, list):
        return any(_is_numeric(a) for a in args if a is not type(None))
    return False
