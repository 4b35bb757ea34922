"""W8: a function that carries a large table (a closure over a model, a global read by a
function in ``__main__``), mapped over 100 items of 30 ms on 2 warm worker processes.

A library that pickles the function with every task (or every chunk) sends the table
that many times; pyarallel sends it to each worker once per call. Metric: wall time over
the ideal (``items * item_s / workers``), so 1.0 means no cost for the table at all.
"""

from __future__ import annotations

from measure import expect_equal
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload

from workloads.pools import JOBLIB_LOKY, PPE, MapJob, PoolAdapter, pyarallel_pool
from workloads.tasks import Lookup

BASELINE = "PPE.map chunked"


def measure(pool: PoolAdapter) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        fn = Lookup(params["table_items"], params["item_s"])
        items = list(range(params["items"]))
        outcome = pool.run(MapJob(fn, items, params["workers"], warm=True))
        expect_equal("results", outcome.results, [fn.table[x % len(fn.table)] + len(fn.table) for x in items])
        ideal = params["items"] * params["item_s"] / params["workers"]
        return Measurement({"wall_over_ideal": outcome.seconds / ideal}, {"wall_s": outcome.seconds})

    return run


def _near_ideal(value: float, context: TargetContext) -> bool:
    return value <= 1.3


WORKLOAD = Workload(
    id="W8",
    title="a function carrying a large table, on processes",
    variants=("warm",),
    metrics=(Metric("wall_over_ideal", "wall / ideal", "x"),),
    contenders=(
        Contender(BASELINE, measure(PPE), Role.BASELINE),
        Contender("joblib loky", measure(JOBLIB_LOKY)),
        Contender("pyarallel", measure(pyarallel_pool("process")), Role.SUBJECT),
    ),
    targets=(Target("wall_over_ideal", "<= 1.3 x ideal", _near_ideal),),
    full_params={"items": 100, "item_s": 0.03, "table_items": 2_500_000, "workers": 2, "timeout_s": 120},
    quick_params={"items": 40, "item_s": 0.02, "table_items": 1_000_000, "workers": 2, "timeout_s": 60},
)
