"""W3: throughput on 20,000 tiny CPU items (``x * x``) with 2 worker processes.

"cold": a fresh interpreter, the pool's start included in the time; "warm": the pool has
been started (and has run a warm-up map) before the clock starts. Metric: items/s.
"""

from __future__ import annotations

from measure import expect_equal
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload

from workloads.pools import (
    JOBLIB_LOKY,
    MPIRE_PROCESSES,
    PEBBLE_PROCESSES,
    PPE,
    MapJob,
    PoolAdapter,
    pyarallel_pool,
)
from workloads.tasks import square

BASELINE = "PPE.map chunked"
JOBLIB = "joblib loky"


def measure(pool: PoolAdapter) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        items = list(range(params["items"]))
        outcome = pool.run(MapJob(square, items, params["workers"], warm=variant == "warm"))
        expect_equal("results", outcome.results, [x * x for x in items])
        return Measurement({"items_per_s": len(items) / outcome.seconds}, {"wall_s": outcome.seconds})

    return run


def pyarallel_contender(executor: str = "process", name: str = "pyarallel") -> Contender:
    return Contender(name, measure(pyarallel_pool(executor)), Role.SUBJECT)


def _twice_joblib(value: float, context: TargetContext) -> bool | None:
    joblib = context.median(JOBLIB, "items_per_s")
    return None if joblib is None else value >= 2 * joblib


def _near_ppe(value: float, context: TargetContext) -> bool | None:
    ppe = context.median(BASELINE, "items_per_s")
    return None if ppe is None else value >= 0.8 * ppe


WORKLOAD = Workload(
    id="W3",
    title="throughput of tiny CPU items on processes",
    variants=("cold", "warm"),
    metrics=(Metric("items_per_s", "throughput", "items/s"),),
    contenders=(
        Contender(BASELINE, measure(PPE), Role.BASELINE),
        Contender(JOBLIB, measure(JOBLIB_LOKY)),
        Contender("mpire processes", measure(MPIRE_PROCESSES)),
        Contender("pebble ProcessPool", measure(PEBBLE_PROCESSES)),
        pyarallel_contender(),
    ),
    targets=(
        Target("items_per_s", f">= 2 x {JOBLIB}", _twice_joblib, variants=("cold",)),
        Target("items_per_s", f">= 0.8 x {BASELINE}", _near_ppe, variants=("warm",)),
    ),
    full_params={"items": 20_000, "workers": 2, "timeout_s": 120},
    quick_params={"items": 2_000, "workers": 2, "timeout_s": 20},
)
