"""The thread executor keeps the pool of a completed call for the next call asking for as
many threads; a call that ends early shuts its pool down; at most four idle pools are
kept; a forked child never uses its parent's idle pools.

Every test uses worker counts no other test file uses, since idle pools outlive a test.
Items wait at a barrier of ``workers`` parties, so each call provably runs on exactly
``workers`` distinct threads at once.
"""

from __future__ import annotations

import multiprocessing
import threading
import warnings

import pytest

from pyarallel import ItemTimeoutError, parallel_map


def _threads_of_a_call(workers: int, **options: object) -> set[threading.Thread]:
    """Run ``workers`` items that can only finish together; return the threads they ran on."""
    barrier = threading.Barrier(workers, timeout=10)
    seen: set[threading.Thread] = set()
    lock = threading.Lock()

    def item(x: int) -> int:
        with lock:
            seen.add(threading.current_thread())
        barrier.wait()
        return x

    result = parallel_map(item, range(workers), workers=workers, **options)  # type: ignore[arg-type]
    assert result.values() == list(range(workers))
    assert len(seen) == workers
    return seen


def _wait_until_finished(threads: set[threading.Thread]) -> set[threading.Thread]:
    """Join every thread in ``threads`` (with a generous timeout), including any a
    still-running item adds meanwhile; return those still alive."""
    joined: set[threading.Thread] = set()
    while pending := set(threads) - joined:  # set() copies atomically: items may be adding
        for thread in pending:
            thread.join(10)
        joined |= pending
    return {thread for thread in joined if thread.is_alive()}


@pytest.mark.timeout(60)
def test_the_next_call_with_as_many_workers_runs_on_the_same_threads() -> None:
    first = _threads_of_a_call(9)
    second = _threads_of_a_call(9)
    assert second == first
    assert all(thread.daemon and thread.name.startswith("pyarallel-thread") for thread in first)
    other = _threads_of_a_call(10)  # another size: another pool
    assert other.isdisjoint(first)


@pytest.mark.timeout(60)
def test_a_call_that_times_out_shuts_its_pool_down() -> None:
    release = threading.Event()
    ran_on: set[threading.Thread] = set()

    def item(x: int) -> int:
        ran_on.add(threading.current_thread())
        if x == 0:
            release.wait(10)  # outlives the call's timeout
        return x

    result = parallel_map(item, range(30), workers=17, timeout=0.5)
    assert [index for index, _ in result.failures()] == [0]
    assert isinstance(result.failures()[0][1], ItemTimeoutError)
    release.set()
    assert _wait_until_finished(ran_on) == set()  # every thread of that pool exits
    assert _threads_of_a_call(17).isdisjoint(ran_on)


@pytest.mark.timeout(60)
def test_a_stream_closed_early_shuts_its_pool_down() -> None:
    from pyarallel import parallel_iter

    ran_on: set[threading.Thread] = set()

    def item(x: int) -> int:
        ran_on.add(threading.current_thread())
        return x

    stream = parallel_iter(item, range(1000), workers=18)
    next(stream)
    stream.close()
    assert ran_on
    assert _wait_until_finished(ran_on) == set()


@pytest.mark.timeout(60)
def test_at_most_four_idle_pools_are_kept_the_oldest_is_shut_down() -> None:
    sizes = [11, 12, 13, 14, 15, 16]
    pools = [_threads_of_a_call(size) for size in sizes]
    evicted, kept = pools[:2], pools[2:]
    assert _wait_until_finished(set().union(*evicted)) == set()
    assert all(thread.is_alive() for pool in kept for thread in pool)
    assert _threads_of_a_call(16) == pools[-1]  # and the kept ones are still used


def _child_call(results: multiprocessing.Queue[list[int]]) -> None:
    results.put(parallel_map(abs, [-1, -2, -3], workers=19).values())


@pytest.mark.timeout(60)
def test_a_forked_child_starts_threads_of_its_own() -> None:
    _threads_of_a_call(19)  # an idle pool of 19 threads now waits in this process
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[list[int]] = context.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        child = context.Process(target=_child_call, args=(results,))
        child.start()
    try:
        # Without the at-fork reset the child would submit to a pool whose threads do
        # not exist there, and hang.
        assert results.get(timeout=20) == [1, 2, 3]
    finally:
        child.join(20)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
