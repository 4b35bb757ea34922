"""W6: streaming 1,000,000 generator items (``x + 1``) through 4 threads, consuming and
discarding the results as they arrive.

Metrics: items/s, and the growth of the process's peak resident memory over the run
(see ``measure.PeakMemory``). The clock runs from just before the pool is created until
the stream is exhausted. The baseline is a hand-written bounded window over a
``ThreadPoolExecutor``: keep ``window`` futures in flight, ``wait(FIRST_COMPLETED)``, refill.
pyarallel's ``batch_size`` is set to the same ``window``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from measure import PeakMemory, expect_equal, user_imports
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload

from workloads.pools import PYARALLEL_DEFERRED
from workloads.tasks import increment

BASELINE = "TPE window loop"
MB = 1_000_000

Stream = Callable[[Callable[[Any], Any], Iterator[Any], Params], Iterator[Any]]
"""``stream(fn, source, params)``: the results of ``fn`` over ``source``, in any order."""


def tpe_window(fn: Callable[[Any], Any], source: Iterator[Any], params: Params) -> Iterator[Any]:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=params["workers"]) as pool:
        pending = {pool.submit(fn, x) for x in islice(source, params["window"])}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
            pending.update(pool.submit(fn, x) for x in islice(source, len(done)))


def joblib_unordered(fn: Callable[[Any], Any], source: Iterator[Any], params: Params) -> Iterator[Any]:
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=params["workers"], backend="threading", return_as="generator_unordered")
    yield from parallel(delayed(fn)(x) for x in source)


def mpire_unordered(fn: Callable[[Any], Any], source: Iterator[Any], params: Params) -> Iterator[Any]:
    from mpire.pool import WorkerPool

    # mpire needs the length (or a chunk size) to chunk a generator; it still reads it lazily.
    with WorkerPool(n_jobs=params["workers"], start_method="threading") as pool:
        yield from pool.imap_unordered(fn, source, iterable_len=params["items"])


def pyarallel_iter(executor: str) -> Stream:
    def stream(fn: Callable[[Any], Any], source: Iterator[Any], params: Params) -> Iterator[Any]:
        from pyarallel import parallel_iter

        results = parallel_iter(
            fn, source, workers=params["workers"], executor=executor, batch_size=params["window"]
        )
        for result in results:
            if not result.ok:
                raise RuntimeError(f"item {result.index} failed: {result.error!r}") from result.error
            yield result.value

    return stream


def measure(stream: Stream, *imports: str) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        user_imports(*imports)
        n = params["items"]
        source = (x for x in range(n))
        memory = PeakMemory()
        memory.start()
        start = time.perf_counter()
        count = total = 0
        for value in stream(increment, source, params):
            count += 1
            total += value
        seconds = time.perf_counter() - start
        growth_mb = memory.growth_mib() * 1024 * 1024 / MB
        expect_equal("number of results", count, n)
        expect_equal("sum of results", total, n * (n - 1) // 2 + n)
        return Measurement(
            {"items_per_s": n / seconds, "rss_growth_mb": growth_mb},
            {"wall_s": seconds, "memory_method": memory.method},
        )

    return run


def pyarallel_contender(executor: str = "thread", name: str = "pyarallel") -> Contender:
    return Contender(
        name, measure(pyarallel_iter(executor), "pyarallel:parallel_iter", *PYARALLEL_DEFERRED), Role.SUBJECT
    )


def _faster_than_window_loop(value: float, context: TargetContext) -> bool | None:
    baseline = context.median(BASELINE, "items_per_s")
    return None if baseline is None else value >= 1.2 * baseline


def _small_memory(value: float, context: TargetContext) -> bool:
    return value < 5


WORKLOAD = Workload(
    id="W6",
    title="streaming a generator, results discarded",
    metrics=(
        Metric("items_per_s", "throughput", "items/s"),
        Metric("rss_growth_mb", "peak RSS growth", "MB", digits=2, ratio=False),
    ),
    contenders=(
        Contender(BASELINE, measure(tpe_window, "concurrent.futures:ThreadPoolExecutor"), Role.BASELINE),
        Contender("joblib generator_unordered", measure(joblib_unordered, "joblib:Parallel")),
        Contender("mpire imap_unordered", measure(mpire_unordered, "mpire.pool:WorkerPool")),
        pyarallel_contender(),
    ),
    targets=(
        Target("items_per_s", f">= 1.2 x {BASELINE}", _faster_than_window_loop),
        Target("rss_growth_mb", "< 5 MB", _small_memory),
    ),
    full_params={"items": 1_000_000, "workers": 4, "window": 64, "timeout_s": 600},
    quick_params={"items": 20_000, "workers": 4, "window": 64, "timeout_s": 30},
)
