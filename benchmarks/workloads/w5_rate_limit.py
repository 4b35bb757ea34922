"""W5: rate limiting: 300 calls at 100 calls/s with 20 workers.

Every call records when it starts (``perf_counter``, in the worker) and then sleeps
``call_s``. Metrics: the achieved rate, (calls - 1) / (last start - first start), and the
largest number of starts in any ``window_s`` sliding window (100 ms: 10 at 100/s). The
baseline is a hand-written loop that sleeps until ``t0 + i / rate`` before submitting call
``i`` to a ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from measure import expect_equal, max_in_window, user_imports
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload

from workloads.pools import PYARALLEL_DEFERRED

BASELINE = "hand-paced TPE"


def _pacing(starts: list[float], params: Params) -> Measurement:
    expect_equal("number of calls started", len(starts), params["calls"])
    starts = sorted(starts)
    span = starts[-1] - starts[0]
    return Measurement(
        {
            "rate": (len(starts) - 1) / span,
            "max_in_window": float(max_in_window(starts, params["window_s"])),
        },
        {"span_s": span},
    )


def _recorder(starts: list[float], call_s: float) -> Callable[[int], int]:
    def call(i: int) -> int:
        starts.append(time.perf_counter())
        time.sleep(call_s)
        return i

    return call


def run_hand_paced(variant: str, params: Params) -> Measurement:
    user_imports("concurrent.futures:ThreadPoolExecutor")
    from concurrent.futures import ThreadPoolExecutor

    starts: list[float] = []
    call, rate = _recorder(starts, params["call_s"]), params["rate"]
    with ThreadPoolExecutor(max_workers=params["workers"]) as pool:
        t0 = time.perf_counter()
        futures = []
        for i in range(params["calls"]):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(call, i))
        expect_equal("results", [f.result() for f in futures], list(range(params["calls"])))
    return _pacing(starts, params)


def pyarallel_sync(executor: str = "thread") -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        user_imports("pyarallel:parallel_map", *PYARALLEL_DEFERRED)
        from pyarallel import parallel_map

        starts: list[float] = []
        calls = range(params["calls"])
        result = parallel_map(
            _recorder(starts, params["call_s"]),
            calls,
            workers=params["workers"],
            executor=executor,
            rate_limit=params["rate"],
        )
        expect_equal("results", list(result), list(calls))
        return _pacing(starts, params)

    return run


def run_pyarallel_async(variant: str, params: Params) -> Measurement:
    user_imports("asyncio", "pyarallel:async_parallel_map", *PYARALLEL_DEFERRED)
    import asyncio

    from pyarallel import async_parallel_map

    starts: list[float] = []

    async def call(i: int) -> int:
        starts.append(time.perf_counter())
        await asyncio.sleep(params["call_s"])
        return i

    async def main() -> list[int]:
        result = await async_parallel_map(
            call, range(params["calls"]), concurrency=params["workers"], rate_limit=params["rate"]
        )
        return list(result)

    expect_equal("results", asyncio.run(main()), list(range(params["calls"])))
    return _pacing(starts, params)


def _rate_within_1pct(value: float, context: TargetContext) -> bool:
    rate = float(context.params["rate"])
    return abs(value / rate - 1) <= 0.01


def _no_burst(value: float, context: TargetContext) -> bool:
    allowed = round(float(context.params["rate"]) * float(context.params["window_s"]))
    return value <= allowed


WORKLOAD = Workload(
    id="W5",
    title="rate limiting accuracy and burstiness",
    metrics=(
        Metric("rate", "achieved rate", "calls/s", digits=4),
        Metric("max_in_window", "max starts in 100 ms", "", ratio=False),
    ),
    contenders=(
        Contender(BASELINE, run_hand_paced, Role.BASELINE),
        Contender("pyarallel", pyarallel_sync(), Role.SUBJECT),
        Contender("pyarallel async", run_pyarallel_async, Role.SUBJECT),
    ),
    targets=(
        Target("rate", "within 1% of 100/s", _rate_within_1pct),
        Target("max_in_window", "<= 10", _no_burst),
    ),
    full_params={"calls": 300, "rate": 100, "workers": 20, "call_s": 0.05, "window_s": 0.1, "timeout_s": 60},
    quick_params={"calls": 100, "rate": 100, "workers": 20, "call_s": 0.05, "window_s": 0.1, "timeout_s": 20},
)
