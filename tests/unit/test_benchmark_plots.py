"""The scaling benchmarks' figures redraw from their committed JSON, written atomically as PNG."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from cliper import io, plots

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))

import knn_memory  # noqa: E402
import scaling  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("module", "results"), [(knn_memory, "knn_memory.json"), (scaling, "scaling.json")])
def test_plot_redraws_the_committed_rows(module, results, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    saved: list[Path] = []
    real_save = plots.save_png

    def spy(fig: Figure, path: Path) -> Path:
        saved.append(Path(path))
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save_png", spy)
    out = tmp_path / "figure.png"
    module.plot(io.read_json(RESULTS / results)["rows"], out)
    assert saved == [out], "written through plots.save_png (atomic: a killed run keeps the former PNG)"
    assert out.read_bytes()[:8] == PNG_MAGIC and list(tmp_path.iterdir()) == [out]
