"""W2: I/O-bound items: 2,000 calls of ``time.sleep(0.005)`` on 50 threads.

The metric is wall time / ideal, ideal = items x 0.005 s / threads (0.2 s). A reference row
gives the accuracy of a bare ``time.sleep(0.005)`` on this machine (actual / requested),
and a "bare threads" row the wall time of plain threads sleeping equal shares back to
back: the floor no pool can beat.
"""

from __future__ import annotations

import time

from measure import expect_equal, median
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
from workloads.tasks import pause


def ideal_seconds(params: Params) -> float:
    return float(params["items"] * params["sleep_s"] / params["workers"])


def measure(pool: PoolAdapter) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        items = [params["sleep_s"]] * params["items"]
        outcome = pool.run(MapJob(pause, items, params["workers"]))
        expect_equal("number of results", len(outcome.results), len(items))
        ideal = ideal_seconds(params)
        return Measurement({"wall_over_ideal": outcome.seconds / ideal}, {"wall_s": outcome.seconds})

    return run


def measure_bare_sleep(variant: str, params: Params) -> Measurement:
    requested = params["sleep_s"]
    samples = []
    for _ in range(params["bare_samples"]):
        start = time.perf_counter()
        time.sleep(requested)
        samples.append(time.perf_counter() - start)
    return Measurement({"sleep_accuracy": median(samples) / requested}, {"median_sleep_s": median(samples)})


def measure_bare_threads(variant: str, params: Params) -> Measurement:
    """The floor for any pool: ``workers`` plain threads started inside the clock, each
    sleeping its equal share of the items back to back (no queue, no futures)."""
    import threading

    share = params["items"] // params["workers"]
    sleep_s = params["sleep_s"]

    def sleeper() -> None:
        for _ in range(share):
            time.sleep(sleep_s)

    threads = [threading.Thread(target=sleeper) for _ in range(params["workers"])]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return Measurement({"wall_over_ideal": seconds / ideal_seconds(params)}, {"wall_s": seconds})


def pyarallel_contender(executor: str = "thread", name: str = "pyarallel") -> Contender:
    return Contender(name, measure(pyarallel_pool(executor)), Role.SUBJECT)


def _near_ideal(value: float, context: TargetContext) -> bool:
    return value <= 1.06


WORKLOAD = Workload(
    id="W2",
    title="sleeping items on many threads, wall time vs ideal",
    metrics=(
        Metric("wall_over_ideal", "wall / ideal", "x"),
        Metric("sleep_accuracy", "sleep actual/requested", "x", ratio=False),
    ),
    contenders=(
        Contender("TPE.map", measure(TPE), Role.BASELINE),
        Contender("joblib threads", measure(JOBLIB_THREADS)),
        Contender("mpire threads", measure(MPIRE_THREADS)),
        Contender("pebble ThreadPool", measure(PEBBLE_THREADS)),
        pyarallel_contender(),
        Contender("bare threads", measure_bare_threads, Role.REFERENCE),
        Contender("bare time.sleep", measure_bare_sleep, Role.REFERENCE),
    ),
    targets=(Target("wall_over_ideal", "<= 1.06 x ideal", _near_ideal),),
    full_params={"items": 2000, "sleep_s": 0.005, "workers": 50, "bare_samples": 200, "timeout_s": 60},
    quick_params={"items": 2000, "sleep_s": 0.005, "workers": 50, "bare_samples": 100, "timeout_s": 30},
)
