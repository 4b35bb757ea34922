"""W7: start-up cost: ``python -c COMMAND`` minus ``python -c pass``.

Three cases, each contender measuring one command:

- "W7" (variant ``default``): ``import X`` for the standard library's
  ``concurrent.futures`` (baseline), pluggy, joblib, mpire and pyarallel;
- "W7 statement": the import statement users write,
  ``from pyarallel import parallel_map, RateLimit, Retry``, against
  ``import concurrent.futures``;
- "W7 first-call": that statement plus a first 8-item ``parallel_map`` call (its result
  checked), against ``from concurrent.futures import ThreadPoolExecutor`` plus a first
  ``ThreadPoolExecutor.map`` of the same 8 items.

Each repetition runs the bare interpreter and the command alternately ``runs`` times
(after ``warmup_runs`` discarded pairs, which also fill the bytecode cache) from an empty
directory and reports the median of the paired differences, in ms. One more run of the
command reports whether ``loky`` (and, in the two pyarallel-statement cases,
``cloudpickle`` and ``asyncio``) is in ``sys.modules`` afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

from measure import median
from model import (
    DEFAULT_VARIANT,
    Contender,
    Measurement,
    Metric,
    Params,
    Role,
    RunFn,
    Target,
    TargetCheck,
    TargetContext,
    Workload,
)

BASELINE = "concurrent.futures"
STATEMENT = "statement"
FIRST_CALL = "first-call"

_ITEMS = "range(-8, 0)"
_EXPECTED = "[8, 7, 6, 5, 4, 3, 2, 1]"
PYARALLEL_STATEMENT = "from pyarallel import parallel_map, RateLimit, Retry"
COMMANDS: dict[str, dict[str, str]] = {
    STATEMENT: {
        BASELINE: "import concurrent.futures",
        "pyarallel": PYARALLEL_STATEMENT,
    },
    FIRST_CALL: {
        BASELINE: (
            "from concurrent.futures import ThreadPoolExecutor\n"
            "with ThreadPoolExecutor() as pool:\n"
            f"    assert list(pool.map(abs, {_ITEMS})) == {_EXPECTED}\n"
        ),
        "pyarallel": (f"{PYARALLEL_STATEMENT}\nassert parallel_map(abs, {_ITEMS}).values() == {_EXPECTED}\n"),
    },
}
"""The command of each contender in the statement and first-call cases."""

_LAZY = ("loky", "cloudpickle", "asyncio")
HEAVY = {DEFAULT_VARIANT: ("loky",), STATEMENT: _LAZY, FIRST_CALL: _LAZY}
"""The modules whose presence in ``sys.modules`` each case reports."""


def _wall(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _command(name: str, module: str, variant: str) -> str:
    if variant == DEFAULT_VARIANT:
        return f"import {module}"
    if name not in COMMANDS[variant]:
        raise ValueError(f"{name} runs only in the default W7 case, not in {variant!r}")
    return COMMANDS[variant][name]


def measure(name: str, module: str) -> RunFn:
    """Contender ``name``: ``import module`` in the default case, else its ``COMMANDS``."""

    def run(variant: str, params: Params) -> Measurement:
        code = _command(name, module, variant)
        heavy = HEAVY[variant]
        bare = [sys.executable, "-c", "pass"]
        timed = [sys.executable, "-c", code]
        probe = [
            sys.executable,
            "-c",
            f"{code}\nimport sys\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))",
        ]
        with tempfile.TemporaryDirectory(prefix="bench-import-") as cwd:
            for _ in range(params["warmup_runs"]):
                _wall(bare, cwd)
                _wall(timed, cwd)
            bare_s, timed_s = [], []
            for _ in range(params["runs"]):
                bare_s.append(_wall(bare, cwd))
                timed_s.append(_wall(timed, cwd))
            loaded = subprocess.run(probe, cwd=cwd, check=True, capture_output=True, text=True).stdout.split()
        diffs = [t - b for t, b in zip(timed_s, bare_s, strict=True)]
        metric = "first_call_ms" if variant == FIRST_CALL else "import_ms"
        metrics = {metric: median(diffs) * 1000}
        metrics.update({f"{m}_loaded": float(m in loaded) for m in heavy})
        return Measurement(
            metrics,
            {"command": code, "bare_ms": median(bare_s) * 1000, "with_command_ms": median(timed_s) * 1000},
        )

    return run


def _fast_import(value: float, context: TargetContext) -> bool:
    return value < 45


def _at_most(factor: float, metric: str) -> TargetCheck:
    def check(value: float, context: TargetContext) -> bool | None:
        base = context.median(BASELINE, metric)
        return None if base is None or base <= 0 else value <= factor * base

    return check


def _absent(value: float, context: TargetContext) -> bool:
    return value == 0


def _contender(name: str, module: str, role: Role = Role.PEER, *, everywhere: bool = False) -> Contender:
    variants = None if everywhere else (DEFAULT_VARIANT,)
    return Contender(name, measure(name, module), role, variants)


WORKLOAD = Workload(
    id="W7",
    title="start-up time over bare interpreter start",
    variants=(DEFAULT_VARIANT, STATEMENT, FIRST_CALL),
    metrics=(
        Metric("import_ms", "import time", "ms"),
        Metric("first_call_ms", "import + first call", "ms"),
        Metric("loky_loaded", "loky in sys.modules", ratio=False, boolean=True),
        Metric("cloudpickle_loaded", "cloudpickle in sys.modules", ratio=False, boolean=True),
        Metric("asyncio_loaded", "asyncio in sys.modules", ratio=False, boolean=True),
    ),
    contenders=(
        _contender(BASELINE, "concurrent.futures", Role.BASELINE, everywhere=True),
        _contender("pluggy", "pluggy"),
        _contender("joblib", "joblib"),
        _contender("mpire", "mpire"),
        _contender("pyarallel", "pyarallel", Role.SUBJECT, everywhere=True),
    ),
    targets=(
        Target("import_ms", "< 45 ms", _fast_import, variants=(DEFAULT_VARIANT,)),
        Target("import_ms", f"<= 2 x {BASELINE}", _at_most(2.0, "import_ms"), variants=(STATEMENT,)),
        Target("first_call_ms", f"<= 2.5 x {BASELINE}", _at_most(2.5, "first_call_ms")),
        Target("loky_loaded", "absent", _absent),
        Target("cloudpickle_loaded", "absent", _absent),
        Target("asyncio_loaded", "absent", _absent),
    ),
    full_params={"runs": 30, "warmup_runs": 2, "timeout_s": 300},
    quick_params={"runs": 5, "warmup_runs": 1, "timeout_s": 60},
)
