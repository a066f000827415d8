"""``benchmarks/adapt_speed.py``: every form does the same training from the same weights, and the report."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from cliper.clip.load import load_clip
from cliper.config import AdaptConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import adapt_speed  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup():
    loaded = load_clip("cliper-tiny-resnet", None, "fp32", "cpu", seed=0)
    gen = torch.Generator().manual_seed(0)
    captions = [f"The product description is item {i}, soft and blue." for i in range(8)]
    batches = [(torch.randn(8, 3, 64, 64, generator=gen), loaded.tokenizer(captions)) for _ in range(3)]
    return loaded, copy.deepcopy(loaded.model.state_dict()), batches


def test_each_form_trains_the_same_model_from_the_same_start(setup) -> None:
    loaded, start, batches = setup
    cfg = AdaptConfig(lr=1e-3)
    trained = {}
    for name, form in adapt_speed.FORMS.items():
        assert adapt_speed.time_form(loaded, start, form, batches, cfg) > 0
        trained[name] = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    base = _flat(trained[adapt_speed.BASELINE])
    moved = (base - _flat(start)).norm()
    gaps = [float((_flat(weights) - base).norm() / moved) for weights in trained.values()]
    assert moved > 0 and max(gaps) < 0.05, gaps  # Adam turns rounding of near-zero gradients into steps
    assert loaded.model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def _flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.float().reshape(-1) for v in state.values()])


def test_layout_gap_is_rounding_and_the_report_lists_every_form(setup) -> None:
    loaded, start, batches = setup
    gap = adapt_speed.layout_gap(loaded, start, batches)
    assert 0 <= gap < 1e-4
    row = {"s_per_step_median": 0.2, "s_per_step_rounds": [0.2], "speedup": 1.0,
           "projected_stage_steps_s": 100.0}
    result = {"model": "m", "batch_size": 8, "stage_steps": 500, "rounds": 1, "steps": 3, "threads": 1,
              "torch": torch.__version__, "layout_max_abs_diff": gap,
              "forms": {name: row for name in adapt_speed.FORMS}}
    table = [line for line in adapt_speed.report(result).splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0][2:] for line in table] == list(adapt_speed.FORMS)
