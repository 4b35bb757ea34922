"""While workers run, the calling thread waits: it blocks on a queue (or the event loop
sleeps) instead of spinning. Measured as the CPU time of the calling thread
(``time.thread_time``) over a run whose items mostly sleep: it must stay a small fraction
of the wall time, whatever the driver is waiting for (a task, a retry backoff, a
rate-limit token, or a cold pool's workers).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pyarallel import RateLimit, Retry, async_parallel_map, parallel_map

# A spinning driver burns a whole core while it waits, about 100% of the wall time; one
# that blocks uses well under 1%. The bound leaves room for a loaded CI machine.
MAX_CPU_FRACTION = 0.15


def _sleep_then_return(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _fail_first_attempt(marker_dir: str, index: int) -> int:
    marker = Path(marker_dir, str(index))
    if not marker.exists():
        marker.touch()
        raise ConnectionError(f"first attempt of {index}")
    return index


def _cpu_fraction(run: Callable[[], object]) -> tuple[float, float]:
    """The calling thread's CPU time over the wall time of ``run()``, and the wall time."""
    cpu, wall = time.thread_time(), time.perf_counter()
    run()
    wall = time.perf_counter() - wall
    return (time.thread_time() - cpu) / wall, wall


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", ["thread", "process"])
def test_waiting_for_sleeping_items_costs_the_caller_no_cpu(executor: str) -> None:
    parallel_map(abs, range(4), executor=executor, workers=2)  # warm the process pool

    def run() -> None:
        result = parallel_map(_sleep_then_return, [0.2] * 6, executor=executor, workers=2)
        assert result.ok

    fraction, wall = _cpu_fraction(run)
    assert wall >= 0.55  # three rounds of 0.2 s on 2 workers
    assert fraction < MAX_CPU_FRACTION, f"the caller used {fraction:.0%} of a core while waiting"


@pytest.mark.timeout(60)
def test_waiting_out_a_retry_backoff_costs_the_caller_no_cpu(tmp_path: Path) -> None:
    from functools import partial

    def run() -> None:
        retry = Retry(attempts=2, backoff=0.6, jitter=False)
        result = parallel_map(partial(_fail_first_attempt, str(tmp_path)), range(3), workers=3, retry=retry)
        assert result.values() == [0, 1, 2]

    fraction, wall = _cpu_fraction(run)
    assert wall >= 0.55
    assert fraction < MAX_CPU_FRACTION, f"the caller used {fraction:.0%} of a core while waiting"


@pytest.mark.timeout(60)
def test_waiting_for_rate_limit_tokens_costs_the_caller_little_cpu() -> None:
    # Before each token the driver polls for its last half millisecond (to start on
    # time); at 10 calls per second that is a few tenths of a percent.
    def run() -> None:
        result = parallel_map(abs, range(8), workers=2, rate_limit=RateLimit(10))
        assert result.ok

    fraction, wall = _cpu_fraction(run)
    assert wall >= 0.6
    assert fraction < MAX_CPU_FRACTION, f"the caller used {fraction:.0%} of a core while waiting"


@pytest.mark.timeout(90)
def test_waiting_for_a_cold_pool_under_a_rate_limit_costs_the_caller_no_cpu() -> None:
    # A pool size no other test uses, so the pool is started inside the run; under a rate
    # limit the driver waits for its rendezvous before drawing a token.
    workers = max(3, (os.cpu_count() or 1) + 1)

    def run() -> None:
        result = parallel_map(
            _sleep_then_return, [0.1] * workers, executor="process", workers=workers, rate_limit=50
        )
        assert result.ok

    fraction, wall = _cpu_fraction(run)
    assert fraction < MAX_CPU_FRACTION, f"the caller used {fraction:.0%} of a core over {wall:.2f} s"


@pytest.mark.timeout(60)
def test_the_event_loop_sleeps_while_coroutines_wait() -> None:
    async def nap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def run() -> None:
        result = asyncio.run(async_parallel_map(nap, [0.2] * 6, concurrency=2))
        assert result.ok

    fraction, wall = _cpu_fraction(run)
    assert wall >= 0.55
    assert fraction < MAX_CPU_FRACTION, f"the loop used {fraction:.0%} of a core while waiting"
