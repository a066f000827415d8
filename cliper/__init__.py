"""cliper: CLIP Enhanced Recommender (arXiv 2407.05420) as a reproducible pipeline.

Public API::

    from cliper import load_params, run_stage, list_models, build_model
"""

from __future__ import annotations

from cliper.config import Params, load_params
from cliper.stages import STAGES, StageResult, run_stage

__all__ = ["STAGES", "Params", "StageResult", "load_params", "run_stage", "list_models", "build_model"]
__version__ = "0.1.0"


def list_models() -> list[str]:
    """Names of the registered recommender backbones."""
    from cliper.models import list_models as _list

    return _list()


def build_model(name: str, **kwargs):  # noqa: ANN201 - returns a Recommender
    """Build a registered backbone by name (see :func:`cliper.models.build_model`)."""
    from cliper.models import build_model as _build

    return _build(name, **kwargs)
