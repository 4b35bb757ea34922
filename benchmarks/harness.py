"""One measurement in a fresh interpreter: both ends of the parent/child protocol.

The parent starts ``python run.py --child WORKLOAD CONTENDER VARIANT --params JSON`` in a
new session (so its whole process tree can be ended by group id), with output going to
temporary files. The child runs the contender once and prints one line,
``BENCH-RESULT {json}``, holding either the measurement or the error. Whatever happens
(an exception, a missing library, a crash, a hang past the timeout) the parent gets a
``ChildOutcome`` and the suite goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model import Measurement, Params

__all__ = ["ChildOutcome", "child_main", "run_child"]

MARKER = "BENCH-RESULT "
RUN_SCRIPT = Path(__file__).resolve().parent / "run.py"
EXIT_GRACE_S = 5.0  # how long leftover processes of a finished child may take to exit


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    """What one child reported: a ``measurement``, or an ``error`` saying why not."""

    measurement: Measurement | None
    error: str | None
    seconds: float  # the child's wall time, interpreter start-up included
    notes: list[str] = field(default_factory=list)


# -- child side ----------------------------------------------------------------------------


def child_main(
    workload_id: str, contender_name: str, variant: str, params: Params | None, quick: bool
) -> int:
    """Run one contender once and print its ``BENCH-RESULT`` line. Returns the exit code."""
    from workloads import get

    workload = get(workload_id)
    contender = workload.contender(contender_name)
    if variant not in workload.variants:
        raise SystemExit(f"{workload.id} has no variant {variant!r}; known: {', '.join(workload.variants)}")
    if params is None:
        params = workload.params(quick=quick)
    payload: dict[str, Any]
    try:
        measurement = contender.run(variant, params)
        payload = {"metrics": measurement.metrics, "extra": measurement.extra}
    except ImportError as error:
        payload = {"error": f"not installed: {error}"}
    except Exception as error:
        payload = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
    sys.stdout.write(MARKER + json.dumps(payload, default=repr) + "\n")
    sys.stdout.flush()
    return 0


# -- parent side ---------------------------------------------------------------------------


def run_child(
    workload_id: str,
    contender: str,
    variant: str,
    params: Params,
    *,
    timeout: float,
    env: Mapping[str, str],
) -> ChildOutcome:
    """Run one measurement in a fresh interpreter and collect what it reported."""
    command = [
        sys.executable,
        str(RUN_SCRIPT),
        "--child",
        workload_id,
        contender,
        variant,
        "--params",
        json.dumps(params),
    ]
    notes: list[str] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=dict(env), start_new_session=True
        )
        try:
            process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _end_group(process.pid, grace=0.0)
            process.wait()
        seconds = time.perf_counter() - start
        leftovers = _end_group(process.pid, grace=EXIT_GRACE_S)
        if leftovers:
            notes.append(f"{leftovers} process(es) left behind by the child were ended")
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()

    payload = _payload(stdout)
    if timed_out:
        return ChildOutcome(None, f"timeout: no result after {timeout:.0f} s (process tree ended)", seconds)
    if payload is None:
        return ChildOutcome(
            None, f"child exited with code {process.returncode} and no result: {_tail(stderr)}", seconds
        )
    if "error" in payload:
        return ChildOutcome(None, str(payload["error"]), seconds, [str(payload.get("traceback", ""))])
    measurement = Measurement({k: float(v) for k, v in payload["metrics"].items()}, payload.get("extra", {}))
    if process.returncode != 0:
        notes.append(f"child exited with code {process.returncode} after reporting")
    return ChildOutcome(measurement, None, seconds, notes)


def _payload(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            payload: dict[str, Any] = json.loads(line[len(MARKER) :])
            return payload
    return None


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


def _group_members(group: int) -> list[int]:
    """Live (non-zombie) processes of process group ``group``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members


def _end_group(group: int, *, grace: float) -> int:
    """Let the processes of ``group`` (a child we started in its own session) exit within
    ``grace`` seconds, then terminate, then kill what is left. Returns how many were left."""
    if not Path("/proc").is_dir():  # no way to list the group: just make sure it is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        return 0
    deadline = time.monotonic() + grace
    while (members := _group_members(group)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not members:
        return 0
    for sig, wait_s in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while _group_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)
    return len(members)
