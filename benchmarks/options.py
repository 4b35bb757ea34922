"""What each option of ``parallel_map`` costs: ``python benchmarks/options.py [--quick]``
(``make bench-options``).

Per-item costs are measured on trivial items (``x + 1``) on 4 threads, where nothing but
pyarallel's own work takes time, as the median wall time of several interleaved
repetitions divided by the number of items; each is shown next to the plain call's.
Per-call costs (starting a thread pool, a warm or a cold process pool) are measured on
calls with a handful of items. Everything runs in this interpreter except the cold
process pool, which needs a fresh one each time. The figures feed docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from pyarallel import Retry, hookimpl, parallel_iter, parallel_map, register_plugin, unregister_plugin

WORKERS = 4


def inc(x: int) -> int:
    return x + 1


def inc_or_fail(x: int) -> int:
    if x % 100 == 0:
        raise ValueError(x)
    return x + 1


class _NoOpObserver:
    @hookimpl
    def pyarallel_item_result(self, run: Any, result: Any, done: int, seen: int) -> None:
        pass


def _with_observer(items: Sequence[int]) -> None:
    observer = _NoOpObserver()
    register_plugin(observer, name="options-benchmark-observer")
    try:
        parallel_map(inc, items, workers=WORKERS)
    finally:
        unregister_plugin(observer)


# Each case: a name, what it shows, and a function of the items (its result is discarded).
PER_ITEM_CASES: list[tuple[str, Callable[[Sequence[int]], Any]]] = [
    ("parallel_map (plain)", lambda items: parallel_map(inc, items, workers=WORKERS)),
    ("parallel_iter, consumed", lambda items: sum(1 for _ in parallel_iter(inc, items, workers=WORKERS))),
    ("on_progress (no-op)", lambda items: parallel_map(inc, items, workers=WORKERS, on_progress=_no_op)),
    ("an item_result observer", _with_observer),
    ("retry=Retry(), nothing fails", lambda items: parallel_map(inc, items, workers=WORKERS, retry=Retry())),
    ("timeout=3600", lambda items: parallel_map(inc, items, workers=WORKERS, timeout=3600)),
    ("batch_size=1000", lambda items: parallel_map(inc, items, workers=WORKERS, batch_size=1000)),
    ("batch_size=64", lambda items: parallel_map(inc, items, workers=WORKERS, batch_size=64)),
    ("1% of items fail", lambda items: parallel_map(inc_or_fail, items, workers=WORKERS)),
    (
        "executor='process', warm",
        lambda items: parallel_map(inc, items, workers=2, executor="process"),
    ),
]


def _no_op(done: int, total: int) -> None:
    pass


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def per_item_costs(items: int, repeat: int) -> list[tuple[str, float]]:
    """Median microseconds per item of each case, repetitions interleaved."""
    data = list(range(items))
    for _, case in PER_ITEM_CASES:  # warm-up: imports, the process pool
        case(data[:1000])
    samples: dict[str, list[float]] = {name: [] for name, _ in PER_ITEM_CASES}
    for _ in range(repeat):
        for name, case in PER_ITEM_CASES:
            samples[name].append(_timed(lambda case=case: case(data)) / items * 1e6)
    return [(name, statistics.median(values)) for name, values in samples.items()]


def per_call_costs(repeat: int) -> list[tuple[str, float]]:
    """Median milliseconds of calls whose cost is fixed, not per item."""
    parallel_map(inc, [1], workers=2, executor="process")  # the warm pool for 2 workers
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("thread pool of 4, 4 items", lambda: parallel_map(inc, range(4), workers=4)),
        ("thread pool of 32, 32 items", lambda: parallel_map(inc, range(32), workers=32)),
        (
            "warm process pool of 2, 2 items",
            lambda: parallel_map(inc, range(2), workers=2, executor="process"),
        ),
    ]
    results = [(name, statistics.median(_timed(case) for _ in range(repeat)) * 1e3) for name, case in cases]
    cold = [_cold_process_call() for _ in range(max(1, repeat // 2))]
    results.append(("cold process pool of 2, 2 items", statistics.median(cold) * 1e3))
    return results


_COLD_CALL = """
import json, time
from pyarallel import parallel_map
start = time.perf_counter()
parallel_map(abs, [-1, -2], workers=2, executor="process")
print(json.dumps(time.perf_counter() - start))
"""


def _cold_process_call() -> float:
    """Seconds of a first process call in a fresh interpreter (after ``import pyarallel``):
    loky and cloudpickle imported, two workers started, two items run."""
    output = subprocess.run([sys.executable, "-c", _COLD_CALL], capture_output=True, text=True, check=True)
    return float(json.loads(output.stdout.strip().splitlines()[-1]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer items and repetitions")
    args = parser.parse_args(argv)
    items, repeat = (20_000, 3) if args.quick else (100_000, 7)
    per_item = per_item_costs(items, repeat)
    plain = per_item[0][1]
    print(f"Per item: {items:,} trivial items on {WORKERS} threads, median of {repeat}")
    for name, micros in per_item:
        print(f"  {name:34s} {micros:8.2f} us/item   {micros / plain:5.2f}x plain")
    print(f"Per call: median of {repeat} (cold: of {max(1, repeat // 2)} fresh interpreters)")
    for name, millis in per_call_costs(repeat):
        print(f"  {name:34s} {millis:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
