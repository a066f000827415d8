"""Registry of recommender backbones: ``register``, ``list_models()``, ``build_model(name, ...)``.

Each backbone is one module with one :class:`~cliper.models.base.Recommender` subclass and one
``configs/<name>.yaml`` of MMRec default hyper-parameters. ``build_model`` merges that file with
the caller's overrides (precedence, lowest first: model file -> ``params.yaml:
train.backbones.<name>`` -> command line); an unknown key is an error, never silently ignored.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import yaml

from cliper.models.base import Features, InteractionData, Recommender

__all__ = [
    "Features",
    "InteractionData",
    "Recommender",
    "build_model",
    "default_config",
    "get_model_class",
    "list_models",
    "register",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_BUILTIN_MODULES = ("bpr", "lightgcn", "vbpr", "freedom", "bm3")
_REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: add a backbone under ``cls.name`` (the name of its YAML file too)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"model '{cls.name}' is already registered by {_REGISTRY[cls.name].__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"cliper.models.{module}")


def list_models() -> list[str]:
    """Sorted names of the registered backbones."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    """The backbone class registered as ``name``.

    Raises:
        ValueError: ``unknown model 'x'; choose one of [...]``.
    """
    names = list_models()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model '{name}'; choose one of {names}")
    return _REGISTRY[name]


def default_config(name: str) -> dict[str, Any]:
    """The defaults of ``configs/<name>.yaml`` (a fresh copy)."""
    get_model_class(name)
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"model '{name}' has no default config file {path}")
    return copy.deepcopy(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def resolve_config(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``name`` updated with ``overrides``.

    Raises:
        ValueError: an override key the model does not have (naming model, key and valid keys).
    """
    config = default_config(name)
    for key, value in (overrides or {}).items():
        if key not in config:
            raise ValueError(f"model '{name}': unknown config key '{key}'; valid keys: {sorted(config)}")
        if isinstance(value, list) and not isinstance(config[key], list):
            raise ValueError(
                f"model '{name}': config key '{key}' is a list {value!r}; expand grids before build_model"
            )
        config[key] = copy.deepcopy(value)
    return config


def build_model(
    name: str,
    data: InteractionData,
    config: dict[str, Any] | None = None,
    features: Features | None = None,
    fusion: Any = None,
) -> Recommender:
    """Build backbone ``name`` from its defaults merged with ``config``.

    Args:
        name: a registered name (see :func:`list_models`).
        data: the train interactions.
        config: overrides of ``configs/<name>.yaml`` (scalar values; grids are the trainer's job).
        features: item features, required by multimodal backbones.
        fusion: a :class:`cliper.fusion.Fusion` for the text views (multimodal backbones).
    """
    cls = get_model_class(name)
    return cls(data, resolve_config(name, config), features=features, fusion=fusion)
