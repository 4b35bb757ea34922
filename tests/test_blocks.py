"""Fresh items travel to the backend in blocks (consecutive items sent as one task and, when
they all succeed, settled as one): tiny items cost few tasks, failures and retries inside a
block stay per item, every rate-limit token is spent on an attempt, progress and observers
still see every item once, streams stop cleanly and ``batch_size`` still bounds read-ahead.

Plugin helpers come from ``test_plugins`` (the ``register`` fixture, the thread-pool
backend, the counting rate limiter and the observer), so their behaviour is shared.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from pyarallel import ItemResult, Retry, hookimpl, parallel_iter, parallel_map
from pyarallel.contracts import Capabilities
from support import FixedInterval, LimiterPlugin, Observer, PoolBackend

WORKERS = 2
EXECUTORS = [pytest.param("thread", id="threads"), pytest.param("process", id="processes")]

# -- work items (module level; cloudpickle sends them to the workers) -------------------------


def _square(x: int) -> int:
    return x * x


def _fails(x: int) -> bool:
    """The scattered items that fail: 13, 1010, 2007, 3004, 4001 and 4998 out of 5,000, all
    of them inside the multi-item blocks that follow the first one-item probe tasks."""
    return x % 997 == 13


FAILING = [x for x in range(5_000) if _fails(x)]


def _square_or_fail(x: int) -> int:
    if _fails(x):
        raise ValueError(x)
    return x * x


def _square_failing_once(directory: str, x: int) -> int:
    """Log every call as a line of ``calls.log``; the failing items raise on their first
    attempt only (the first attempt creates their marker file, the retry finds it)."""
    fd = os.open(os.path.join(directory, "calls.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"%d\n" % x)
    finally:
        os.close(fd)
    if _fails(x):
        try:
            marker = os.open(os.path.join(directory, f"failed-{x}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return x * x
        os.close(marker)
        raise ValueError(x)
    return x * x


class FailingOnce:
    """In-process version of ``_square_failing_once``: counts calls under a lock and fails
    the first attempt of the items in ``failing``."""

    def __init__(self, failing: set[int] | list[int]) -> None:
        self.failing = set(failing)
        self.calls: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, x: int) -> int:
        with self._lock:
            self.calls[x] += 1
            first = self.calls[x] == 1
        if first and x in self.failing:
            raise ValueError(x)
        return x * x


# -- a backend that records the size of every task --------------------------------------------


class RecordingPoolBackend(PoolBackend):
    """A real thread pool that asks for ~20 ms tasks (like the process backend) and records
    how many items each submitted task carries."""

    # The pool runs exactly ``capacity`` tasks at a time.
    capabilities = Capabilities(task_seconds=0.02, queue_ahead=True, in_caller_process=True)

    def __init__(self, workers: int) -> None:
        super().__init__("recording", workers, "recording-pool")
        self.task_sizes: list[int] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        # args: (user function, star, payloads, origin pid[, claim])
        self.task_sizes.append(len(args[0]))
        return super().submit(fn, *args)


class RecordingPlugin:
    def __init__(self) -> None:
        self.backends: list[RecordingPoolBackend] = []

    @hookimpl
    def pyarallel_executor_names(self) -> tuple[str, ...]:
        return ("recording",)

    @hookimpl
    def pyarallel_executor(self, executor: object, workers: int | None) -> RecordingPoolBackend | None:
        if executor != "recording":
            return None
        backend = RecordingPoolBackend(workers or 2)
        self.backends.append(backend)
        return backend


# -- few tasks for tiny items -----------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sized", [pytest.param(True, id="list"), pytest.param(False, id="generator")])
def test_tiny_items_travel_in_few_tasks(register: Callable[..., str], sized: bool) -> None:
    plugin = RecordingPlugin()
    register(plugin)
    n = 20_000

    if sized:
        values = parallel_map(_square, list(range(n)), executor="recording", workers=4).values()
    else:  # unsized: chunks are not shared out over a known remainder, only capped
        results = parallel_iter(_square, (x for x in range(n)), executor="recording", workers=4)
        values = [r.value for r in sorted(results, key=lambda r: r.index)]

    assert values == [x * x for x in range(n)]
    sizes = plugin.backends[-1].task_sizes
    assert sum(sizes) == n  # every item was sent exactly once
    assert sizes[0] == 1  # the first tasks are one-item probes that measure the time per item
    assert len(sizes) <= 60, f"{len(sizes)} tasks for {n} tiny items: {sizes}"
    assert max(sizes) <= 10_000, sizes  # no task is larger than the scheduler's cap


# -- failures and retries inside a block --------------------------------------------------------


def _check_scattered_failures(result: Any, n: int) -> None:
    failures = result.failures()
    assert [index for index, _ in failures] == FAILING
    for index, error in failures:
        assert type(error) is ValueError
        assert error.args == (index,)
    successes = result.successes()
    assert len(successes) == n - len(FAILING)
    assert all(value == index * index for index, value in successes)
    assert {index for index, _ in successes}.isdisjoint(FAILING)


@pytest.mark.timeout(60)
def test_failures_inside_a_block_on_processes_are_per_item() -> None:
    n = 5_000
    result = parallel_map(_square_or_fail, range(n), executor="process", workers=WORKERS)
    _check_scattered_failures(result, n)


@pytest.mark.timeout(60)
def test_failures_inside_a_block_on_threads_are_per_item() -> None:
    n = 5_000
    result = parallel_map(_square_or_fail, range(n), workers=4)
    _check_scattered_failures(result, n)


@pytest.mark.timeout(60)
def test_retry_inside_a_block_on_processes_reruns_only_the_failed_items(tmp_path: Path) -> None:
    n = 5_000
    result = parallel_map(
        partial(_square_failing_once, str(tmp_path)),
        range(n),
        executor="process",
        workers=WORKERS,
        retry=Retry(attempts=3, backoff=0.0),
    )
    assert result.values() == [x * x for x in range(n)]
    calls = Counter(int(line) for line in (tmp_path / "calls.log").read_text().split())
    assert sorted(calls) == list(range(n))
    assert {x: count for x, count in calls.items() if count != 1} == dict.fromkeys(FAILING, 2)
    assert sorted(int(path.name.removeprefix("failed-")) for path in tmp_path.glob("failed-*")) == FAILING


@pytest.mark.timeout(60)
def test_retry_inside_a_block_on_threads_reruns_only_the_failed_items() -> None:
    n = 5_000
    fn = FailingOnce(FAILING)
    result = parallel_map(fn, range(n), workers=4, retry=Retry(attempts=3, backoff=0.0))
    assert result.values() == [x * x for x in range(n)]
    assert sorted(fn.calls) == list(range(n))
    assert {x: count for x, count in fn.calls.items() if count != 1} == dict.fromkeys(FAILING, 2)


def _dense_failure(x: int) -> bool:
    """Runs of adjacent failures and lone ones, so that blocks start, end and are cut in
    the middle by failures whatever their sizes."""
    return x % 7 in (0, 1) or x % 50 == 49


def _square_or_fail_densely(x: int) -> int:
    if _dense_failure(x):
        raise ValueError(x)
    return x * x


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_dense_and_adjacent_failures_split_blocks_exactly(executor: str) -> None:
    n = 3_000
    progress: list[int] = []
    result = parallel_map(
        _square_or_fail_densely,
        range(n),
        executor=executor,
        workers=WORKERS,
        on_progress=lambda done, total: progress.append(done),
    )
    failing = [x for x in range(n) if _dense_failure(x)]
    assert [index for index, _ in result.failures()] == failing
    assert all(isinstance(error, ValueError) and error.args == (index,) for index, error in result.failures())
    assert result.successes() == [(x, x * x) for x in range(n) if not _dense_failure(x)]
    assert progress == list(range(1, n + 1))


# -- one rate-limit token per attempt ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_unsized_input_draws_exactly_one_token_per_attempt(register: Callable[..., str]) -> None:
    plugin = LimiterPlugin()
    register(plugin)
    unlimited = FixedInterval(0.0)  # a CountingLimiter that grants every request at once
    n = 50

    results = list(parallel_iter(_square, (x for x in range(n)), workers=4, rate_limit=unlimited))  # type: ignore[arg-type]
    assert sorted((r.index, r.value) for r in results) == [(x, x * x) for x in range(n)]
    limiter = plugin.limiters[-1]
    assert limiter.denials == 0
    assert len(limiter.grants) == n  # none drawn and wasted when the input ran out
    assert limiter.requested == list(range(n))  # and no reservation asked for nothing

    failing = [3, 14, 25, 36, 47]
    fn = FailingOnce(failing)
    results = list(
        parallel_iter(
            fn,
            (x for x in range(n)),
            workers=4,
            rate_limit=unlimited,  # type: ignore[arg-type]
            retry=Retry(attempts=2, backoff=0.0),
        )
    )
    assert sorted((r.index, r.value) for r in results) == [(x, x * x) for x in range(n)]
    assert sum(fn.calls.values()) == n + len(failing)
    limiter = plugin.limiters[-1]
    assert limiter.denials == 0
    assert len(limiter.grants) == n + len(failing)  # every attempt, retries included, took one
    assert len(limiter.requested) == n + len(failing)  # with a reservation of its own


# -- progress and observers see every item once ----------------------------------------------------


@pytest.mark.timeout(60)
def test_progress_and_observers_see_every_item_of_a_block_once(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)
    n = 3_000
    progress: list[tuple[int, int]] = []

    result = parallel_map(
        _square,
        range(n),
        executor="process",
        workers=WORKERS,
        on_progress=lambda done, total: progress.append((done, total)),
    )

    assert result.values() == [x * x for x in range(n)]
    assert progress == [(done, n) for done in range(1, n + 1)]

    seen_results = observer.results
    assert len(seen_results) == n
    assert sorted(item.index for _, item, _, _ in seen_results) == list(range(n))
    assert all(item.ok and item.value == item.index**2 for _, item, _, _ in seen_results)
    assert [done for _, _, done, _ in seen_results] == list(range(1, n + 1))
    assert all(done <= seen <= n for _, _, done, seen in seen_results)
    # the items did arrive in blocks: at some point more items were out than tasks can be
    # in flight (two per worker)
    assert max(seen - done for _, _, done, seen in seen_results) > 2 * WORKERS
    (_, summary) = observer.ends[-1]
    assert (summary.outcome, summary.succeeded, summary.failed) == ("completed", n, 0)


# -- streams ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_parallel_iter_yields_one_result_per_item_of_a_generator(executor: str) -> None:
    n = 20_000
    counts: Counter[int] = Counter()
    for result in parallel_iter(_square, (x for x in range(n)), executor=executor, workers=WORKERS):
        assert isinstance(result, ItemResult)
        assert result.ok
        assert result.value == result.index * result.index
        counts[result.index] += 1
    assert len(counts) == n
    assert sorted(counts) == list(range(n))
    assert set(counts.values()) == {1}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_breaking_out_of_parallel_iter_leaves_no_thread_behind(executor: str) -> None:
    n = 20_000
    # Warm the shared process pool first, so its long-lived threads are not counted as new.
    assert parallel_map(_square, range(4), executor=executor, workers=WORKERS).values() == [0, 1, 4, 9]
    before = set(threading.enumerate())
    non_daemon_before = {t for t in before if not t.daemon}

    received: list[ItemResult[int]] = []
    started: set[threading.Thread] = set()  # threads the run started, seen while it runs
    ran_on: set[threading.Thread] = set()  # threads: the pool may be an idle one reused

    def square_on_thread(x: int) -> int:
        ran_on.add(threading.current_thread())
        return x * x

    fn = square_on_thread if executor == "thread" else _square
    stream = parallel_iter(fn, (x for x in range(n)), executor=executor, workers=WORKERS)
    with contextlib.closing(stream):
        for result in stream:
            received.append(result)
            if len(received) == 100:
                started = set(threading.enumerate()) - before
                break
    assert len({r.index for r in received}) == 100
    assert all(r.ok and r.value == r.index * r.index for r in received)
    with pytest.raises(StopIteration):
        next(stream)

    if executor == "thread":  # control: the run's own pool threads were seen
        seen = set(ran_on)  # an atomic copy: a pool thread may still be adding itself
        assert 1 <= len(seen) <= WORKERS  # a warm pool may run 100 tiny items on one thread
        assert all(t.name.startswith("pyarallel-thread") for t in seen)
    started |= set(threading.enumerate()) - before
    started |= ran_on
    for thread in started:
        thread.join(timeout=10)
    assert [t.name for t in started if t.is_alive()] == []
    # no new non-daemon thread (one would keep the interpreter from exiting); the killed
    # process pool's own manager thread may be gone
    assert {t for t in threading.enumerate() if not t.daemon} <= non_daemon_before

    # the executor is still usable afterwards (a killed process pool is replaced)
    assert parallel_map(_square, range(5), executor=executor, workers=WORKERS).values() == [0, 1, 4, 9, 16]


class AheadOfConsumer:
    """A generator that records, at every item it yields, how many items it has yielded
    minus how many results the consumer has received."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.yielded = 0
        self.received = 0
        self.ahead: list[int] = []

    def generator(self) -> Iterator[int]:
        for value in range(self.count):
            self.yielded += 1
            self.ahead.append(self.yielded - self.received)
            yield value


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, WORKERS])
def test_batch_size_bounds_read_ahead_of_blocks_on_processes(workers: int) -> None:
    n, batch_size = 500, 7
    source = AheadOfConsumer(n)
    indices: list[int] = []
    for result in parallel_iter(
        _square, source.generator(), executor="process", workers=workers, batch_size=batch_size
    ):
        source.received += 1
        assert result.ok
        assert result.value == result.index * result.index
        indices.append(result.index)
    assert sorted(indices) == list(range(n))
    assert source.yielded == n
    assert len(source.ahead) == n
    assert max(source.ahead) <= batch_size
    assert max(source.ahead) >= 2  # the window was used, not one item at a time
