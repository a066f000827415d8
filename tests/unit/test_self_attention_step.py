"""``benchmarks/self_attention_step.py``: both forms are timed on the same step, and its check of
loss and gradients sees a form that computes something else."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import self_attention_step as bench  # noqa: E402


def _model():  # noqa: ANN202
    model = bench.build("self_attention")
    with torch.no_grad():
        model.fusion.attn.out_proj.weight.normal_(0.0, 0.05)
    return model


def test_the_two_forms_give_the_same_loss_and_gradients_and_a_wrong_one_is_seen() -> None:
    model, data = _model(), bench.batches(1)
    forms = bench.step_forms(model)
    assert list(forms) == list(bench.FORMS)
    assert bench.largest_difference(model, forms, data) < 1e-4
    assert "fuse" not in vars(model.fusion)  # the patched form left the fusion as it was

    def without_pooling(fusion, views, image):  # noqa: ANN001, ANN202 - the attention block alone
        fused, weights = bench.multihead_fuse(fusion, views, image)
        return fused - torch.einsum("iv,vid->id", weights, views), weights

    wrong = {bench.FORMS[0]: forms[bench.FORMS[0]], "wrong": bench.with_fuse(model, without_pooling)}
    assert bench.largest_difference(model, wrong, data) > 0.1


def test_main_writes_the_report(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["self_attention_step.py", "--rounds", "2", "--steps", "1",
                                      "--out", str(tmp_path)])
    bench.main()
    result = json.loads((tmp_path / "self_attention_step.json").read_text())
    assert set(result["seconds_per_step"]) == set(bench.FORMS)
    assert all(len(v) == 2 for v in result["seconds_per_step_rounds"].values())
    assert result["max_rel_diff"] < 1e-4
    table = (tmp_path / "self_attention_step.md").read_text().splitlines()
    assert table[-2].startswith("| --- |") and table[-1].count("|") == 5
