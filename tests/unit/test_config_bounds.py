"""Numeric params: every one has an allowed range, the defaults are inside it, and a value outside
is refused once, at load time, naming file, key, value and range."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from cliper.config import ConfigError, Params, load_params
from cliper.config_bounds import BOUNDS, Bound, bound_of, check_bounds, numeric_fields

ROOT = Path(__file__).resolve().parents[2]


def test_every_numeric_param_has_a_bound_and_every_bound_a_param():
    fields = dict(numeric_fields(Params))
    unbounded = [key for key, f in fields.items() if bound_of(key, f) is None]
    assert not unbounded, f"add a bound in cliper/config_bounds.py (or field metadata) for {unbounded}"
    assert not sorted(set(BOUNDS) - set(fields)), "bounds for keys that do not exist"


def test_defaults_and_the_repository_params_are_inside_their_bounds():
    check_bounds(Params(), "defaults")
    load_params(ROOT / "params.yaml")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.batch_size", -5, "'train.batch_size' is -5; allowed range: >= 1"),
        ("train.epochs", 0, "'train.epochs' is 0; allowed range: >= 1"),
        ("train.learning_rate", 0, "'train.learning_rate' is 0.0; allowed range: > 0"),
        ("train.fusion.temperature", -0.1, "'train.fusion.temperature' is -0.1"),
        ("clip.adapt.val_fraction", 1.0, "'clip.adapt.val_fraction' is 1.0; allowed range: >= 0 and < 1"),
        ("validate.max_missing_text_share", 1.5, "'validate.max_missing_text_share' is 1.5"),
        ("evaluate.topk", [10, -1], "'evaluate.topk[1]' is -1"),
        ("train.learning_rate", float("inf"), "'train.learning_rate' is inf"),
    ],
)
def test_out_of_range_values_name_file_key_value_and_range(tmp_path: Path, key: str, value, message: str):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({}))
    with pytest.raises(ConfigError) as err:
        load_params(path, {key: value})
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


@dataclass(frozen=True)
class _Section:
    workers: int = field(default=2, metadata={"ge": 1, "le": 8})
    rate: float | None = None


@dataclass(frozen=True)
class _Root:
    section: _Section = field(default_factory=_Section)


def test_field_metadata_declares_a_bound_next_to_the_default():
    fields = dict(numeric_fields(_Root))
    assert fields.keys() == {"section.workers", "section.rate"}
    assert bound_of("section.workers", fields["section.workers"]) == Bound(ge=1, le=8)
    check_bounds(_Root(), "x")
    with pytest.raises(ConfigError, match=r"x: 'section.workers' is 9; allowed range: >= 1 and <= 8"):
        check_bounds(_Root(_Section(workers=9)), "x")
