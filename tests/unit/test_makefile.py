"""`make install` stops before pip when the disk cannot hold the locked install."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make not installed")
def test_install_refuses_a_disk_too_small(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "-C", str(REPO), "install", f"VENV={venv}", "MIN_FREE_GIB=1000000000"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "GiB free on the disk of" in proc.stderr and "MIN_FREE_GIB=0 skips this check" in proc.stderr
    assert str(tmp_path) in proc.stderr  # the disk of the venv's folder, not the checkout's
    assert not venv.exists()  # nothing was created

