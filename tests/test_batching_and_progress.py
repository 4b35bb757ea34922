"""``batch_size`` bounds how far input is read ahead of completion; ``on_progress`` reports
each finished item once with the right totals."""

from __future__ import annotations

import contextlib
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from pyarallel import Retry, parallel_iter, parallel_map, parallel_starmap


class Instrumented:
    """An input source that records, at every pull, how many items were pulled minus how
    many calls of the work function have completed."""

    def __init__(self, count: int, *, sized: bool = False) -> None:
        self.count = count
        self.sized = sized
        self.pulled = 0
        self.completed = 0
        self.ahead: list[int] = []
        self._lock = threading.Lock()

    def generator(self) -> Iterator[int]:
        for value in range(self.count):
            with self._lock:
                self.pulled += 1
                self.ahead.append(self.pulled - self.completed)
            yield value

    def work(self, delay: float = 0.0, fail_every: int = 0) -> object:
        def fn(value: int) -> int:
            try:
                if delay:
                    time.sleep(delay)
                if fail_every and value % fail_every == 0:
                    raise ValueError(value)
                return value * 10
            finally:
                with self._lock:
                    self.completed += 1

        return fn


class SizedSource:
    """A sized iterable whose iteration is instrumented."""

    def __init__(self, source: Instrumented) -> None:
        self.source = source

    def __len__(self) -> int:
        return self.source.count

    def __iter__(self) -> Iterator[int]:
        return self.source.generator()


# -- batch_size: the input window -------------------------------------------------------


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 1), (2, 3), (8, 3), (4, 10), (3, 2)])
def test_batch_size_bounds_items_taken_ahead_of_completion(workers: int, batch_size: int) -> None:
    source = Instrumented(40)
    result = parallel_map(
        source.work(delay=0.002), source.generator(), workers=workers, batch_size=batch_size
    )
    assert result.values() == [v * 10 for v in range(40)]
    assert source.pulled == 40
    assert len(source.ahead) == 40
    assert max(source.ahead) <= batch_size
    # the window is really used when there are enough workers (not one item at a time)
    if workers >= batch_size > 1:
        assert max(source.ahead) >= 2


def test_batch_size_window_applies_to_sized_input_too() -> None:
    source = Instrumented(30)
    result = parallel_map(source.work(delay=0.002), SizedSource(source), workers=8, batch_size=3)
    assert result.values() == [v * 10 for v in range(30)]
    assert max(source.ahead) <= 3


def test_batch_size_window_holds_with_retries_and_failures() -> None:
    source = Instrumented(30)
    attempts: dict[int, int] = {}

    def fn(value: int) -> int:
        with source._lock:
            attempts[value] = attempts.get(value, 0) + 1
            attempt = attempts[value]
        final = attempt == 2 or value % 4 == 1
        try:
            time.sleep(0.001)
            if value % 4 != 1:
                raise ValueError(value, attempt)  # every item but 1, 5, 9... fails its attempts
            return value
        finally:
            if final:  # only an item's last attempt completes it
                with source._lock:
                    source.completed += 1

    result = parallel_map(
        fn, source.generator(), workers=6, batch_size=4, retry=Retry(attempts=2, backoff=0.005)
    )
    assert [i for i, _ in result.successes()] == list(range(1, 30, 4))
    assert all(attempts[v] == (1 if v % 4 == 1 else 2) for v in range(30))
    # an item waiting out its backoff is still unfinished: it keeps its place in the window
    assert max(source.ahead) <= 4


@pytest.mark.parametrize(("workers", "batch_size"), [(2, 3), (8, 2)])
def test_parallel_iter_batch_size_bounds_read_ahead(workers: int, batch_size: int) -> None:
    source = Instrumented(50)
    results = list(
        parallel_iter(source.work(delay=0.001), source.generator(), workers=workers, batch_size=batch_size)
    )
    assert sorted(r.index for r in results) == list(range(50))
    assert all(r.value == r.index * 10 for r in results)
    assert max(source.ahead) <= batch_size


def test_unsized_generator_is_consumed_lazily_with_batch_size() -> None:
    source = Instrumented(100)
    pulled_at_call: list[int] = []
    lock = threading.Lock()

    def fn(value: int) -> int:
        with lock:
            pulled_at_call.append(source.pulled)
        with source._lock:
            source.completed += 1
        return value

    result = parallel_map(fn, source.generator(), workers=2, batch_size=5)
    assert result.values() == list(range(100))
    # when the first item ran, at most one batch had been read, not the whole input
    assert pulled_at_call[0] <= 5
    assert max(source.ahead) <= 5


def test_parallel_iter_reads_lazily_and_stops_reading_when_closed() -> None:
    source = Instrumented(10_000)
    with contextlib.closing(parallel_iter(lambda v: v, source.generator(), workers=2, batch_size=8)) as it:
        first = next(it)
        assert first.ok
        assert source.pulled <= 8
    assert source.pulled < 10_000
    # a closed stream yields nothing more
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.timeout(60)
def test_ten_million_item_generator_streams_in_constant_memory() -> None:
    total = 10_000_000
    consume = 50_000
    batch_size = 256
    state = {"pulled": 0}

    def huge() -> Iterator[int]:
        for value in range(total):
            state["pulled"] += 1
            yield value

    received = 0
    highest_index = -1
    tracemalloc.start()
    try:
        with contextlib.closing(
            parallel_iter(lambda v: v + 1, huge(), workers=4, batch_size=batch_size)
        ) as it:
            for result in it:
                assert result.value == result.index + 1
                highest_index = max(highest_index, result.index)
                received += 1
                if received >= consume:
                    break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == consume
    # only a window ahead of what was consumed was read, never the whole generator
    assert consume <= state["pulled"] <= consume + batch_size
    # results are the first items (completion order reorders them within the window only)
    assert consume - 1 <= highest_index < consume + batch_size
    assert peak < 3 * 1024 * 1024, f"peak traced memory {peak} bytes"


SLOW_ITEM_CASES = [  # (index of the slow item, batch_size, sized input)
    pytest.param(0, None, False, id="first-item-unsized"),
    pytest.param(0, 3, False, id="first-item-batch3"),
    pytest.param(0, None, True, id="first-item-list"),
    pytest.param(60, None, False, id="later-item-unsized"),
    pytest.param(60, 8, False, id="later-item-batch8"),
    pytest.param(60, None, True, id="later-item-list"),
]


class Release:
    """An Event for the slow item, with a watchdog that sets it after ``patience`` seconds
    (so a stalled run fails instead of hanging) and remembers that it had to."""

    def __init__(self, patience: float = 2.0) -> None:
        self.event = threading.Event()
        self.by_watchdog = False
        self._guard = threading.Thread(target=self._watch, args=(patience,), daemon=True)
        self._guard.start()

    def _watch(self, patience: float) -> None:
        if not self.event.wait(patience):
            self.by_watchdog = True
            self.event.set()

    def set(self) -> None:
        self.event.set()
        self._guard.join(5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("slow", "batch_size", "sized"), SLOW_ITEM_CASES)
def test_one_slow_item_does_not_stall_the_rest_of_a_stream(
    slow: int, batch_size: int | None, sized: bool
) -> None:
    n = 150
    release = Release()

    def fn(value: int) -> int:
        if value == slow:
            release.event.wait(15)
        return value

    order: list[int] = []
    try:
        items = list(range(n)) if sized else iter(range(n))
        for result in parallel_iter(fn, items, workers=2, batch_size=batch_size):
            order.append(result.index)
            if len(order) == n - 1:
                # every other item was reported while the slow one is still blocked
                assert slow not in order
                release.set()
    finally:
        release.set()
    assert not release.by_watchdog, f"only {order.index(slow)} other items completed while one blocked"
    assert order[-1] == slow
    assert sorted(order) == list(range(n))


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("slow", "batch_size", "sized"), SLOW_ITEM_CASES)
def test_one_slow_item_does_not_stall_parallel_map(slow: int, batch_size: int | None, sized: bool) -> None:
    n = 150
    release = Release()
    progress: list[int] = []

    def fn(value: int) -> int:
        if value == slow:
            release.event.wait(15)
        return value

    def on_progress(done: int, total: int) -> None:
        progress.append(done)
        if done == n - 1:
            release.set()  # every other item has been reported complete

    try:
        items = list(range(n)) if sized else (v for v in range(n))
        result = parallel_map(fn, items, workers=2, batch_size=batch_size, on_progress=on_progress)
    finally:
        release.set()
    assert not release.by_watchdog, f"only {len(progress)} items completed while one blocked"
    assert result.values() == list(range(n))
    assert progress == list(range(1, n + 1))


@pytest.mark.timeout(30)
def test_blocked_first_item_with_small_window_lets_all_others_run() -> None:
    n = 25
    others_done = threading.Event()
    lock = threading.Lock()
    finished: list[int] = []
    saw_all_others: list[bool] = []

    def fn(value: int) -> int:
        if value == 0:
            # blocks until every other item has run (or gives up after 10 s)
            saw_all_others.append(others_done.wait(10))
            return value
        with lock:
            finished.append(value)
            if len(finished) == n - 1:
                others_done.set()
        return value

    result = parallel_map(fn, (v for v in range(n)), workers=2, batch_size=4)
    assert result.values() == list(range(n))
    assert saw_all_others == [True]


# -- on_progress ------------------------------------------------------------------------


def test_progress_sized_input_reports_every_item_once_with_final_total() -> None:
    calls: list[tuple[int, int]] = []
    result = parallel_map(
        lambda v: v, list(range(20)), workers=4, on_progress=lambda d, t: calls.append((d, t))
    )
    assert result.values() == list(range(20))
    assert [d for d, _ in calls] == list(range(1, 21))
    assert {t for _, t in calls} == {20}


def test_progress_is_called_from_the_calling_thread_once_per_item_despite_retries() -> None:
    caller = threading.get_ident()
    calls: list[tuple[int, int, int]] = []
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(v: int) -> int:
        with lock:
            attempts[v] = attempts.get(v, 0) + 1
            if attempts[v] == 1 and v % 2:
                raise RuntimeError(v)
        return v

    result = parallel_map(
        flaky,
        range(10),
        workers=3,
        retry=Retry(attempts=2, backoff=0),
        on_progress=lambda d, t: calls.append((d, t, threading.get_ident())),
    )
    assert result.values() == list(range(10))
    assert sum(attempts.values()) == 15
    assert [d for d, _, _ in calls] == list(range(1, 11))
    assert all(t == 10 for _, t, _ in calls)
    assert all(thread == caller for _, _, thread in calls)


def test_progress_counts_failures_too() -> None:
    calls: list[tuple[int, int]] = []

    def fn(v: int) -> int:
        if v % 3 == 0:
            raise ValueError(v)
        return v

    result = parallel_map(fn, range(12), workers=3, on_progress=lambda d, t: calls.append((d, t)))
    assert len(result.failures()) == 4
    assert calls == [(d, 12) for d in range(1, 13)]


def test_progress_starmap_sized() -> None:
    calls: list[tuple[int, int]] = []
    result = parallel_starmap(
        lambda a, b: a + b,
        [(i, i) for i in range(7)],
        workers=2,
        on_progress=lambda d, t: calls.append((d, t)),
    )
    assert result.values() == [2 * i for i in range(7)]
    assert calls == [(d, 7) for d in range(1, 8)]


@pytest.mark.parametrize(("workers", "batch_size"), [(2, 4), (4, 1), (3, 7)])
def test_progress_unsized_with_batch_size_reports_items_seen_so_far(workers: int, batch_size: int) -> None:
    source = Instrumented(30)
    calls: list[tuple[int, int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total, source.pulled))

    result = parallel_map(
        source.work(delay=0.001),
        source.generator(),
        workers=workers,
        batch_size=batch_size,
        on_progress=progress,
    )
    assert result.values() == [v * 10 for v in range(30)]
    assert [d for d, _, _ in calls] == list(range(1, 31))
    for done, total, pulled in calls:
        assert total == pulled  # the number of items taken from the input so far
        assert done <= total <= done + batch_size
    totals = [t for _, t, _ in calls]
    assert totals == sorted(totals)
    assert totals[-1] == 30
    # lazily read: the first report did not see the whole input
    assert totals[0] < 30


def test_progress_unsized_without_batch_size_reads_input_fully_first() -> None:
    source = Instrumented(25)
    pulled_at_first_call: list[int] = []
    calls: list[tuple[int, int]] = []

    def fn(v: int) -> int:
        if not pulled_at_first_call:
            pulled_at_first_call.append(source.pulled)
        return v

    result = parallel_map(fn, source.generator(), workers=1, on_progress=lambda d, t: calls.append((d, t)))
    assert result.values() == list(range(25))
    assert pulled_at_first_call == [25]
    assert calls == [(d, 25) for d in range(1, 26)]
