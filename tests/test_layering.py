"""Architecture rules: cliper/ never imports prefect or dvc; mlflow only in tracking/registry/serving."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_ALLOWED = {"tracking.py", "tracking_store.py", "registry.py", "serving.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


LIBRARY_FILES = sorted((ROOT / "cliper").rglob("*.py"))


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_does_not_import_orchestration(path: Path) -> None:
    imported = _imports(path)
    assert not imported & {"prefect", "dvc"}, f"{path} imports {imported & {'prefect', 'dvc'}}"
    if path.name not in MLFLOW_ALLOWED:
        assert "mlflow" not in imported, f"{path} imports mlflow (only {MLFLOW_ALLOWED} may)"


@pytest.mark.parametrize(
    "path",
    sorted(ROOT.glob("cliper/**/*.py")) + sorted(ROOT.glob("tasks/*.py")) + sorted(ROOT.glob("flows/*.py"))
    + sorted(ROOT.glob("teamstack/*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_files_stay_small(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400, f"{path} is over 400 lines: split it"


@pytest.mark.parametrize(
    ("package", "forbidden"), [("demo", "cliper.data"), ("data", "cliper.demo")], ids=["demo", "data"])
def test_demo_and_real_data_never_import_each_other(package: str, forbidden: str) -> None:
    for path in sorted((ROOT / "cliper" / package).rglob("*.py")):
        nodes = list(ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
        modules = [a.name for n in nodes if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module]
        bad = [m for m in modules if m == forbidden or m.startswith(forbidden + ".")]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: cliper/demo and cliper/data stay apart"
