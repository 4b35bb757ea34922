"""The thread executor's concurrency, and executor objects built by the caller
(``concurrent.futures`` thread and process pools, a loky executor): used as they are,
never shut down by pyarallel, failures reported with the original exception."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from pyarallel import parallel_map

# -- helpers ---------------------------------------------------------------------------------


class ConcurrencyProbe:
    """Wraps a function and records the highest number of calls running at once."""

    def __init__(self, fn: Callable[[int], object]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._running = 0
        self.peak = 0
        self.threads: set[str] = set()

    def __call__(self, x: int) -> object:
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
            self.threads.add(threading.current_thread().name)
        try:
            return self._fn(x)
        finally:
            with self._lock:
                self._running -= 1


def _meet_at(barrier: threading.Barrier) -> Callable[[int], int]:
    """A work item that returns only once ``barrier.parties`` items are waiting together."""

    def item(x: int) -> int:
        barrier.wait()  # BrokenBarrierError after the barrier's timeout if too few run at once
        time.sleep(0.01)
        return x * 10

    return item


# Module-level so a standard ProcessPoolExecutor can pickle them by reference.
def _square_with_pid(x: int) -> tuple[int, int]:
    time.sleep(0.01)
    return x * x, os.getpid()


def _refuse_negative(x: int) -> int:
    if x < 0:
        raise ArithmeticError(f"negative input {x}")
    return x


# -- the thread executor ---------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [2, 4])
def test_thread_executor_runs_exactly_workers_items_at_once(workers: int) -> None:
    barrier = threading.Barrier(workers, timeout=10)
    probe = ConcurrencyProbe(_meet_at(barrier))

    result = parallel_map(probe, range(3 * workers), workers=workers)

    assert result.ok, result.failures()
    assert list(result) == [x * 10 for x in range(3 * workers)]
    assert probe.peak == workers
    assert len(probe.threads) == workers
    assert threading.current_thread().name not in probe.threads


@pytest.mark.timeout(60)
def test_workers_none_uses_the_standard_thread_pool_default() -> None:
    with ThreadPoolExecutor() as reference:
        expected = reference._max_workers  # the standard library's default pool size
    barrier = threading.Barrier(expected, timeout=10)
    probe = ConcurrencyProbe(_meet_at(barrier))

    result = parallel_map(probe, range(2 * expected))

    assert result.ok, result.failures()
    assert list(result) == [x * 10 for x in range(2 * expected)]
    assert probe.peak == expected


@pytest.mark.timeout(60)
def test_thread_exception_is_the_original_object_with_its_traceback() -> None:
    raised: dict[int, BaseException] = {}

    def item(x: int) -> int:
        if x % 3 == 0:
            error = LookupError(f"no entry for {x}")
            raised[x] = error
            raise error
        return -x

    result = parallel_map(item, range(7), workers=3)

    assert result.successes() == [(1, -1), (2, -2), (4, -4), (5, -5)]
    failures = dict(result.failures())
    assert sorted(failures) == [0, 3, 6]
    for index, error in failures.items():
        assert error is raised[index]
        assert str(error) == f"no entry for {index}"
        frames = traceback.extract_tb(error.__traceback__)
        assert frames[-1].name == "item"
        assert frames[-1].line == "raise error"


# -- executor objects built by the caller ----------------------------------------------------


def _assert_still_usable(executor: Executor) -> None:
    """pyarallel did not shut the executor down: it still runs new work."""
    assert executor.submit(pow, 3, 4).result(timeout=60) == 81


@pytest.mark.timeout(60)
def test_user_thread_pool_is_used_as_is_and_left_open() -> None:
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="caller-pool") as pool:
        barrier = threading.Barrier(3, timeout=10)
        probe = ConcurrencyProbe(_meet_at(barrier))

        result = parallel_map(probe, range(9), executor=pool)

        assert result.ok, result.failures()
        assert list(result) == [x * 10 for x in range(9)]
        assert probe.threads, "no item ran"
        assert all(name.startswith("caller-pool") for name in probe.threads), probe.threads
        assert probe.peak == 3  # workers=None: the pool's own size
        _assert_still_usable(pool)

        # A second call on the same pool works too.
        assert parallel_map(abs, [-1, -2], executor=pool) == [1, 2]
        _assert_still_usable(pool)


@pytest.mark.timeout(60)
def test_user_thread_pool_exception_is_the_original_object() -> None:
    raised: dict[int, BaseException] = {}

    def item(x: int) -> int:
        if x == 2:
            raised[x] = KeyError("two")
            raise raised[x]
        return x

    with ThreadPoolExecutor(max_workers=2) as pool:
        result = parallel_map(item, range(4), executor=pool)
        [(index, error)] = result.failures()
        assert index == 2
        assert error is raised[2]
        assert traceback.extract_tb(error.__traceback__)[-1].name == "item"
        assert result.successes() == [(0, 0), (1, 1), (3, 3)]
        _assert_still_usable(pool)


@pytest.mark.timeout(120)
def test_user_process_pool_is_used_as_is_and_left_open() -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        result = parallel_map(_square_with_pid, range(6), executor=pool)

        assert result.ok, result.failures()
        assert [value for value, _ in result] == [x * x for x in range(6)]
        worker_pids = {pid for _, pid in result}
        assert os.getpid() not in worker_pids
        assert worker_pids <= set(pool._processes)  # the caller's pool ran them
        _assert_still_usable(pool)

        failing = parallel_map(_refuse_negative, [1, -2, 3], executor=pool)
        [(index, error)] = failing.failures()
        assert index == 1
        assert type(error) is ArithmeticError
        assert str(error) == "negative input -2"
        assert "_refuse_negative" in error.remote_traceback  # type: ignore[attr-defined]  # the worker's traceback
        assert failing.successes() == [(0, 1), (2, 3)]
        _assert_still_usable(pool)


@pytest.mark.timeout(120)
def test_user_loky_executor_is_used_as_is_and_left_open() -> None:
    import loky

    executor = loky.ProcessPoolExecutor(max_workers=2)
    try:
        offset = 7
        result = parallel_map(lambda x: (x + offset, os.getpid()), range(5), executor=executor)

        assert result.ok, result.failures()
        assert [value for value, _ in result] == [7, 8, 9, 10, 11]
        assert os.getpid() not in {pid for _, pid in result}
        _assert_still_usable(executor)
        assert executor.submit(lambda: offset * 2).result(timeout=60) == 14
    finally:
        executor.shutdown(wait=True)


@pytest.mark.timeout(60)
def test_workers_bounds_concurrency_on_a_user_executor() -> None:
    # Regression: tasks queued ahead (2 * workers) all ran at once on a larger pool.
    probe = ConcurrencyProbe(lambda x: time.sleep(0.05) or x)

    with ThreadPoolExecutor(max_workers=4) as pool:
        result = parallel_map(probe, range(12), executor=pool, workers=2)

    assert result.ok
    assert probe.peak <= 2, f"{probe.peak} calls ran at once with workers=2"
