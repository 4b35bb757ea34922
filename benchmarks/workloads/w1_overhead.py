"""W1: scheduling overhead per item of a thread pool, on 50,000 trivial items (``x + 1``)
with 4 threads, in one call.

overhead per item = (wall time of the call - time of a plain serial loop) / items, both
measured in the same interpreter, the serial loop first.
"""

from __future__ import annotations

from measure import expect_equal, timed
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload

from workloads.pools import (
    JOBLIB_THREADS,
    MPIRE_THREADS,
    PEBBLE_THREADS,
    TPE,
    MapJob,
    PoolAdapter,
    pyarallel_pool,
)
from workloads.tasks import increment

BASELINE = "TPE.map"


def measure(pool: PoolAdapter) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        n, workers = params["items"], params["workers"]
        items = list(range(n))
        _, serial_s = timed(lambda: [increment(x) for x in items])
        outcome = pool.run(MapJob(increment, items, workers))
        expect_equal("sum of results", sum(outcome.results), sum(items) + n)
        overhead_us = (outcome.seconds - serial_s) / n * 1e6
        return Measurement({"overhead_us": overhead_us}, {"wall_s": outcome.seconds, "serial_s": serial_s})

    return run


def pyarallel_contender(executor: str = "thread", name: str = "pyarallel") -> Contender:
    return Contender(name, measure(pyarallel_pool(executor)), Role.SUBJECT)


def _half_of_tpe(value: float, context: TargetContext) -> bool | None:
    baseline = context.median(BASELINE, "overhead_us")
    return None if baseline is None else value <= 0.5 * baseline


WORKLOAD = Workload(
    id="W1",
    title="per-item overhead of a thread pool, trivial items",
    metrics=(Metric("overhead_us", "overhead/item", "us"),),
    contenders=(
        Contender(BASELINE, measure(TPE), Role.BASELINE),
        Contender("joblib threads", measure(JOBLIB_THREADS)),
        Contender("mpire threads", measure(MPIRE_THREADS)),
        Contender("pebble ThreadPool", measure(PEBBLE_THREADS)),
        pyarallel_contender(),
    ),
    targets=(Target("overhead_us", f"<= 0.5 x {BASELINE}", _half_of_tpe),),
    full_params={"items": 50_000, "workers": 4, "timeout_s": 180},
    quick_params={"items": 10_000, "workers": 4, "timeout_s": 30},
)
