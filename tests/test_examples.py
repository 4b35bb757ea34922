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
        # --quick: smaller CPU items and one timed round; the same runs and the same report.
        [sys.executable, str(EXAMPLES / "demo.py"), "--quick"],
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
    # the run's own statistics agree with what the server counted
    requests = int(out.split("server saw ")[1].split()[0])
    retries = int(out.split(" of them retries")[0].rsplit(None, 1)[1])
    assert f"calls     {requests} ({retries} retries)" in out, out
    assert "items     400 (395 succeeded, 5 failed)" in out, out
    # the CPU part ran on worker processes and reported its speed-up
    assert "warm pool:" in out, out
    assert "x serial" in out, out


@pytest.mark.timeout(240)
def test_long_job_example_reports_every_part() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "long_job.py")],
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    # 1. the rerun after SIGKILL requested again only what was in flight at the kill
    assert "killed by signal 9 after 150 results" in out, out
    assert "rerun: status completed, 150 items restored" in out, out
    twice = int(out.split("items requested twice: ")[1].split()[0])
    assert twice <= 16, out  # at most the calls in flight: 8 workers, each with one task queued ahead
    # 2. a dead endpoint cost about max_errors + workers calls
    calls = int(out.split("status aborted: ")[1].split()[0])
    assert 10 <= calls <= 18 + 2, out
    # 3. the hung process item was killed, the others completed
    assert "item 7 failed with TaskTimeoutError: True" in out, out
    assert "39 other items succeeded" in out, out
    # 4. a stop from another thread returned promptly
    assert "status cancelled:" in out, out
    latency_ms = int(out.split("returned ")[1].split()[0])
    assert latency_ms < 1000, out
    # 5. one Ctrl-C stopped gracefully, two interrupted
    assert "1 Ctrl-C: exit code 0" in out, out
    assert "status cancelled: 4 finished" in out, out
    assert "2 Ctrl-C: exit code -2" in out, out
