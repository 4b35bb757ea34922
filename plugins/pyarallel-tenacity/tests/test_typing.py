"""The typed forms: ``mypy --strict`` accepts this package and ``typed_usage.py`` (a typed
user's script, whose deliberate type errors are all marked, and needed), and the script
runs."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "src" / "pyarallel_tenacity"
USAGE = HERE / "typed_usage.py"


@pytest.mark.timeout(180)
def test_mypy_strict_accepts_the_package_and_the_typed_usage(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    command = [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores", "--no-error-summary"]
    command += ["--cache-dir", str(tmp_path / "mypy"), str(PACKAGE), str(USAGE)]
    checked = subprocess.run(
        command, cwd=HERE.parent, capture_output=True, text=True, timeout=170, check=False
    )
    assert checked.returncode == 0, f"mypy --strict:\n{checked.stdout}\n{checked.stderr}"


@pytest.mark.timeout(60)
def test_the_typed_usage_runs() -> None:
    runpy.run_path(str(USAGE), run_name="__main__")
