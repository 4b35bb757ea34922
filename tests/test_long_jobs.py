"""Options for long jobs: ``max_errors``, ``stop=`` and ``stop_on_signals``, ``on_result``,
``ItemResult.attempts``/``duration``, ``sequential``, ordered streams, context variables,
``task_timeout`` on threads, ``worker_init``, ``warm_up``/``shutdown`` and the validation of
all of those.

Items that must stay busy wait on ``threading.Event`` objects the test releases (never on
a long sleep), so a pool thread is never left blocked once a test has ended. No test uses
the process executor except ``sequential=True`` with ``executor="process"`` (which must
run in the caller's process anyway).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import pyarallel
from pyarallel import (
    IncompleteRunError,
    ItemAbortedError,
    ItemCancelledError,
    ItemError,
    ItemResult,
    Retry,
    RunStatus,
    StopToken,
    TaskTimeoutError,
    WorkerInitError,
    async_parallel_iter,
    async_parallel_map,
    parallel,
    parallel_iter,
    parallel_map,
    parallel_starmap,
    stop_on_signals,
)

# -- helpers -----------------------------------------------------------------------------------


class Boom(Exception):
    """The failure the test functions raise."""


class Calls:
    """A thread-safe record of the items a function was called with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.items)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.items)


def indices(results: list[ItemResult[Any]]) -> Counter[int]:
    return Counter(result.index for result in results)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- 1. max_errors -----------------------------------------------------------------------------

WORKERS = 4


@pytest.mark.parametrize("max_errors", [1, 5])
@pytest.mark.parametrize("attempts", [1, 2])
def test_max_errors_stops_calling_a_dead_endpoint(max_errors: int, attempts: int) -> None:
    calls = Calls()

    def dead(item: int) -> int:
        calls.add(item)
        raise Boom(item)

    retry = Retry(attempts=attempts, backoff=0) if attempts > 1 else None
    result = parallel_map(dead, range(1000), workers=WORKERS, max_errors=max_errors, retry=retry)

    assert result.status is RunStatus.ABORTED
    assert calls.count <= (max_errors + 2 * WORKERS) * attempts, calls.count
    assert len(result) == 1000
    own = [index for index, error in result.failures() if isinstance(error, Boom)]
    aborted = [index for index, error in result.failures() if isinstance(error, ItemAbortedError)]
    assert len(own) >= max_errors
    assert len(own) + len(aborted) == 1000  # every item failed one way or the other
    assert all(isinstance(error, ItemError) for index, error in result.failures() if index in aborted)
    assert set(aborted).isdisjoint(calls.snapshot()) or attempts > 1
    with pytest.raises(ExceptionGroup) as caught:
        result.raise_on_failure()
    assert caught.group_contains(IncompleteRunError)


def test_max_errors_async_dead_endpoint() -> None:
    calls = Calls()

    async def dead(item: int) -> int:
        calls.add(item)
        await asyncio.sleep(0)
        raise Boom(item)

    result = asyncio.run(async_parallel_map(dead, range(1000), concurrency=WORKERS, max_errors=3))

    assert result.status is RunStatus.ABORTED
    assert calls.count <= 3 + 2 * WORKERS, calls.count
    assert len(result) == 1000
    kinds = Counter(type(error) for _, error in result.failures())
    assert kinds[Boom] >= 3
    assert kinds[Boom] + kinds[ItemAbortedError] == 1000


def test_max_errors_sized_input_keeps_unread_items_unsized_does_not() -> None:
    def dead(item: int) -> int:
        raise Boom(item)

    sized = parallel_map(dead, list(range(200)), workers=2, max_errors=2, batch_size=4)
    assert sized.status is RunStatus.ABORTED
    assert len(sized) == 200
    assert sum(isinstance(error, ItemAbortedError) for _, error in sized.failures()) >= 200 - 2 - 8

    read = Calls()

    def generate() -> Iterator[int]:
        for item in range(200):
            read.add(item)
            yield item

    unsized = parallel_map(dead, generate(), workers=2, max_errors=2, batch_size=4)
    assert unsized.status is RunStatus.ABORTED
    assert read.count < 200, "the generator was drained despite the abort"
    assert len(unsized) == read.count
    assert sorted(index for index, _ in unsized.failures()) == list(range(read.count))


def test_max_errors_on_a_healthy_run_does_not_abort() -> None:
    result = parallel_map(lambda x: x if x % 10 else 1 // 0, range(50), workers=2, max_errors=10)
    assert result.status is RunStatus.COMPLETED
    assert len(result.failures()) == 5


# -- 2. stop= ----------------------------------------------------------------------------------


class SlowItems:
    """Items that take ``seconds`` each (waiting on an event the test may release), and
    announce when item ``k`` starts."""

    def __init__(self, k: int, seconds: float = 0.3) -> None:
        self.k = k
        self.seconds = seconds
        self.kth_started = threading.Event()
        self.release = threading.Event()
        self.started = Calls()

    def __call__(self, item: int) -> int:
        self.started.add(item)
        if item == self.k:
            self.kth_started.set()
        self.release.wait(self.seconds)
        return item * 10

    def stop_when_kth_starts(self, token: StopToken) -> threading.Thread:
        def stopper() -> None:
            assert self.kth_started.wait(10)
            token.stop()

        thread = threading.Thread(target=stopper, daemon=True)
        thread.start()
        return thread


def check_cancelled(results: list[ItemResult[Any]], started: list[int], total: int | None) -> None:
    counts = indices(results)
    assert all(count == 1 for count in counts.values()), counts
    if total is not None:
        assert set(counts) == set(range(total))
    assert len(set(started)) == len(started), "an item ran twice"
    by_index = {result.index: result for result in results}
    for index in started:
        assert by_index[index].ok, by_index[index]
        assert by_index[index].value == index * 10
    for result in results:
        if not result.ok:
            assert isinstance(result.error, ItemCancelledError), result.error
            assert result.index not in started
            assert result.attempts == 0
    assert any(not result.ok for result in results), "nothing was cancelled"


def test_stop_from_another_thread_returns_promptly() -> None:
    fn = SlowItems(k=3)
    token = StopToken()
    stopper = fn.stop_when_kth_starts(token)
    on_result: list[ItemResult[Any]] = []
    started = time.monotonic()
    result = parallel_map(fn, range(40), workers=2, stop=token, on_result=on_result.append)
    elapsed = time.monotonic() - started
    stopper.join(5)

    assert token.stopped
    assert result.status is RunStatus.CANCELLED
    assert elapsed < 2.5, f"took {elapsed:.2f} s; the whole run would take 6 s"
    assert len(result) == 40
    check_cancelled(on_result, fn.started.snapshot(), 40)
    assert fn.started.count <= 3 + 1 + 2  # items 0..3, plus at most the other worker's next


def test_stop_token_already_stopped_runs_nothing() -> None:
    calls = Calls()
    token = StopToken()
    token.stop()

    result = parallel_map(calls.add, range(10), workers=2, stop=token)

    assert calls.count == 0
    assert result.status is RunStatus.CANCELLED
    assert len(result) == 10
    assert all(isinstance(error, ItemCancelledError) for _, error in result.failures())
    assert len(result.failures()) == 10

    streamed = list(parallel_iter(calls.add, range(10), workers=2, stop=token))
    assert calls.count == 0
    assert all(isinstance(item.error, ItemCancelledError) for item in streamed)


def test_stop_ends_a_stream() -> None:
    fn = SlowItems(k=2)
    token = StopToken()
    stopper = fn.stop_when_kth_starts(token)
    started = time.monotonic()
    streamed = list(parallel_iter(fn, range(40), workers=2, stop=token))
    elapsed = time.monotonic() - started
    stopper.join(5)

    assert elapsed < 2.5, f"took {elapsed:.2f} s"
    assert len(streamed) < 40 or any(isinstance(item.error, ItemCancelledError) for item in streamed)
    check_cancelled(streamed, fn.started.snapshot(), None)


def test_stop_from_the_consumer_of_a_stream() -> None:
    release = threading.Event()
    calls = Calls()

    def fn(item: int) -> int:
        calls.add(item)
        if item >= 2:
            release.wait(0.3)
        return item * 10

    token = StopToken()
    seen: list[ItemResult[int]] = []
    for item in parallel_iter(fn, range(30), workers=2, stop=token):
        seen.append(item)
        if len(seen) == 1:
            token.stop()
    release.set()
    check_cancelled(seen, calls.snapshot(), None)


@pytest.mark.parametrize("from_thread", [True, False])
def test_stop_async(from_thread: bool) -> None:
    started = Calls()
    kth_started = threading.Event()
    token = StopToken()

    async def fn(item: int) -> int:
        started.add(item)
        if item == 3:
            if from_thread:
                kth_started.set()
            else:
                token.stop()
        await asyncio.sleep(0.3)
        return item * 10

    stopper = None
    if from_thread:
        stopper = threading.Thread(target=lambda: kth_started.wait(10) and token.stop(), daemon=True)
        stopper.start()
    results: list[ItemResult[Any]] = []
    begin = time.monotonic()
    result = asyncio.run(
        async_parallel_map(fn, range(60), concurrency=4, stop=token, on_result=results.append)
    )
    elapsed = time.monotonic() - begin
    if stopper is not None:
        stopper.join(5)

    assert result.status is RunStatus.CANCELLED
    assert elapsed < 2.0, f"took {elapsed:.2f} s; the whole run would take 4.5 s"
    check_cancelled(results, started.snapshot(), 60)


# -- 3. stop_on_signals ------------------------------------------------------------------------

SIGNAL_SCRIPT = r"""
import sys, time
from pyarallel import parallel_map, stop_on_signals

mode = sys.argv[1]
told = []

def slow(item):
    if item == 0:
        print("started", flush=True)
    deadline = time.monotonic() + (8.0 if mode == "twice" else 0.3)
    while time.monotonic() < deadline:
        if mode == "twice" and stop.stopped and not told:
            told.append(1)
            print("got first", flush=True)
        time.sleep(0.01)
    return item

with stop_on_signals() as stop:
    result = parallel_map(slow, range(40), workers=2, stop=stop)
print(result.status.value, flush=True)
"""


def _run_signal_script(mode: str, signals: int) -> tuple[subprocess.CompletedProcess[str], float]:
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_SCRIPT, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,  # noqa: PLW1509 - see test_timeouts_and_interrupts
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        waits = ["started", "got first"][:signals]
        for marker in waits:
            while True:
                line = process.stdout.readline()
                assert line, f"the child exited before printing {marker!r}: {lines}"
                lines.append(line.strip())
                if line.strip() == marker:
                    break
            process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = process.communicate(timeout=20)
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    output = "\n".join([*lines, stdout])
    done = subprocess.CompletedProcess(process.args, process.returncode, output, stderr)
    return done, elapsed


@pytest.mark.timeout(60)
def test_stop_on_signals_first_sigint_stops_gracefully() -> None:
    run, elapsed = _run_signal_script("once", 1)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "cancelled", run.stdout
    assert elapsed < 3, f"took {elapsed:.1f} s after SIGINT; the whole run would take 6 s"


@pytest.mark.timeout(60)
def test_stop_on_signals_second_sigint_interrupts() -> None:
    run, elapsed = _run_signal_script("twice", 2)
    assert run.returncode != 0
    assert "KeyboardInterrupt" in run.stderr, run.stderr
    assert "cancelled" not in run.stdout.splitlines()
    assert elapsed < 4, f"took {elapsed:.1f} s after the second SIGINT; the items run 8 s"


def test_stop_on_signals_outside_the_main_thread_raises() -> None:
    caught: list[BaseException] = []

    def enter() -> None:
        try:
            with stop_on_signals():
                pass
        except BaseException as error:
            caught.append(error)

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=enter)
    thread.start()
    thread.join(5)
    assert len(caught) == 1
    assert isinstance(caught[0], ValueError)
    assert "main thread" in str(caught[0])
    assert signal.getsignal(signal.SIGINT) is before


def test_stop_on_signals_restores_the_handlers() -> None:
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with stop_on_signals() as token:
        assert isinstance(token, StopToken)
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {number: signal.getsignal(number) for number in before} == before

    with pytest.raises(RuntimeError), stop_on_signals():
        raise RuntimeError
    assert {number: signal.getsignal(number) for number in before} == before


# -- 4. on_result ------------------------------------------------------------------------------


def test_on_result_every_item_once_on_the_callers_thread() -> None:
    caller = threading.get_ident()
    seen: list[tuple[ItemResult[Any], int]] = []

    def fail_some(item: int) -> int:
        if item % 7 == 0:
            raise Boom(item)
        return item

    result = parallel_map(
        fail_some, range(100), workers=3, on_result=lambda r: seen.append((r, threading.get_ident()))
    )
    assert len(seen) == 100  # all of them delivered before the call returned
    assert indices([r for r, _ in seen]) == Counter(range(100))
    assert {thread for _, thread in seen} == {caller}
    failed = {r.index for r, _ in seen if not r.ok}
    assert failed == {i for i in range(100) if i % 7 == 0}
    assert all(isinstance(r.error, Boom) for r, _ in seen if not r.ok)
    assert all(r.value == r.index for r, _ in seen if r.ok)
    assert result.status is RunStatus.COMPLETED


def test_on_result_tiny_items_chunked() -> None:
    caller = threading.get_ident()
    seen: list[ItemResult[int]] = []
    threads: set[int] = set()

    def record(item: ItemResult[int]) -> None:
        seen.append(item)
        threads.add(threading.get_ident())

    result = parallel_map(lambda x: x + 1, range(10_000), workers=2, on_result=record)
    assert result.ok
    assert len(seen) == 10_000
    assert indices(seen) == Counter(range(10_000))
    assert all(item.ok and item.value == item.index + 1 for item in seen)
    assert threads == {caller}


def test_on_result_includes_aborted_items() -> None:
    seen: list[ItemResult[Any]] = []

    def dead(item: int) -> int:
        raise Boom(item)

    result = parallel_map(dead, range(100), workers=2, max_errors=1, on_result=seen.append)
    assert result.status is RunStatus.ABORTED
    assert indices(seen) == Counter(range(100))
    assert any(isinstance(item.error, ItemAbortedError) for item in seen)
    assert all(isinstance(item.error, Boom | ItemAbortedError) for item in seen)
    assert all(item.attempts == 0 for item in seen if isinstance(item.error, ItemAbortedError))


def test_on_result_streams_and_starmap() -> None:
    caller = threading.get_ident()
    seen: list[tuple[int, int]] = []
    streamed = list(
        parallel_iter(
            lambda x: x,
            range(20),
            workers=2,
            on_result=lambda r: seen.append((r.index, threading.get_ident())),
        )
    )
    assert sorted(index for index, _ in seen) == list(range(20))
    assert {thread for _, thread in seen} == {caller}
    assert len(streamed) == 20

    starred: list[int] = []
    result = parallel_starmap(pow, [(2, i) for i in range(8)], on_result=lambda r: starred.append(r.value))
    assert sorted(starred) == list(result) == [2**i for i in range(8)]


# -- 5. attempts and duration ------------------------------------------------------------------


class Flaky:
    """Fails its first ``failures`` calls for each item, then returns the item."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, item: int) -> int:
        with self._lock:
            self.calls[item] += 1
            count = self.calls[item]
        if item == 0 and count <= self.failures:
            raise Boom(item)
        if item == 1:
            time.sleep(0.2)
        return item


def test_attempts_and_duration_via_stream_and_on_result() -> None:
    fn = Flaky(failures=2)
    seen: list[ItemResult[int]] = []
    streamed = {
        item.index: item
        for item in parallel_iter(
            fn, range(6), workers=2, retry=Retry(attempts=3, backoff=0), on_result=seen.append
        )
    }
    assert set(streamed) == set(range(6))
    assert fn.calls[0] == 3
    for results in (streamed, {item.index: item for item in seen}):
        assert results[0].ok
        assert results[0].attempts == 3
        assert results[1].ok
        assert 0.15 <= results[1].duration < 2
        assert all(results[i].attempts == 1 for i in range(1, 6))


def test_attempts_of_a_cancelled_item_is_zero() -> None:
    fn = SlowItems(k=0, seconds=0.2)
    token = StopToken()
    stopper = fn.stop_when_kth_starts(token)
    streamed = list(parallel_iter(fn, range(10), workers=1, stop=token))
    stopper.join(5)
    cancelled = [item for item in streamed if not item.ok]
    assert cancelled
    assert all(item.attempts == 0 and item.duration == 0.0 for item in cancelled)
    [first] = [item for item in streamed if item.index == 0]
    assert first.ok
    assert first.attempts == 1
    assert first.duration >= 0.15


# -- 6. sequential=True ------------------------------------------------------------------------


def test_sequential_runs_in_the_caller_in_order_with_real_tracebacks() -> None:
    caller = threading.get_ident()
    order: list[tuple[int, int]] = []
    raised: list[BaseException] = []

    def sequential_user_function(item: int) -> int:
        order.append((item, threading.get_ident()))
        if item == 3:
            error = Boom(item)
            raised.append(error)
            raise error
        return item

    result = parallel_map(sequential_user_function, range(8), workers=4, sequential=True)
    assert [item for item, _ in order] == list(range(8))
    assert {thread for _, thread in order} == {caller}
    [(index, error)] = result.failures()
    assert index == 3
    assert error is raised[0]
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert "sequential_user_function" in frames


def test_sequential_honours_retry_and_rate_limit() -> None:
    fn = Flaky(failures=2)
    result = parallel_map(fn, range(3), sequential=True, retry=Retry(attempts=3, backoff=0))
    assert list(result) == [0, 1, 2]
    assert fn.calls[0] == 3

    started = time.monotonic()
    result = parallel_map(lambda x: x, range(11), sequential=True, rate_limit=20)
    assert time.monotonic() - started >= 0.45
    assert list(result) == list(range(11))


def test_sequential_honours_timeout_and_task_timeout() -> None:
    calls = Calls()

    def slow(item: int) -> int:
        calls.add(item)
        time.sleep(0.1)
        return item

    started = time.monotonic()
    result = parallel_map(slow, range(20), sequential=True, timeout=0.35)
    assert time.monotonic() - started < 1.0
    assert result.status is RunStatus.TIMED_OUT
    assert calls.count < 20
    assert len(result) == 20

    def sleeper(item: int) -> int:
        if item == 1:
            time.sleep(0.3)
        return item

    result = parallel_map(sleeper, range(3), sequential=True, task_timeout=0.1)
    [(index, error)] = result.failures()
    assert index == 1
    assert isinstance(error, TaskTimeoutError)
    assert result.status is RunStatus.COMPLETED


def test_sequential_on_progress_and_process_executor() -> None:
    progress: list[tuple[int, int]] = []
    where: list[tuple[int, int]] = []

    def locate(item: int) -> int:
        where.append((os.getpid(), threading.get_ident()))
        return item * 2

    result = parallel_map(
        locate,
        range(5),
        executor="process",
        sequential=True,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    assert list(result) == [0, 2, 4, 6, 8]
    assert set(where) == {(os.getpid(), threading.get_ident())}
    assert progress == [(done, 5) for done in range(1, 6)]


def test_sequential_decorator_and_stream() -> None:
    caller = threading.get_ident()

    @parallel(sequential=True)
    def where(item: int) -> int:
        return threading.get_ident()

    assert set(where.map(range(4))) == {caller}
    assert [item.index for item in where.stream(range(4))] == [0, 1, 2, 3]


# -- 7. ordered streams ------------------------------------------------------------------------


def _first_slow(item: int) -> int:
    if item == 0:
        time.sleep(0.2)
    return item


@pytest.mark.parametrize("batch_size", [None, 4])
def test_ordered_stream(batch_size: int | None) -> None:
    unordered = [
        item.index for item in parallel_iter(_first_slow, range(12), workers=2, batch_size=batch_size)
    ]
    assert unordered[0] != 0, "the slow first item should finish late without ordered=True"
    ordered = [
        item.index
        for item in parallel_iter(_first_slow, range(12), workers=2, batch_size=batch_size, ordered=True)
    ]
    assert ordered == list(range(12))


def test_ordered_decorator_stream() -> None:
    slow_first = parallel(workers=2)(_first_slow)
    streamed = list(slow_first.stream(range(10), ordered=True))
    assert [item.index for item in streamed] == list(range(10))
    assert [item.value for item in streamed] == list(range(10))


@pytest.mark.parametrize("batch_size", [None, 4])
def test_ordered_async_stream(batch_size: int | None) -> None:
    async def first_slow(item: int) -> int:
        await asyncio.sleep(0.2 if item == 0 else 0.001)
        return item

    async def collect(ordered: bool) -> list[int]:
        async with async_parallel_iter(
            first_slow, range(12), concurrency=3, batch_size=batch_size, ordered=ordered
        ) as results:
            return [item.index async for item in results]

    assert asyncio.run(collect(False))[0] != 0
    assert asyncio.run(collect(True)) == list(range(12))


# -- 8. contextvars ----------------------------------------------------------------------------

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("REQUEST_ID", default="unset")


def test_contextvars_reach_thread_workers_and_async_tasks() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        assert set(parallel_map(lambda _: REQUEST_ID.get(), range(8), workers=2)) == {"req-42"}
        streamed = {item.value for item in parallel_iter(lambda _: REQUEST_ID.get(), range(8), workers=2)}
        assert streamed == {"req-42"}

        async def read(_: int) -> str:
            await asyncio.sleep(0)
            return REQUEST_ID.get()

        async def main() -> set[str]:
            return set(await async_parallel_map(read, range(8), concurrency=3))

        # asyncio.run copies the current context into the loop's main task.
        assert asyncio.run(main()) == {"req-42"}
    finally:
        REQUEST_ID.reset(token)
    assert set(parallel_map(lambda _: REQUEST_ID.get(), range(4), workers=2)) == {"unset"}


# -- 9. task_timeout on threads ----------------------------------------------------------------


def test_task_timeout_on_threads_does_not_wait_for_the_stuck_item() -> None:
    release = threading.Event()

    def stuck_first(item: int) -> int:
        if item == 0:
            release.wait(3)
        return item

    try:
        started = time.monotonic()
        result = parallel_map(stuck_first, range(10), workers=3, task_timeout=0.3)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert elapsed < 1.5, f"took {elapsed:.2f} s"
    [(index, error)] = result.failures()
    assert index == 0
    assert isinstance(error, TaskTimeoutError)
    assert isinstance(error, TimeoutError)
    assert result.successes() == [(i, i) for i in range(1, 10)]


def test_task_timeout_on_threads_is_retried() -> None:
    release = threading.Event()
    calls = Calls()

    def stuck_first(item: int) -> int:
        calls.add(item)
        if item == 0:
            release.wait(3)
        return item

    seen: list[ItemResult[int]] = []
    try:
        started = time.monotonic()
        parallel_map(
            stuck_first,
            range(4),
            workers=3,
            task_timeout=0.3,
            retry=Retry(attempts=2, backoff=0, on=TimeoutError),
            on_result=seen.append,
        )
        elapsed = time.monotonic() - started
    finally:
        release.set()
    [first] = [item for item in seen if item.index == 0]
    assert isinstance(first.error, TaskTimeoutError)
    assert first.attempts == 2
    assert calls.snapshot().count(0) == 2
    assert elapsed < 2.0


# -- 10. worker_init ---------------------------------------------------------------------------


def test_worker_init_once_per_thread_before_its_first_item() -> None:
    lock = threading.Lock()
    events: list[tuple[str, int]] = []

    def init() -> None:
        with lock:
            events.append(("init", threading.get_ident()))

    def work(item: int) -> int:
        with lock:
            events.append(("item", threading.get_ident()))
        time.sleep(0.01)
        return item

    result = parallel_map(work, range(30), workers=3, worker_init=init)
    assert list(result) == list(range(30))
    inits = [thread for kind, thread in events if kind == "init"]
    workers = {thread for kind, thread in events if kind == "item"}
    assert workers, "no item ran"
    assert all(inits.count(thread) == 1 for thread in workers), events
    for thread in workers:
        first_item = events.index(("item", thread))
        assert events.index(("init", thread)) < first_item


def test_worker_init_failure_raises_worker_init_error() -> None:
    calls = Calls()
    seen: list[ItemResult[Any]] = []
    original = Boom("no credentials")

    def init() -> None:
        raise original

    with pytest.raises(WorkerInitError) as caught:
        parallel_map(calls.add, range(20), workers=2, worker_init=init, on_result=seen.append)
    assert caught.value.__cause__ is original
    assert calls.count == 0
    assert seen == []

    with pytest.raises(WorkerInitError) as caught:
        list(parallel_iter(calls.add, range(20), workers=2, worker_init=init))
    assert caught.value.__cause__ is original
    assert calls.count == 0


def test_worker_init_sequential_runs_once() -> None:
    inits: list[int] = []
    result = parallel_map(lambda x: x, range(10), sequential=True, worker_init=lambda: inits.append(1))
    assert list(result) == list(range(10))
    assert inits == [1]


# -- 11. warm_up and shutdown ------------------------------------------------------------------


def test_warm_up_and_shutdown() -> None:
    assert pyarallel.warm_up("thread", workers=2) is None
    assert list(parallel_map(lambda x: x * 3, range(5), workers=2)) == [0, 3, 6, 9, 12]
    assert pyarallel.shutdown() is None
    assert list(parallel_map(lambda x: x * 3, range(5), workers=2)) == [0, 3, 6, 9, 12]


# -- 12. validation ----------------------------------------------------------------------------

BAD_OPTIONS = [
    ({"max_errors": 0}, ValueError, "max_errors", "0"),
    ({"max_errors": -1}, ValueError, "max_errors", "-1"),
    ({"max_errors": 1.5}, TypeError, "max_errors", "1.5"),
    ({"task_timeout": 0}, ValueError, "task_timeout", "0"),
    ({"task_timeout": -1}, ValueError, "task_timeout", "-1"),
    ({"worker_init": 5}, TypeError, "worker_init", "5"),
    ({"max_tasks_per_worker": 0}, (TypeError, ValueError), "max_tasks_per_worker", "0"),
    ({"stop": "yes"}, TypeError, "stop", "'yes'"),
    ({"on_result": 3}, (TypeError, ValueError), "on_result", "3"),
    ({"sequential": 1}, (TypeError, ValueError), "sequential", "1"),
    ({"checkpoint_key": len}, ValueError, "checkpoint_key", "checkpoint"),
    ({"max_tasks_per_worker": 2, "sequential": "yes"}, TypeError, "sequential", "'yes'"),
]


@pytest.mark.parametrize(("options", "kind", "name", "value"), BAD_OPTIONS, ids=lambda v: repr(v)[:40])
def test_bad_options_refused_before_work(
    options: dict[str, Any], kind: type[Exception], name: str, value: str
) -> None:
    calls = Calls()
    for call in (
        lambda: parallel_map(calls.add, range(3), **options),
        lambda: parallel_iter(calls.add, range(3), **options),
    ):
        with pytest.raises(kind) as caught:
            call()
        assert name in str(caught.value)
        assert value in str(caught.value)
    assert calls.count == 0


def test_max_tasks_per_worker_refused_on_threads() -> None:
    calls = Calls()
    with pytest.raises(ValueError, match=r"max_tasks_per_worker=2.*executor='thread'"):
        parallel_map(calls.add, range(3), executor="thread", max_tasks_per_worker=2)
    with pytest.raises(ValueError, match=r"max_tasks_per_worker=2.*executor='thread'"):
        list(parallel_iter(calls.add, range(3), executor="thread", max_tasks_per_worker=2))
    assert calls.count == 0


def test_max_tasks_per_worker_refused_when_a_stream_is_created() -> None:
    with pytest.raises(ValueError, match="max_tasks_per_worker"):
        parallel_iter(lambda x: x, range(3), executor="thread", max_tasks_per_worker=2)


def test_bad_ordered_refused() -> None:
    calls = Calls()
    with pytest.raises((TypeError, ValueError)) as caught:
        parallel_iter(calls.add, range(3), ordered="yes")  # type: ignore[arg-type]
    assert "ordered" in str(caught.value)
    assert "'yes'" in str(caught.value)
    assert calls.count == 0


def test_bad_options_refused_by_the_async_api() -> None:
    async def fn(item: int) -> int:
        raise AssertionError("called")

    async def main() -> None:
        for options in ({"max_errors": 0}, {"stop": "yes"}, {"task_timeout": -1}, {"on_result": 3}):
            with pytest.raises((TypeError, ValueError)) as caught:
                await async_parallel_map(fn, range(3), **options)
            assert next(iter(options)) in str(caught.value)

    asyncio.run(main())


# -- 13. property: max_errors, stop and on_result together -------------------------------------

FAST, SLOW, FAILING = "fast", "slow", "failing"


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.sampled_from([FAST, FAST, SLOW, FAILING]), min_size=1, max_size=40),
    max_errors=st.none() | st.integers(1, 6),
    stop_after=st.none() | st.integers(1, 40),
    workers=st.integers(1, 4),
)
def test_property_max_errors_and_stop(
    kinds: list[str], max_errors: int | None, stop_after: int | None, workers: int
) -> None:
    calls = Calls()
    token = StopToken()
    seen: list[ItemResult[int]] = []

    def fn(item: int) -> int:
        calls.add(item)
        kind = kinds[item]
        if kind == SLOW:
            time.sleep(0.005)
        elif kind == FAILING:
            raise Boom(item)
        return item * 2

    def on_result(result: ItemResult[int]) -> None:
        seen.append(result)
        if stop_after is not None and len(seen) >= stop_after:
            token.stop()

    result = parallel_map(
        fn, range(len(kinds)), workers=workers, max_errors=max_errors, stop=token, on_result=on_result
    )
    called = calls.snapshot()
    note(f"status={result.status} calls={len(called)} seen={len(seen)}")

    n = len(kinds)
    assert len(result) == n
    assert indices(seen) == Counter(range(n))
    assert Counter(called) == Counter(set(called)), "an item ran twice"
    own = [r for r in seen if isinstance(r.error, Boom)]
    closed = [r for r in seen if isinstance(r.error, ItemAbortedError | ItemCancelledError)]
    for r in seen:
        if r.ok:
            assert r.value == r.index * 2
            assert kinds[r.index] != FAILING
        elif isinstance(r.error, Boom):
            assert kinds[r.index] == FAILING
        else:
            assert isinstance(r.error, ItemAbortedError | ItemCancelledError), r.error
            assert r.index not in called, "a closed item was called"
            assert r.attempts == 0
    if result.status is RunStatus.ABORTED:
        assert max_errors is not None
        assert len(own) >= max_errors
        assert not any(isinstance(r.error, ItemCancelledError) for r in seen)
    elif result.status is RunStatus.CANCELLED:
        assert token.stopped
        assert not any(isinstance(r.error, ItemAbortedError) for r in seen)
    else:
        assert result.status is RunStatus.COMPLETED
        assert not closed
        assert sorted(called) == list(range(n))
        assert max_errors is None or len(own) <= max_errors
    if max_errors is not None and sum(kind == FAILING for kind in kinds) < max_errors:
        assert result.status is not RunStatus.ABORTED
    if stop_after is None or stop_after > n:
        assert result.status is not RunStatus.CANCELLED
    # nothing runs after the call returned
    assert calls.snapshot() == called
