"""The main demo (what `make demo` runs) works end to end, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(180)
def test_main_demo_runs_and_reports_both_parts() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    # the HTTP part: every one of the 400 users ends as a success or a listed failure
    assert "succeeded: 395 of 400" in out, out
    assert "UserNotFoundError   x4" in out, out
    assert "requests/s" in out
    # the CPU part ran on worker processes and reported its speed-up
    assert "warm pool:" in out, out
    assert "x serial" in out, out
