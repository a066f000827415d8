"""Typed params loading: defaults, strict keys, type errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cliper.config import ConfigError, Params, flatten, load_params

ROOT = Path(__file__).resolve().parents[2]


def test_repository_params_load_and_match_defaults_types() -> None:
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.clip.adapt.epochs >= 0
    assert params.evaluate.topk == [5, 10, 20, 50]


def test_unknown_key_names_file_key_and_choices(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"bakbone": "freedom"}}))
    expected = r"params.yaml: unknown key 'train.bakbone'; valid keys here: .*backbone"
    with pytest.raises(ConfigError, match=expected):
        load_params(path)


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ({"train": {"epochs": "many"}}, None, "'train.epochs' must be an integer"),
        ({"train": {"learning_rate": "fast"}}, None, "'train.learning_rate' must be a number"),
        ({"clip": {"precision": "fp8"}}, None, "'clip.precision' is 'fp8'; choose one of"),
        ({"evaluate": {"topk": 20}}, None, "'evaluate.topk' must be a list"),
        ({"train": {"fusion": {"normalize": "yes"}}}, None, "'train.fusion.normalize' must be true or false"),
    ],
)
def test_wrong_types_are_refused(tmp_path: Path, section: dict, value: object, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(section))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_params(path)


def test_overrides_apply_on_a_copy_and_scientific_notation_parses(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n")
    params = load_params(path, {"train.backbone": "lightgcn"})
    assert params.train.backbone == "lightgcn"
    assert params.train.learning_rate == pytest.approx(1e-3)
    assert load_params(path).train.backbone == "freedom"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_flatten_gives_dotted_keys() -> None:
    flat = flatten(Params())
    assert flat["clip.adapt.epochs"] == Params().clip.adapt.epochs
    assert "train.fusion.temperature" in flat
