"""W12: what the long-job options cost on trivial items (``x + 1``).

- ``checkpoint``: items per second of ``parallel_map`` on 4 threads with
  ``checkpoint=`` (a fresh SQLite file, every result recorded), against the reference:
  the same call without it. Target: at least 0.5 of the throughput.
- ``sequential``: items per second of ``parallel_map(..., sequential=True)`` against the
  reference: a plain loop over the same function. Target: at least 0.5 of the loop's
  (at most twice its time).

Each child warms the call up once on a few items (imports, the pool) before the clock.
"""

from __future__ import annotations

import os
import tempfile

from measure import expect_equal, timed
from model import (
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

from workloads.tasks import increment

CHECKPOINT, SEQUENTIAL = "checkpoint", "sequential"
REFERENCE = "reference (checkpoint: none; sequential: a plain loop)"


def _secret() -> None:
    os.environ.setdefault("PYARALLEL_CHECKPOINT_SECRET", "benchmark")  # no key file in the home


def measure_threads(*, checkpoint: bool) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        from pyarallel import parallel_map

        _secret()
        items = list(range(params["items"]))
        with tempfile.TemporaryDirectory() as directory:
            warm = os.path.join(directory, "warm.db") if checkpoint else None
            parallel_map(increment, items[:1000], workers=4, checkpoint=warm)
            path = os.path.join(directory, "job.db") if checkpoint else None
            result, seconds = timed(lambda: parallel_map(increment, items, workers=4, checkpoint=path))
        expect_equal("sum of results", sum(result.values()), sum(items) + len(items))
        return Measurement({"items_per_s": len(items) / seconds}, {"wall_s": seconds})

    return run


def measure_reference(variant: str, params: Params) -> Measurement:
    """The same call without ``checkpoint=``, or a plain loop (see the module docstring)."""
    if variant == CHECKPOINT:
        return measure_threads(checkpoint=False)(variant, params)
    items = list(range(params["items"]))
    results, seconds = timed(lambda: [increment(x) for x in items])
    expect_equal("sum of results", sum(results), sum(items) + len(items))
    return Measurement({"items_per_s": len(items) / seconds}, {"wall_s": seconds})


def measure_sequential(variant: str, params: Params) -> Measurement:
    from pyarallel import parallel_map

    items = list(range(params["items"]))
    parallel_map(increment, items[:1000], sequential=True)
    result, seconds = timed(lambda: parallel_map(increment, items, sequential=True))
    expect_equal("sum of results", sum(result.values()), sum(items) + len(items))
    return Measurement({"items_per_s": len(items) / seconds}, {"wall_s": seconds})


def _half_of_the_reference(value: float, context: TargetContext) -> bool | None:
    reference = context.median(REFERENCE, "items_per_s")
    return None if reference is None else value >= 0.5 * reference


_CHECK: TargetCheck = _half_of_the_reference  # a target's check, as the model types it

WORKLOAD = Workload(
    id="W12",
    title="long-job options on trivial items: checkpoint= on threads, sequential=True",
    metrics=(Metric("items_per_s", "throughput", "items/s"),),
    variants=(CHECKPOINT, SEQUENTIAL),
    contenders=(
        Contender(REFERENCE, measure_reference, Role.BASELINE),
        Contender(
            "pyarallel checkpoint=", measure_threads(checkpoint=True), Role.SUBJECT, variants=(CHECKPOINT,)
        ),
        Contender("pyarallel sequential=True", measure_sequential, Role.SUBJECT, variants=(SEQUENTIAL,)),
    ),
    targets=(Target("items_per_s", ">= 0.5 x reference", _CHECK),),
    full_params={"items": 100_000, "timeout_s": 120},
    quick_params={"items": 100_000, "timeout_s": 60},
)
