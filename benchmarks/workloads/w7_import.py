"""W7: import time: ``python -c "import X"`` minus ``python -c pass``.

Each repetition runs the two commands alternately ``runs`` times (after ``warmup_runs``
discarded pairs, which also fill the bytecode cache) from an empty directory and reports
the median of the paired differences, in ms. It also reports whether ``loky`` is in
``sys.modules`` after ``import X``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

from measure import median
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload


def _wall(command: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(module: str) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        bare = [sys.executable, "-c", "pass"]
        importing = [sys.executable, "-c", f"import {module}"]
        probe = [sys.executable, "-c", f"import sys, {module}; print('loky' in sys.modules)"]
        with tempfile.TemporaryDirectory(prefix="bench-import-") as cwd:
            for _ in range(params["warmup_runs"]):
                _wall(bare, cwd)
                _wall(importing, cwd)
            bare_s, import_s = [], []
            for _ in range(params["runs"]):
                bare_s.append(_wall(bare, cwd))
                import_s.append(_wall(importing, cwd))
            loky = subprocess.run(probe, cwd=cwd, check=True, capture_output=True, text=True).stdout
        diffs = [i - b for i, b in zip(import_s, bare_s, strict=True)]
        return Measurement(
            {"import_ms": median(diffs) * 1000, "loky_loaded": float(loky.strip() == "True")},
            {"bare_ms": median(bare_s) * 1000, "with_import_ms": median(import_s) * 1000},
        )

    return run


def _fast_import(value: float, context: TargetContext) -> bool:
    return value < 45


def _no_loky(value: float, context: TargetContext) -> bool:
    return value == 0


WORKLOAD = Workload(
    id="W7",
    title="import time over bare interpreter start",
    metrics=(
        Metric("import_ms", "import time", "ms"),
        Metric("loky_loaded", "loky in sys.modules", ratio=False, boolean=True),
    ),
    contenders=(
        Contender("concurrent.futures", measure("concurrent.futures"), Role.BASELINE),
        Contender("pluggy", measure("pluggy")),
        Contender("joblib", measure("joblib")),
        Contender("mpire", measure("mpire")),
        Contender("pyarallel", measure("pyarallel"), Role.SUBJECT),
    ),
    targets=(
        Target("import_ms", "< 45 ms", _fast_import),
        Target("loky_loaded", "absent", _no_loky),
    ),
    full_params={"runs": 30, "warmup_runs": 2, "timeout_s": 300},
    quick_params={"runs": 5, "warmup_runs": 1, "timeout_s": 60},
)
