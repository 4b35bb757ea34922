"""The async API: async_parallel_map / starmap / iter and @async_parallel.

Covers results and ordering, exact concurrency, lazy reading of sync and async inputs
(batch_size included), option validation before any work starts, the decorator (methods,
static and class methods, per-call overrides), running under asyncio.run, inside a loop
running in another thread and in two loops at once, observer hooks, and the example.

Every test is a plain function driving its own event loop with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import math
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyarallel
from pyarallel import (
    AsyncParallelFunction,
    ItemResult,
    ParallelResult,
    RateLimit,
    Retry,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    async_parallel_starmap,
)

REPO = Path(__file__).resolve().parents[1]
# How long a rendezvous waits for the expected concurrency before giving up. Reaching it
# takes a few event-loop iterations (well under a millisecond), so this is a huge margin;
# giving up only marks the probe (``gate_missed``) and lets the items finish.
GATE_TIMEOUT = 3.0


class Boom(Exception):
    """Raised by work items that are meant to fail."""


# -- instrumentation -----------------------------------------------------------------------


class Probe:
    """Instruments a run: how often the input was pulled, how many work items run at once
    and how many finished.

    ``work`` is the async function under test. The first ``gate_at`` calls rendezvous: none
    of them finishes until ``gate_at`` of them are running at the same time (if the run never
    reaches that concurrency, ``gate_missed`` is set after ``GATE_TIMEOUT`` and every item
    goes on). ``max_active`` is the
    most calls ever running at once; ``max_ahead`` the most items ever taken from the input
    and not finished yet (measured at each pull, against completions counted inside the
    work function, so it can only over-estimate what the library holds).
    """

    def __init__(self, gate_at: int) -> None:
        self.gate_at = gate_at
        self.pulls = 0
        self.completed = 0
        self.active = 0
        self.max_active = 0
        self.max_ahead = 0
        self.started: list[Any] = []
        self.full = asyncio.Event()
        self.gate_missed = False

    def pulled(self) -> None:
        self.pulls += 1
        self.max_ahead = max(self.max_ahead, self.pulls - self.completed)

    async def work(self, x: Any) -> Any:
        self.started.append(x)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        if self.active >= self.gate_at:
            self.full.set()
        try:
            try:
                await asyncio.wait_for(self.full.wait(), GATE_TIMEOUT)
            except TimeoutError:
                self.gate_missed = True
                self.full.set()
            await asyncio.sleep(0.001)  # keep later items overlapping a little
        finally:
            self.active -= 1
        self.completed += 1
        return x * 10

    async def work_star(self, a: Any, b: Any) -> Any:
        return await self.work(a) + b

    # -- inputs --------------------------------------------------------------------------

    def sync_source(self, n: int | None) -> Iterator[int]:
        for i in itertools.count() if n is None else range(n):
            self.pulled()
            yield i

    async def async_source(self, n: int | None) -> AsyncIterator[int]:
        for i in itertools.count() if n is None else range(n):
            await asyncio.sleep(0)
            self.pulled()
            yield i

    def cursor(self, n: int | None, page_size: int = 3) -> PagedCursor:
        return PagedCursor(self, n, page_size)

    def source(self, kind: str, n: int | None) -> Any:
        if kind == "sync":
            return self.sync_source(n)
        if kind == "agen":
            return self.async_source(n)
        return self.cursor(n)


class PagedCursor:
    """A paginated async cursor (``__aiter__``/``__anext__``, no ``__len__``) that fetches
    pages of ``page_size`` rows on demand; each row handed out counts as one pull."""

    def __init__(self, probe: Probe, n: int | None, page_size: int) -> None:
        self.probe = probe
        self.n = n
        self.page_size = page_size
        self.next_row = 0
        self.page: list[int] = []
        self.pages_fetched = 0

    def __aiter__(self) -> PagedCursor:
        return self

    async def __anext__(self) -> int:
        if not self.page:
            if self.n is not None and self.next_row >= self.n:
                raise StopAsyncIteration
            await asyncio.sleep(0)  # the "network" round trip of a page
            end = self.next_row + self.page_size
            if self.n is not None:
                end = min(end, self.n)
            self.page = list(range(self.next_row, end))
            self.next_row = end
            self.pages_fetched += 1
        self.probe.pulled()
        return self.page.pop(0)


SOURCE_KINDS = ["sync", "agen", "cursor"]

# -- basic results -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_map_returns_parallel_result_in_input_order() -> None:
    async def slow_square(x: int) -> int:
        await asyncio.sleep(0.002 * ((7 * x) % 5))  # finish out of order
        return x * x

    async def main() -> ParallelResult[int]:
        return await async_parallel_map(slow_square, range(20), concurrency=6)

    result = asyncio.run(main())
    assert isinstance(result, ParallelResult)
    assert result.ok
    assert result == [x * x for x in range(20)]
    assert len(result) == 20


@pytest.mark.timeout(30)
def test_map_of_empty_input_is_empty_and_ok() -> None:
    async def never(x: int) -> int:
        raise AssertionError("must not be called")

    async def main() -> tuple[ParallelResult[int], ParallelResult[int]]:
        async def empty() -> AsyncIterator[int]:
            return
            yield  # pragma: no cover

        return await async_parallel_map(never, []), await async_parallel_map(never, empty())

    for result in asyncio.run(main()):
        assert result.ok
        assert len(result) == 0
        assert result == []


@pytest.mark.timeout(30)
def test_map_records_failures_by_index_and_keeps_successes() -> None:
    async def maybe_fail(x: int) -> int:
        await asyncio.sleep(0)
        if x % 3 == 0:
            raise Boom(x)
        return x + 100

    result = asyncio.run(async_parallel_map(maybe_fail, range(10), concurrency=3))
    assert not result.ok
    assert [i for i, _ in result.failures()] == [0, 3, 6, 9]
    assert all(isinstance(e, Boom) and e.args == (i,) for i, e in result.failures())
    assert result.successes() == [(i, i + 100) for i in range(10) if i % 3]
    with pytest.raises(ExceptionGroup, match="4 of 10 items failed"):
        result.values()


@pytest.mark.timeout(30)
def test_starmap_unpacks_each_item_sync_and_async_input() -> None:
    async def add(a: int, b: int, c: int = 0) -> int:
        await asyncio.sleep(0.001 * (a % 3))
        return a + b + c

    async def rows() -> AsyncIterator[tuple[int, ...]]:
        for i in range(6):
            yield (i, 10 * i) if i % 2 else (i, 10 * i, 1000)

    async def main() -> tuple[ParallelResult[int], ParallelResult[int]]:
        first = await async_parallel_starmap(add, [(1, 2), (3, 4), (5, 6, 7)], concurrency=2)
        second = await async_parallel_starmap(add, rows(), concurrency=3)
        return first, second

    first, second = asyncio.run(main())
    assert first == [3, 7, 18]
    assert second == [1000, 11, 1022, 33, 1044, 55]


@pytest.mark.timeout(30)
def test_iter_yields_item_results_in_completion_order() -> None:
    release: dict[int, asyncio.Event] = {}

    async def held(x: int) -> int:
        await release[x].wait()
        if x == 1:
            raise Boom(x)
        return -x

    async def main() -> list[ItemResult[int]]:
        for i in range(4):
            release[i] = asyncio.Event()
        seen: list[ItemResult[int]] = []
        order = [2, 0, 3, 1]  # release the items in this order, one at a time
        async with contextlib.aclosing(async_parallel_iter(held, range(4), concurrency=4)) as results:
            release[order[0]].set()
            async for result in results:
                seen.append(result)
                if len(seen) < 4:
                    release[order[len(seen)]].set()
        return seen

    seen = asyncio.run(main())
    assert [r.index for r in seen] == [2, 0, 3, 1]
    assert all(isinstance(r, ItemResult) for r in seen)
    assert [(r.ok, r.value) for r in seen] == [(True, -2), (True, 0), (True, -3), (False, None)]
    assert isinstance(seen[3].error, Boom)
    assert seen[3].error.args == (1,)


@pytest.mark.timeout(30)
def test_map_accepts_partials_and_async_callable_objects() -> None:
    async def scale(factor: int, x: int) -> int:
        await asyncio.sleep(0)
        return factor * x

    class Offset:
        def __init__(self, by: int) -> None:
            self.by = by

        async def __call__(self, x: int) -> int:
            await asyncio.sleep(0)
            return x + self.by

    async def main() -> tuple[ParallelResult[int], ParallelResult[int]]:
        return (
            await async_parallel_map(functools.partial(scale, 3), range(4)),
            await async_parallel_map(Offset(5), range(4)),
        )

    tripled, offset = asyncio.run(main())
    assert tripled == [0, 3, 6, 9]
    assert offset == [5, 6, 7, 8]


@pytest.mark.timeout(30)
def test_on_progress_reports_done_and_total() -> None:
    async def ident(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def unsized() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    sized_calls: list[tuple[int, int]] = []
    unsized_calls: list[tuple[int, int]] = []

    async def main() -> None:
        await async_parallel_map(ident, range(5), on_progress=lambda d, t: sized_calls.append((d, t)))
        await async_parallel_map(
            ident, unsized(), concurrency=2, on_progress=lambda d, t: unsized_calls.append((d, t))
        )

    asyncio.run(main())
    assert sized_calls == [(d, 5) for d in range(1, 6)]
    assert [d for d, _ in unsized_calls] == [1, 2, 3, 4, 5]
    # unsized input: the total is the number of items taken so far, never below done
    assert all(d <= t <= 5 for d, t in unsized_calls)
    assert unsized_calls[-1] == (5, 5)


# -- concurrency -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("concurrency", "rate_limit"),
    [
        (1, None),
        (3, None),
        (7, None),
        (1, 2000),
        (3, 2000),
        (7, 2000),
    ],
)
def test_map_runs_exactly_concurrency_coroutines_at_once(concurrency: int, rate_limit: float | None) -> None:
    async def main() -> tuple[Probe, ParallelResult[int]]:
        probe = Probe(gate_at=concurrency)
        result = await async_parallel_map(
            probe.work, range(4 * concurrency), concurrency=concurrency, rate_limit=rate_limit
        )
        return probe, result

    probe, result = asyncio.run(main())
    assert result.ok, result.failures()
    assert result == [10 * i for i in range(4 * concurrency)]
    assert not probe.gate_missed
    assert probe.max_active == concurrency


@pytest.mark.timeout(60)
def test_starmap_and_iter_respect_concurrency_exactly() -> None:
    async def main() -> tuple[Probe, ParallelResult[int], Probe, list[ItemResult[int]]]:
        star_probe = Probe(gate_at=3)
        star = await async_parallel_starmap(star_probe.work_star, [(i, 1) for i in range(10)], concurrency=3)
        iter_probe = Probe(gate_at=5)
        streamed = [r async for r in async_parallel_iter(iter_probe.work, range(15), concurrency=5)]
        return star_probe, star, iter_probe, streamed

    star_probe, star, iter_probe, streamed = asyncio.run(main())
    assert star == [10 * i + 1 for i in range(10)]
    assert star_probe.max_active == 3
    assert all(r.ok for r in streamed)
    assert sorted(r.index for r in streamed) == list(range(15))
    assert iter_probe.max_active == 5


@pytest.mark.timeout(30)
def test_default_concurrency_is_four() -> None:
    async def main() -> tuple[Probe, ParallelResult[int]]:
        probe = Probe(gate_at=4)
        return probe, await async_parallel_map(probe.work, range(12))

    probe, result = asyncio.run(main())
    assert result.ok
    assert probe.max_active == 4


# -- lazy input --------------------------------------------------------------------------------


WINDOWS = [(4, None), (6, 2), (2, 5)]  # (concurrency, batch_size)
# the same windows, marked where the bound is concurrency (not a smaller batch_size)
CONCURRENCY_BOUND_WINDOWS = [
    (4, None),
    (6, 2),
    (2, 5),
]


def _window(concurrency: int, batch_size: int | None) -> int:
    return concurrency if batch_size is None else min(batch_size, concurrency)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("kind", "concurrency", "batch_size"),
    [(kind, concurrency, batch_size) for kind in SOURCE_KINDS for concurrency, batch_size in WINDOWS],
)
def test_input_is_never_taken_further_ahead_than_the_window(
    kind: str, concurrency: int, batch_size: int | None
) -> None:
    """Items are taken no further ahead of completed work than ``batch_size`` when given,
    else ``concurrency``."""
    n = 25

    async def main() -> tuple[Probe, ParallelResult[int]]:
        probe = Probe(gate_at=1)
        result = await async_parallel_map(
            probe.work, probe.source(kind, n), concurrency=concurrency, batch_size=batch_size
        )
        return probe, result

    probe, result = asyncio.run(main())
    assert result.ok, result.failures()
    assert result == [10 * i for i in range(n)]
    assert probe.pulls == n
    assert 1 <= probe.max_ahead <= _window(concurrency, batch_size)
    assert probe.max_active <= _window(concurrency, batch_size)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("concurrency", "batch_size"), CONCURRENCY_BOUND_WINDOWS)
def test_sync_input_window_is_used_in_full(concurrency: int, batch_size: int | None) -> None:
    """With a sync input the whole window is used: exactly that many items are taken
    ahead and run at once."""
    bound = _window(concurrency, batch_size)

    async def main() -> tuple[Probe, ParallelResult[int]]:
        probe = Probe(gate_at=bound)
        result = await async_parallel_map(
            probe.work, probe.sync_source(25), concurrency=concurrency, batch_size=batch_size
        )
        return probe, result

    probe, result = asyncio.run(main())
    assert result.ok, result.failures()
    assert not probe.gate_missed
    assert probe.max_active == bound
    assert probe.max_ahead == bound


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["agen", "cursor"])
def test_async_input_runs_concurrency_coroutines_at_once(kind: str) -> None:
    async def main() -> tuple[Probe, ParallelResult[int]]:
        probe = Probe(gate_at=4)
        result = await async_parallel_map(probe.work, probe.source(kind, 12), concurrency=4)
        return probe, result

    probe, result = asyncio.run(main())
    assert result == [10 * i for i in range(12)]
    assert not probe.gate_missed
    assert probe.max_active == 4
    assert probe.max_ahead == 4


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_first_item_starts_before_the_input_is_drained(kind: str) -> None:
    """The input is not read into a list first: the first coroutine runs while most of
    the input has not been pulled yet."""
    pulls_at_first_start: list[int] = []

    async def main() -> tuple[Probe, ParallelResult[int]]:
        probe = Probe(gate_at=1)

        async def work(x: int) -> int:
            if not pulls_at_first_start:
                pulls_at_first_start.append(probe.pulls)
            return await probe.work(x)

        return probe, await async_parallel_map(work, probe.source(kind, 200), concurrency=3)

    probe, result = asyncio.run(main())
    assert result.ok
    assert probe.pulls == 200
    assert pulls_at_first_start[0] < 20  # the exact bound is checked by the window tests


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_infinite_input_with_iter_and_break_is_not_drained(kind: str) -> None:
    async def main() -> tuple[Probe, int, int]:
        probe = Probe(gate_at=1)
        taken = 0
        async with contextlib.aclosing(async_parallel_iter(probe.work, probe.source(kind, None))) as results:
            async for result in results:
                assert result.ok
                taken += 1
                if taken == 10:
                    break
        pulls_at_close = probe.pulls
        for _ in range(20):
            await asyncio.sleep(0)
        return probe, taken, pulls_at_close

    probe, taken, pulls_at_close = asyncio.run(main())
    assert taken == 10
    assert probe.pulls == pulls_at_close  # never pulled after the stream was closed
    # at most: the results consumed, the results finished with them but not handed out yet,
    # and one window (concurrency 4) of items in flight
    assert probe.pulls <= taken + 2 * 4


# -- validation ------------------------------------------------------------------------------

NAN = math.nan

BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"concurrency": 0}, ValueError, r"concurrency.*\b0\b"),
    ({"concurrency": -1}, ValueError, r"concurrency.*-1"),
    ({"concurrency": 2.5}, TypeError, r"concurrency.*2\.5"),
    ({"concurrency": "4"}, TypeError, r"concurrency.*'4'"),
    ({"concurrency": None}, TypeError, r"concurrency.*None"),
    ({"concurrency": True}, TypeError, r"concurrency.*True"),
    ({"timeout": -1}, ValueError, r"timeout.*-1"),
    ({"timeout": NAN}, ValueError, r"timeout.*nan"),
    ({"timeout": "5"}, TypeError, r"timeout.*'5'"),
    ({"task_timeout": -0.5}, ValueError, r"task_timeout.*-0\.5"),
    ({"task_timeout": NAN}, ValueError, r"task_timeout.*nan"),
    ({"task_timeout": 0}, ValueError, r"task_timeout.*\b0\b"),
    ({"task_timeout": 0.0}, ValueError, r"task_timeout.*\b0"),
    ({"task_timeout": True}, TypeError, r"task_timeout.*True"),
    ({"rate_limit": 0}, ValueError, r"rate_limit.*\b0\b"),
    ({"rate_limit": -3}, ValueError, r"rate_limit.*-3"),
    ({"rate_limit": NAN}, ValueError, r"rate_limit.*nan"),
    ({"rate_limit": math.inf}, ValueError, r"rate_limit.*inf"),
    ({"rate_limit": "fast"}, TypeError, r"rate_limit.*'fast'"),
    ({"rate_limit": True}, TypeError, r"rate_limit.*True"),
    ({"batch_size": 0}, ValueError, r"batch_size.*\b0\b"),
    ({"batch_size": -2}, ValueError, r"batch_size.*-2"),
    ({"batch_size": 1.5}, TypeError, r"batch_size.*1\.5"),
    ({"batch_size": "3"}, TypeError, r"batch_size.*'3'"),
    ({"retry": 3}, TypeError, r"retry.*\b3\b"),
    ({"on_progress": 42}, TypeError, r"on_progress.*42"),
]
STREAM_OPTIONS = {"concurrency", "rate_limit", "task_timeout", "batch_size", "retry"}


def _id(case: tuple[dict[str, Any], type[Exception], str]) -> str:
    ((name, value),) = case[0].items()
    return f"{name}={value!r}"


class PullCounter:
    def __init__(self) -> None:
        self.pulls = 0
        self.calls = 0

    def source(self) -> Iterator[int]:
        for i in range(5):
            self.pulls += 1
            yield i

    async def fn(self, x: int) -> int:
        self.calls += 1
        return x


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("options", "error", "message"), BAD_OPTIONS, ids=[_id(c) for c in BAD_OPTIONS])
def test_bad_options_raise_before_any_work(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    counter = PullCounter()

    async def star_fn(x: int) -> int:
        counter.calls += 1
        return x

    async def main() -> None:
        with pytest.raises(error, match=message):
            await async_parallel_map(counter.fn, counter.source(), **options)
        with pytest.raises(error, match=message):
            await async_parallel_starmap(star_fn, ((i,) for i in counter.source()), **options)
        if set(options) <= STREAM_OPTIONS:
            with pytest.raises(error, match=message):
                async_parallel_iter(counter.fn, counter.source(), **options)  # raises when called
        # the decorator validates its own options, and per-call overrides too
        with pytest.raises(error, match=message):
            async_parallel(**options)
        decorated = async_parallel(counter.fn)
        with pytest.raises(error, match=message):
            await decorated.map(counter.source(), **options)
        if set(options) <= STREAM_OPTIONS:
            with pytest.raises(error, match=message):
                decorated.stream(counter.source(), **options)

    asyncio.run(main())
    assert counter.pulls == 0
    assert counter.calls == 0


@pytest.mark.timeout(30)
def test_retry_with_fewer_than_one_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match=r"attempts.*\b0\b"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match=r"attempts.*-1"):
        Retry(attempts=-1)
    with pytest.raises(ValueError, match=r"RateLimit count.*\b0\b"):
        RateLimit(0)


def _plain(x: int) -> int:
    return x


NOT_ASYNC: list[tuple[str, Callable[..., Any] | object]] = [
    ("plain def", _plain),
    ("builtin", len),
    ("lambda returning a coroutine", lambda x: asyncio.sleep(0, x)),
    ("class", int),
    ("not callable", 42),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("label", "fn"), NOT_ASYNC, ids=[label for label, _ in NOT_ASYNC])
def test_non_async_fn_is_refused_before_the_input_is_pulled(label: str, fn: Any) -> None:
    counter = PullCounter()

    async def agen() -> AsyncIterator[int]:
        counter.pulls += 1
        yield 1

    async def main() -> None:
        with pytest.raises(TypeError, match=r"\bfn\b.*async"):
            await async_parallel_map(fn, counter.source())
        with pytest.raises(TypeError, match=r"\bfn\b.*async"):
            await async_parallel_map(fn, agen())
        with pytest.raises(TypeError, match=r"\bfn\b.*async"):
            await async_parallel_starmap(fn, ((i,) for i in counter.source()))
        with pytest.raises(TypeError, match=r"\bfn\b.*async"):
            async_parallel_iter(fn, counter.source())

    asyncio.run(main())
    assert counter.pulls == 0


@pytest.mark.timeout(30)
def test_iter_without_timeout_and_progress_options() -> None:
    async def ident(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="timeout"):
        async_parallel_iter(ident, [1], timeout=1.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="on_progress"):
        async_parallel_iter(ident, [1], on_progress=print)  # type: ignore[call-arg]


@pytest.mark.timeout(30)
def test_non_iterable_items_are_refused() -> None:
    async def ident(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"items.*42"):
        asyncio.run(async_parallel_map(ident, 42))  # type: ignore[arg-type]


# -- the decorator -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_decorated_function_still_works_as_itself() -> None:
    async def original(x: int, *, plus: int = 0) -> int:
        """Double x, then add plus."""
        await asyncio.sleep(0)
        return 2 * x + plus

    decorated = async_parallel(concurrency=3)(original)
    bare = async_parallel(original)
    for fn in (decorated, bare):
        assert isinstance(fn, AsyncParallelFunction)
        assert fn.__name__ == "original"
        assert fn.__qualname__ == original.__qualname__
        assert fn.__doc__ == "Double x, then add plus."
        assert fn.__module__ == __name__
        assert fn.__wrapped__ is original
        assert inspect.signature(fn) == inspect.signature(original)
        coroutine = fn(5, plus=1)
        assert inspect.iscoroutine(coroutine)
        assert asyncio.run(coroutine) == 11


@pytest.mark.timeout(30)
def test_decorator_map_starmap_stream() -> None:
    @async_parallel(concurrency=3)
    async def mul(a: int, b: int = 2) -> int:
        await asyncio.sleep(0.001 * (a % 2))
        return a * b

    async def main() -> tuple[ParallelResult[int], ParallelResult[int], list[ItemResult[int]]]:
        mapped = await mul.map(range(5))
        starred = await mul.starmap([(1, 5), (2, 6), (3, 7)])
        async with contextlib.aclosing(mul.stream(range(6))) as results:
            streamed = [r async for r in results]
        return mapped, starred, streamed

    mapped, starred, streamed = asyncio.run(main())
    assert mapped == [0, 2, 4, 6, 8]
    assert starred == [5, 12, 21]
    assert sorted((r.index, r.value) for r in streamed) == [(i, 2 * i) for i in range(6)]


@pytest.mark.timeout(60)
def test_decorator_concurrency_default_and_per_call_override_take_effect() -> None:
    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        probe = Probe(gate_at=2)
        fn = async_parallel(concurrency=2)(probe.work)
        out["default"] = (await fn.map(range(8)), probe.max_active)

        probe = Probe(gate_at=5)
        fn = async_parallel(concurrency=2)(probe.work)
        out["override"] = (await fn.map(range(15), concurrency=5), probe.max_active)

        probe = Probe(gate_at=4)
        fn = async_parallel(concurrency=2)(probe.work)
        streamed = [r async for r in fn.stream(range(12), concurrency=4)]
        out["stream"] = (streamed, probe.max_active)

        probe = Probe(gate_at=3)
        fn = async_parallel(concurrency=3)(probe.work_star)
        out["starmap"] = (await fn.starmap([(i, 0) for i in range(6)]), probe.max_active)
        return out

    out = asyncio.run(main())
    result, active = out["default"]
    assert result == [10 * i for i in range(8)]
    assert active == 2
    result, active = out["override"]
    assert result.ok
    assert active == 5
    streamed, active = out["stream"]
    assert all(r.ok for r in streamed)
    assert active == 4
    result, active = out["starmap"]
    assert result == [10 * i for i in range(6)]
    assert active == 3


@pytest.mark.timeout(60)
def test_decorator_per_call_overrides_of_other_options_take_effect() -> None:
    async def hang(x: int) -> int:
        if x == 1:
            await asyncio.Event().wait()
        return x

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        probe = Probe(gate_at=2)
        fn = async_parallel(concurrency=8)(probe.work)
        out["batch"] = (await fn.map(probe.sync_source(10), batch_size=2), probe.max_ahead)

        probe = Probe(gate_at=2)
        fn = async_parallel(concurrency=8, rate_limit=RateLimit(1, "hour"))(probe.work)
        out["rate_limit"] = await fn.map(range(6), rate_limit=5000, concurrency=2)

        fn = async_parallel(concurrency=4, timeout=60)(hang)
        out["timeout"] = await fn.map(range(3), timeout=0.3)
        fn = async_parallel(concurrency=4, task_timeout=60)(hang)
        out["task_timeout"] = await fn.map(range(3), task_timeout=0.2)
        out["stream_task_timeout"] = [r async for r in fn.stream(range(3), task_timeout=0.2)]
        fn = async_parallel(retry=Retry(attempts=1))(_fails_first_attempt_of(set()))
        out["retry"] = await fn.map(range(3), retry=Retry(attempts=2, backoff=0))
        return out

    out = asyncio.run(main())
    result, ahead = out["batch"]
    assert result.ok
    assert ahead == 2
    assert out["rate_limit"] == [10 * i for i in range(6)]  # one call per hour would time the test out
    assert [(i, type(e)) for i, e in out["timeout"].failures()] == [(1, pyarallel.ItemTimeoutError)]
    assert out["timeout"].successes() == [(0, 0), (2, 2)]
    assert [(i, type(e)) for i, e in out["task_timeout"].failures()] == [(1, pyarallel.TaskTimeoutError)]
    failed = [r for r in out["stream_task_timeout"] if not r.ok]
    assert [(r.index, type(r.error)) for r in failed] == [(1, pyarallel.TaskTimeoutError)]
    assert out["retry"] == [0, 1, 2]


def _fails_first_attempt_of(seen: set[int]) -> Callable[[int], Any]:
    async def fails_first_attempt(x: int) -> int:
        if x not in seen:
            seen.add(x)
            raise Boom(x)
        return x

    return fails_first_attempt


@pytest.mark.timeout(30)
def test_decorator_refuses_bad_overrides() -> None:
    @async_parallel
    async def ident(x: int) -> int:
        return x

    async def main() -> None:
        with pytest.raises(TypeError, match="concurrency"):
            await ident.map([1], workers=2)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="executor"):
            await ident.map([1], executor="thread")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="timeout"):
            ident.stream([1], timeout=1.0)
        with pytest.raises(TypeError, match="on_progress"):
            ident.stream([1], on_progress=print)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_decorating_a_non_async_function_fails_at_decoration_time() -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="async"):
        async_parallel(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async"):
        async_parallel(concurrency=2)(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async"):
        async_parallel(lambda x: asyncio.sleep(0, x))
    with pytest.raises(TypeError, match="async"):

        class Broken:
            @async_parallel
            @classmethod
            def build(cls, x: int) -> int:
                return x


class Service:
    """A class using the decorator on an instance method, a static method and a class method."""

    factor = 3

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.seen: list[int] = []

    @async_parallel(concurrency=2)
    async def process(self, item: int) -> int:
        """Process one item."""
        await asyncio.sleep(0.001)
        self.seen.append(item)
        return item + self.offset

    @staticmethod
    @async_parallel(concurrency=3)
    async def compute(x: int) -> int:
        await asyncio.sleep(0)
        return x**2

    @async_parallel(concurrency=2)
    @classmethod
    async def scaled(cls, x: int, extra: int = 0) -> int:
        """Scale by the class factor."""
        await asyncio.sleep(0)
        return cls.factor * x + extra


class SubService(Service):
    factor = 10


@pytest.mark.timeout(30)
def test_decorator_on_instance_method() -> None:
    async def main() -> dict[str, Any]:
        a, b = Service(100), Service(200)
        return {
            "direct": await a.process(1),
            "map_a": await a.process.map([1, 2, 3]),
            "map_b": await b.process.map([1, 2]),
            "starmap": await a.process.starmap([(5,), (6,)]),
            "stream": sorted([r.value async for r in b.process.stream([7, 8])]),
            "a_seen": sorted(a.seen),
            "b_seen": sorted(b.seen),
        }

    out = asyncio.run(main())
    assert out["direct"] == 101
    assert out["map_a"] == [101, 102, 103]
    assert out["map_b"] == [201, 202]
    assert out["starmap"] == [105, 106]
    assert out["stream"] == [207, 208]
    assert out["a_seen"] == [1, 1, 2, 3, 5, 6]
    assert out["b_seen"] == [1, 2, 7, 8]
    assert Service(0).process.__name__ == "process"
    assert Service(0).process.__doc__ == "Process one item."


@pytest.mark.timeout(30)
def test_decorator_under_staticmethod_and_over_classmethod() -> None:
    async def main() -> dict[str, Any]:
        return {
            "static_direct": await Service.compute(4),
            "static_map": await Service.compute.map([1, 2, 3]),
            "static_via_instance": await Service(0).compute.map([4]),
            "class_direct": await Service.scaled(2),
            "class_map": await Service.scaled.map([1, 2]),
            "class_starmap": await Service.scaled.starmap([(1, 1), (2, 2)]),
            "class_via_instance": await Service(0).scaled.map([3]),
            "subclass": await SubService.scaled.map([1, 2]),
            "class_stream": sorted([r.value async for r in SubService.scaled.stream([3])]),
        }

    out = asyncio.run(main())
    assert out["static_direct"] == 16
    assert out["static_map"] == [1, 4, 9]
    assert out["static_via_instance"] == [16]
    assert out["class_direct"] == 6
    assert out["class_map"] == [3, 6]
    assert out["class_starmap"] == [4, 8]
    assert out["class_via_instance"] == [9]
    assert out["subclass"] == [10, 20]
    assert out["class_stream"] == [30]
    assert Service.scaled.__name__ == "scaled"
    assert Service.scaled.__doc__ == "Scale by the class factor."


# -- event loops and threads -------------------------------------------------------------------


async def _paced_run(tag: str) -> ParallelResult[str]:
    """A run that exercises timers (rate limit, retry backoff, timeouts) on the current loop."""
    attempts: Counter[int] = Counter()

    async def flaky(x: int) -> str:
        attempts[x] += 1
        await asyncio.sleep(0.001)
        if attempts[x] == 1 and x % 2:
            raise Boom(x)
        return f"{tag}{x}"

    return await async_parallel_map(
        flaky,
        range(8),
        concurrency=3,
        rate_limit=200,
        retry=Retry(attempts=2, backoff=0.01),
        timeout=30,
        task_timeout=10,
    )


@pytest.mark.timeout(30)
def test_two_sequential_asyncio_runs_both_work() -> None:
    first = asyncio.run(_paced_run("a"))
    second = asyncio.run(_paced_run("b"))
    assert first == [f"a{i}" for i in range(8)]
    assert second == [f"b{i}" for i in range(8)]


@pytest.mark.timeout(30)
def test_works_inside_a_loop_already_running_in_another_thread() -> None:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run_loop() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())

    thread = threading.Thread(target=run_loop, name="background-loop", daemon=True)
    thread.start()
    try:
        assert ready.wait(10)

        async def inside() -> tuple[str, ParallelResult[str], list[int]]:
            assert asyncio.get_running_loop() is loop
            result = await _paced_run("t")
            stream = async_parallel_iter(_async_negate, range(5), concurrency=2)
            async with contextlib.aclosing(stream) as results:
                indexes = sorted([r.index async for r in results])
            return threading.current_thread().name, result, indexes

        name, result, indexes = asyncio.run_coroutine_threadsafe(inside(), loop).result(timeout=20)
        assert name == "background-loop"
        assert result == [f"t{i}" for i in range(8)]
        assert indexes == [0, 1, 2, 3, 4]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive()
        loop.close()


async def _async_negate(x: int) -> int:
    await asyncio.sleep(0)
    return -x


@pytest.mark.timeout(30)
def test_two_loops_in_two_threads_at_once() -> None:
    """Two runs in two event loops overlap in time (their first items meet at a barrier
    only both runs can reach) and both complete correctly."""
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    async def in_loop(tag: str) -> ParallelResult[str]:
        async def meet_then_work(x: int) -> str:
            if x == 0:
                await asyncio.to_thread(barrier.wait, 10)
            await asyncio.sleep(0.001)
            return f"{tag}{x}"

        return await async_parallel_map(
            meet_then_work, range(8), concurrency=2, rate_limit=100, retry=Retry(attempts=2)
        )

    def thread_main(tag: str) -> None:
        try:
            results[tag] = asyncio.run(in_loop(tag))
        except BaseException as error:  # surfaced by the assertions below
            results[tag] = error

    threads = [threading.Thread(target=thread_main, args=(tag,)) for tag in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads)
    assert results["x"] == [f"x{i}" for i in range(8)]
    assert results["y"] == [f"y{i}" for i in range(8)]


# -- properties: ordering and exactly-once ----------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
tiny_delays = st.sampled_from([0.0, 0.0, 0.0005, 0.001, 0.002])


@st.composite
def work_items(draw: st.DrawFn) -> list[tuple[object, float, bool]]:
    values = draw(st.lists(st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["a", ""])), max_size=25))
    return [(value, draw(tiny_delays), draw(st.booleans())) for value in values]


async def _work(item: tuple[object, float, bool]) -> object:
    value, delay, fail = item
    await asyncio.sleep(delay)
    if fail:
        raise Boom(item)
    return value


def _as_input(items: list[Any], kind: str) -> Any:
    if kind == "list":
        return items
    if kind == "sync":
        return iter(items)

    async def agen() -> AsyncIterator[Any]:
        for item in items:
            yield item

    return agen()


input_kinds = st.sampled_from(["list", "sync", "async"])


@pytest.mark.timeout(120)
@PROPERTY_SETTINGS
@given(
    items=work_items(),
    concurrency=st.integers(1, 8),
    batch_size=st.one_of(st.none(), st.integers(1, 6)),
    kind=input_kinds,
)
def test_property_map_keeps_input_order_every_index_once(
    items: list[tuple[object, float, bool]], concurrency: int, batch_size: int | None, kind: str
) -> None:
    result = asyncio.run(
        async_parallel_map(_work, _as_input(items, kind), concurrency=concurrency, batch_size=batch_size)
    )
    assert len(result) == len(items)
    succeeded = [i for i, _ in result.successes()]
    failed = [i for i, _ in result.failures()]
    assert sorted(succeeded + failed) == list(range(len(items)))
    assert failed == [i for i, (_, _, fail) in enumerate(items) if fail]
    assert result.successes() == [(i, v) for i, (v, _, fail) in enumerate(items) if not fail]
    for index, error in result.failures():
        assert isinstance(error, Boom)
        assert error.args == (items[index],)
    if result.ok:
        assert list(result) == [value for value, _, _ in items]


@pytest.mark.timeout(120)
@PROPERTY_SETTINGS
@given(
    items=work_items(),
    concurrency=st.integers(1, 8),
    batch_size=st.one_of(st.none(), st.integers(1, 6)),
    kind=input_kinds,
)
def test_property_starmap_keeps_input_order(
    items: list[tuple[object, float, bool]], concurrency: int, batch_size: int | None, kind: str
) -> None:
    async def star(value: object, delay: float, fail: bool) -> object:
        return await _work((value, delay, fail))

    result = asyncio.run(
        async_parallel_starmap(star, _as_input(items, kind), concurrency=concurrency, batch_size=batch_size)
    )
    assert [i for i, _ in result.failures()] == [i for i, (_, _, f) in enumerate(items) if f]
    assert result.successes() == [(i, v) for i, (v, _, f) in enumerate(items) if not f]


@pytest.mark.timeout(120)
@PROPERTY_SETTINGS
@given(
    items=work_items(),
    concurrency=st.integers(1, 8),
    batch_size=st.one_of(st.none(), st.integers(1, 6)),
    kind=input_kinds,
)
def test_property_iter_yields_every_index_exactly_once(
    items: list[tuple[object, float, bool]], concurrency: int, batch_size: int | None, kind: str
) -> None:
    async def main() -> list[ItemResult[object]]:
        stream = async_parallel_iter(
            _work, _as_input(items, kind), concurrency=concurrency, batch_size=batch_size
        )
        async with contextlib.aclosing(stream) as results:
            return [r async for r in results]

    seen = asyncio.run(main())
    assert sorted(r.index for r in seen) == list(range(len(items)))
    for r in seen:
        value, _, fail = items[r.index]
        assert r.ok is (not fail)
        if fail:
            assert isinstance(r.error, Boom)
            assert r.value is None
        else:
            assert r.value == value
            assert r.error is None


# -- observer hooks ------------------------------------------------------------------------------


class Recorder:
    """An observer plugin recording every run start, item result and run end."""

    def __init__(self) -> None:
        self.starts: list[Any] = []
        self.results: list[tuple[int, ItemResult[object], int, int]] = []
        self.ends: list[tuple[int, Any]] = []

    @pyarallel.hookimpl
    def pyarallel_run_start(self, run: Any) -> None:
        self.starts.append(run)

    @pyarallel.hookimpl
    def pyarallel_item_result(self, run: Any, result: ItemResult[object], done: int, seen: int) -> None:
        self.results.append((run.run_id, result, done, seen))

    @pyarallel.hookimpl
    def pyarallel_run_end(self, run: Any, summary: Any) -> None:
        self.ends.append((run.run_id, summary))


@pytest.mark.timeout(30)
def test_observers_see_a_completed_async_run() -> None:
    async def maybe_fail(x: int) -> int:
        await asyncio.sleep(0.001 * (x % 3))
        if x in (2, 5):
            raise Boom(x)
        return x

    recorder = Recorder()
    pyarallel.register_plugin(recorder, name="test-async-api-recorder")
    try:
        result = asyncio.run(async_parallel_map(maybe_fail, range(8), concurrency=3))
    finally:
        pyarallel.unregister_plugin(recorder)
    assert [i for i, _ in result.failures()] == [2, 5]

    (run,) = recorder.starts
    assert run.executor == "asyncio"
    assert run.workers == 3
    assert run.total == 8
    assert run.function.endswith("maybe_fail")
    mine = [(r, done, seen) for run_id, r, done, seen in recorder.results if run_id == run.run_id]
    assert sorted(r.index for r, _, _ in mine) == list(range(8))  # each item exactly once
    assert [done for _, done, _ in mine] == list(range(1, 9))
    assert all(done <= seen <= 8 for _, done, seen in mine)
    assert {r.index for r, _, _ in mine if not r.ok} == {2, 5}
    ((run_id, summary),) = recorder.ends
    assert run_id == run.run_id
    assert summary.outcome == "completed"
    assert (summary.succeeded, summary.failed, summary.error) == (6, 2, None)


@pytest.mark.timeout(30)
def test_observers_count_retries_of_an_async_run() -> None:
    attempts: Counter[int] = Counter()

    async def flaky(x: int) -> int:
        attempts[x] += 1
        if attempts[x] < 3 and x == 1:
            raise Boom(x)
        return x

    recorder = Recorder()
    pyarallel.register_plugin(recorder, name="test-async-api-recorder-retry")
    try:
        result = asyncio.run(async_parallel_map(flaky, range(3), retry=Retry(attempts=3, backoff=0.001)))
    finally:
        pyarallel.unregister_plugin(recorder)
    assert result == [0, 1, 2]
    assert attempts == Counter({0: 1, 1: 3, 2: 1})
    ((_, summary),) = recorder.ends
    assert (summary.outcome, summary.succeeded, summary.failed, summary.retries) == ("completed", 3, 0, 2)
    assert sorted(r.index for _, r, _, _ in recorder.results) == [0, 1, 2]


# -- the example -----------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_async_demo_example_runs_and_prints_a_summary() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "examples" / "async_demo.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    match = re.search(r"^summary: (\d+) requests, (\d+) ok, (\d+) failed", completed.stdout, re.MULTILINE)
    assert match, completed.stdout
    total, ok, failed = map(int, match.groups())
    assert total == ok + failed
    assert total >= 100
    assert failed == 0
