"""Typed configuration: ``params.yaml`` -> frozen dataclasses, loaded once.

Every section of ``params.yaml`` maps to one frozen dataclass below. The loader is strict:
an unknown key, a missing required key or a value of the wrong type raises
:class:`ConfigError` naming the file, the dotted key and what was expected, before any
work starts. Defaults below are the documented defaults; ``params.yaml`` states them again
so that DVC tracks every value a stage depends on.

Each stage owns its section: edit only the dataclass of the stage you are working on.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cliper.config_bounds import check_bounds
from cliper.config_clip import AdaptConfig, ClipConfig, ExtractConfig  # noqa: F401 - re-exported
from cliper.config_fetch import FetchConfig
from cliper.config_scale import DistributedConfig

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """A params file that does not match the typed configuration."""


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DemoConfig:
    """The embedded synthetic catalog written by ``cliper demo-data`` (stage ``demo_data``).

    Amazon-2014 file formats (``meta_<name>.json.gz``, ``reviews_<name>_5.json.gz``,
    ``ratings_<name>.csv``, ``images/<asin>.jpg``) plus ``truth.json`` (latent attributes and
    tastes); see :mod:`cliper.demo.catalog`. ``scale`` multiplies ``n_items`` and ``n_users``
    (rounded; at least 20 items and 10 users). Same values -> byte-identical files.
    """

    out_dir: str = "data/raw/demo"
    name: str = "Demo"
    seed: int = 2024
    scale: float = 1.0
    n_items: int = 2000
    n_users: int = 1200
    image_size: int = 64


@dataclass(frozen=True)
class IngestConfig:
    """Raw catalog -> interactions, items, id maps and statistics (stage ``ingest``)."""

    source: Literal["amazon2014", "mmrec"] = "amazon2014"
    raw_dir: str = "data/raw/demo"
    name: str = "Demo"
    interactions: Literal["ratings", "reviews"] = "ratings"
    inter_file: str | None = None
    item_map: str | None = None
    user_map: str | None = None
    meta_file: str | None = None
    image_dir: str | None = None
    k_core: int = 5
    split_seed: int = 20240501
    keep_existing_split: bool = True
    out_dir: str = "data/ingested"


@dataclass(frozen=True)
class ValidateConfig:
    """Great Expectations checks over the ingested data (stage ``validate``)."""

    k_core: int = 5
    # Image rule shared with preprocess (cliper/views/images.py): shorter side >= min_image_size and
    # width x height <= max_image_pixels (checked from the header, before decoding: bounded memory).
    min_image_size: int = 32
    max_image_pixels: int = 40_000_000
    max_missing_image_share: float = 0.05
    # When a metadata file was read: tolerated share of items missing each text column (title, ...).
    max_missing_text_share: float = 0.9
    out_dir: str = "reports/validate"


@dataclass(frozen=True)
class PreprocessConfig:
    """Text views and image manifest (stage ``preprocess``; templates: ``cliper/views/prompts.py``).

    ``templates`` hold the prompt of each single-field view with a ``{value}`` placeholder; a
    missing field gives the template filled with ``missing_value`` (ending in a full stop).
    The ``global`` view is ``"The product "`` + the ``global_clauses`` of every present field
    joined by ``", "`` + ``"."``. A field is missing when absent, null or shorter than
    ``min_field_length`` characters after stripping.
    """

    views: list[str] = field(
        default_factory=lambda: ["title", "brand", "categories", "description", "global"]
    )
    templates: dict[str, str] = field(
        default_factory=lambda: {
            "title": "The product title is {value}.",
            "brand": "The product brand is {value}.",
            "categories": "The product categories are {value}.",
            "description": "The product description is {value}",
        }
    )
    global_clauses: dict[str, str] = field(
        default_factory=lambda: {
            "title": "titled {value}",
            "brand": "by the brand {value}",
            "categories": "in the categories {value}",
            "description": "described as {value}",
        }
    )
    missing_value: str = "Missing"
    min_field_length: int = 2
    out_dir: str = "data/preprocessed"


@dataclass(frozen=True)
class FusionConfig:
    """How the text views are fused into one text vector (spec section 3)."""

    name: str = "attention"  # attention | self_attention | mean | sum | concat | mlp (cliper.fusion)
    temperature: float = 0.2  # τ of the attention softmax
    # False = spec section 3: cosine weights, weighted sum of the raw view embeddings; True = the
    # normalised form (every view and the image L2-normalised first, so the sum is of unit vectors).
    normalize: bool = False
    n_heads: int = 4  # heads of the learnable self_attention fusion (must divide the feature width)


@dataclass(frozen=True)
class TrainConfig:
    """Recommender training under the MMRec protocol (stage ``train``)."""

    backbone: str = "freedom"
    fusion: FusionConfig = field(default_factory=FusionConfig)
    # Extracted text views fed to the fusion (null = all, in extract order); e.g. [title] for an ablation.
    views: list[str] | None = None
    # Per-backbone overrides of cliper/models/configs/<name>.yaml (list values = grid, chosen on valid).
    backbones: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int = 1000
    patience: int = 20
    eval_every: int = 1
    batch_size: int = 2048
    # null: MMRec's fixed batch. N: N batches per epoch (batch grows with the data; epoch cost linear).
    batches_per_epoch: int | None = None
    learning_rate: float = 1e-3
    # Adam weight decay (MMRec weight_decay). learning_rate, batch_size and weight_decay may also be
    # set per backbone in backbones.<name> (list = grid), as CLIPER's FREEDOM config tunes them.
    weight_decay: float = field(default=0.0, metadata={"ge": 0})
    # Round the valid metric to this many decimals before comparing (MMRec: 4); null = unrounded.
    valid_metric_decimals: int | None = field(default=None, metadata={"ge": 0})
    seed: int = 999
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True  # tqdm bar per epoch
    out_dir: str = "models/recommender"
    reports_dir: str = "reports/train"
    cache_dir: str = ".cache/cliper/train"  # per-run checkpoints (resume after a kill)
    # Seconds between checkpoints (0 = every epoch); a kill loses at most this much training.
    checkpoint_every_s: float = field(default=30.0, metadata={"ge": 0})
    # Grid points (then compared fusions) trained side by side in this many processes, each with
    # 1/workers of the torch threads; 1 = one after another in this process (cliper/stages/train_workers.py).
    workers: int = field(default=1, metadata={"ge": 1})
    distributed: DistributedConfig = field(default_factory=DistributedConfig)  # torchrun / DDP
    # Fusions retrained at the chosen grid point for the view report (cliper/fusion_comparison.py).
    compare_fusions: list[str] = field(default_factory=list)
    fusions_dir: str = "models/fusions"
    # Train seeds besides ``seed``, each retrained at the chosen grid point: the test metric's mean and
    # sd over all of them, beside the trained model's own (cliper/seed_repeats.py); [] = none.
    repeat_seeds: list[int] = field(default_factory=list, metadata={"ge": 0})


@dataclass(frozen=True)
class BootstrapConfig:
    """Bootstrap over test users of the headline metric (cliper/uncertainty.py)."""

    n_resamples: int = field(default=1000, metadata={"ge": 1})
    level: float = field(default=0.95, metadata={"gt": 0, "lt": 1})
    seed: int = field(default=0, metadata={"ge": 0})


@dataclass(frozen=True)
class EvaluateConfig:
    """Full-ranking evaluation of the trained model (stage ``evaluate``)."""

    topk: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    valid_metric: str = "recall@20"
    batch_users: int = 4096
    cold_start_max_train: int = 5  # cold-start slice: test targets with <= this many train interactions
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)  # test_ci of recall/ndcg@K
    out_dir: str = "reports/evaluate"


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking; ``uri: null`` = local SQLite store in the project (env overrides)."""

    enabled: bool = True  # false: the evaluate stage logs nothing to MLflow (e.g. in unit tests)
    uri: str | None = None
    experiment_prefix: str = "cliper"
    # Served model (cliper/serving.py): default list length, upper bound, unknown-user policy.
    serve_k: int = 20
    max_k: int = 1000
    unknown_user: Literal["popularity", "error"] = "popularity"


@dataclass(frozen=True)
class PromoteConfig:
    """Gated promotion of the challenger to champion."""

    metric: str = "recall@20"
    min_gain: float = 0.0
    # absolute: challenger - champion >= min_gain; relative: (challenger - champion) / champion >= min_gain.
    min_gain_mode: Literal["absolute", "relative"] = "absolute"


@dataclass(frozen=True)
class OrchestrationConfig:
    """Prefect settings (``flows/``, ``tasks/``): deployment cron, and retries/timeout per stage task.

    Read by the flow at run time and applied with ``Task.with_options``; no DVC stage declares
    this section, so changing it reruns nothing.
    """

    cron: str = "0 3 * * *"
    interval_seconds: int | None = None  # when set, an interval schedule replaces the cron
    retries: int = 1
    retry_delay_seconds: int = 10
    timeout_seconds: int = 3600


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``."""

    demo: DemoConfig = field(default_factory=DemoConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)


# --------------------------------------------------------------------------- loading


def load_params(path: str | Path = PARAMS_FILE, overrides: dict[str, Any] | None = None) -> Params:
    """Load ``params.yaml`` into :class:`Params`.

    Args:
        path: the YAML file.
        overrides: dotted keys to values (``{"train.backbone": "lightgcn"}``), applied on a copy.

    Raises:
        ConfigError: unreadable file, unknown key, missing key, wrong type or a number outside its
            allowed range (``cliper/config_bounds.py``), naming file and key.
    """
    path = Path(path)
    raw = read_mapping(path)
    for dotted, value in (overrides or {}).items():
        raw = _set_dotted(raw, dotted, value)
    params = from_dict(Params, raw, source=str(path))
    check_bounds(params, str(path))
    return params


def read_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (params file or recipe); ConfigError naming the file otherwise."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: params file not found (run from the project root)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def from_dict(cls: type, data: dict[str, Any], source: str = "<dict>", prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data`` strictly (unknown keys and bad types raise)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{prefix or '<root>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key '{where}{unknown[0]}'; valid keys here: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, source, f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict, e.g. for logging params."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dataclass/dict -> ``{"a.b.c": value}``."""
    data = to_dict(obj)
    if not isinstance(data, dict):
        return {prefix or "value": data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(raw)
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:  # noqa: C901 - one branch per kind
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, source, key)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{source}: '{key}': {value!r} fits none of {args}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{key}' is {value!r}; choose one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        return [_coerce(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        return {k: _coerce(args[1], v, source, f"{key}.{k}") for k, v in value.items()} if args else value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    return value
