"""The points and grids of the FREEDOM grid probe (``grid_probe.py``): which FREEDOM params each
probed label trains, and which labels make each emulated grid (summarised by ``grid_summary.py``)."""

from __future__ import annotations

from typing import Any

from demo_quality import ARMS, DIAGNOSIS, GRIDS, LEFT_OUT_ORACLES

from cliper.models import default_config

PROBED_ARMS = ("freedom image+title", "freedom+cliper(attention)")
# the ceiling: FREEDOM fed the demo's latent attributes (one-hot, demo_quality.write_diagnosis_features),
# probed on request (--arms) at the per-view points (one view, so the same graph as the fused one)
CEILING_ARM = "freedom oracle features"
# ... and the ceilings with attributes left out (demo_quality.LEFT_OUT_ORACLES): the share that needs them
CEILING_ARMS = (CEILING_ARM, *LEFT_OUT_ORACLES)
ARM_OVERRIDES = {**ARMS, **{arm: DIAGNOSIS[arm] for arm in CEILING_ARMS}}
BASELINE_ARM = "lightgcn"
IMAGE_WEIGHTS = (0.1, 0.3, 0.5, 0.7, 0.9)  # mm_image_weight, at knn_k 10
OTHER_KNN_K = (5,)  # knn_k probed with the per-view graph besides 10
OTHER_UI_LAYERS = (3,)  # FREEDOM's user-item LightGCN layers probed besides 2 (LightGCN's valid wants 3-4)
DEFAULT_DROPOUT = default_config("freedom")["dropout"]  # the share of user-item edges pruned each epoch
OTHER_DROPOUT = (0.5,)  # ... probed below MMRec's grid [0.8, 0.9]: more of the user-item graph kept
# label -> FREEDOM params at that point; the rest are cliper/models/configs/freedom.yaml's defaults
# (text_graph: fused, whatever params.yaml sets: a point replaces train.backbones.freedom)
POINTS: dict[str, dict[str, Any]] = {
    **{f"image weight {w}": {"knn_k": 10, "mm_image_weight": w} for w in IMAGE_WEIGHTS},
    "dropout 0.5 (image weight 0.1)": {"knn_k": 10, "mm_image_weight": 0.1, "dropout": 0.5},
    "reg_weight 1e-3 (image weight 0.1)": {"knn_k": 10, "mm_image_weight": 0.1, "reg_weight": 1.0e-3},
    # FREEDOM's text graph as the mean of one kNN graph per view (text_graph: views)
    **{f"views graph, image weight {w}": {"knn_k": 10, "mm_image_weight": w, "text_graph": "views"}
       for w in IMAGE_WEIGHTS},
    # ... each item's rows weighted by its CLIPER attention weights (text_graph: attention_views)
    **{f"attention views graph, image weight {w}":
       {"knn_k": 10, "mm_image_weight": w, "text_graph": "attention_views"} for w in IMAGE_WEIGHTS},
    # ... the per-view graphs with fewer neighbours each (the mean of 5 graphs has up to 5k per row)
    **{f"views graph, knn_k {k}, image weight {w}": {"knn_k": k, "mm_image_weight": w, "text_graph": "views"}
       for k in OTHER_KNN_K for w in IMAGE_WEIGHTS[:4]},
    # ... and deeper user-item propagation (n_ui_layers), at knn_k 10
    **{f"views graph, n_ui_layers {n}, image weight {w}":
       {"knn_k": 10, "mm_image_weight": w, "text_graph": "views", "n_ui_layers": n}
       for n in OTHER_UI_LAYERS for w in IMAGE_WEIGHTS[:4]},
    # ... and fewer user-item edges pruned each epoch (dropout), at knn_k 10
    **{f"views graph, dropout {d}, image weight {w}":
       {"knn_k": 10, "mm_image_weight": w, "text_graph": "views", "dropout": d}
       for d in OTHER_DROPOUT for w in IMAGE_WEIGHTS[:4]},
}

BENCHMARK_FILE = "demo_experiments_previous_default.json"  # the previous grid's demo_experiments.py runs
BASELINE_LABEL = "lightgcn grid"  # --baseline: LightGCN over its own 4-point grid (GRIDS), one run per seed
# ... and over these grids too (label -> grid): with BASELINE_LABEL's, an 8-point LightGCN grid,
# the same budget as FREEDOM's image weight x knn_k [5, 10]
BASELINE_GRIDS: dict[str, dict[str, list[Any]]] = {
    BASELINE_LABEL: GRIDS[BASELINE_ARM],
    "lightgcn grid, n_layers 3-4": {"n_layers": [3, 4], "reg_weight": GRIDS[BASELINE_ARM]["reg_weight"]},
}
CANDIDATE_GRID = tuple(f"image weight {w}" for w in IMAGE_WEIGHTS[:4])  # 4 points, as GRIDS
# the same 4 image weights with FREEDOM's text graph built per view (summary name -> its labels)
_VARIANTS = ("views graph", "attention views graph", *(f"views graph, knn_k {k}" for k in OTHER_KNN_K),
             *(f"views graph, n_ui_layers {n}" for n in OTHER_UI_LAYERS),
             *(f"views graph, dropout {d}" for d in OTHER_DROPOUT))
TEXT_GRAPH_GRIDS = {name: tuple(f"{name}, image weight {w}" for w in IMAGE_WEIGHTS[:4]) for name in _VARIANTS}

# the second FREEDOM axis of each 8-point budget: TEXT_GRAPH_GRIDS variant -> its values beside the default
EIGHT_POINT_AXES = {
    **{f"views graph, knn_k {k}": f"knn_k [{k}, 10]" for k in OTHER_KNN_K},
    **{f"views graph, n_ui_layers {n}": f"n_ui_layers [2, {n}]" for n in OTHER_UI_LAYERS},
    **{f"views graph, dropout {d}": f"dropout [{DEFAULT_DROPOUT}, {d}]" for d in OTHER_DROPOUT},
}
