"""Rate limiting and retry in the async API, and the limiter/retry plugins shared by the
blocking and the async worlds.

- the limiter paces async calls without blocking the event loop (a heartbeat task keeps
  its cadence during a rate-limited run);
- one ``Limiter`` used at once from a thread (``parallel_map``) and from two event loops
  (``async_parallel_map``) never grants two calls closer than its interval;
- every attempt, retries included, draws a token;
- rate-limiter and retry-policy plugins serve ``parallel_map`` and ``async_parallel_map``
  alike.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

import pyarallel
from pyarallel import (
    Limiter,
    ParallelResult,
    RateLimit,
    Retry,
    TaskTimeoutError,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    parallel_map,
)
from pyarallel.contracts import FailedAttempt

if TYPE_CHECKING:
    from pyarallel._limiting.limiter import _Reservation


def min_span(grants: int, interval: float) -> float:
    """The least time ``grants`` grants of a limiter with ``interval`` can span: a
    ``Limiter`` of one ``RateLimit`` (burst 1) never grants two calls closer than that."""
    return (grants - 1) * interval - 1e-6


class Boom(Exception):
    pass


class LoggedLimiter(Limiter):
    """The built-in ``Limiter`` of one limit of ``rate`` calls per second, logging every
    grant with the exact instant the limiter decided it (the clock reading taken under
    the limiter's lock) and the thread it was granted to. The pacing logic is entirely the
    parent's."""

    def __init__(self, rate: float) -> None:
        super().__init__(RateLimit(rate))
        self.interval = 1.0 / rate
        self._reading = threading.local()
        self._clock = self._read_clock
        self.grants: list[tuple[float, str]] = []
        self.refusals = 0

    def _read_clock(self) -> float:
        now = time.monotonic()
        self._reading.now = now
        return now

    def _try_acquire(self, reservation: _Reservation) -> float:
        wait = super()._try_acquire(reservation)
        if wait == 0.0:
            self.grants.append((self._reading.now, threading.current_thread().name))
        else:
            self.refusals += 1
        return wait


class SharedSpec:
    """A custom ``rate_limit=`` spec only the plugin below understands."""


class SharedLimiterPlugin:
    """Returns one shared limiter for ``spec`` (so every run using it shares one budget)."""

    def __init__(self, spec: object, limiter: Any) -> None:
        self.spec = spec
        self.limiter = limiter
        self.asked = 0

    @pyarallel.hookimpl
    def pyarallel_rate_limiter(self, rate_limit: object) -> Any:
        if rate_limit is self.spec:
            self.asked += 1
            return self.limiter
        return None


class registered:  # used like a function: ``with registered(plugin, name): ...``
    """Register a plugin for the duration of a ``with`` block; unregister in any case."""

    def __init__(self, plugin: object, name: str) -> None:
        self.plugin = plugin
        self.name = name

    def __enter__(self) -> object:
        pyarallel.register_plugin(self.plugin, name=self.name)
        return self.plugin

    def __exit__(self, *exc: object) -> None:
        pyarallel.unregister_plugin(self.plugin)


# -- pacing ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_async_calls_are_paced_by_the_rate_limit() -> None:
    starts: list[float] = []

    async def record(x: int) -> int:
        starts.append(time.monotonic())
        return x

    async def main() -> tuple[ParallelResult[int], float, float]:
        began = time.monotonic()
        result = await async_parallel_map(record, range(8), concurrency=8, rate_limit=20)
        return result, began, time.monotonic()

    result, began, ended = asyncio.run(main())
    assert result == list(range(8))
    assert len(starts) == 8
    # smooth pacing, no initial burst: the 8th call starts about 7 intervals after the first
    assert ended - began >= min_span(8, 0.05)
    assert starts[-1] - began >= min_span(8, 0.05)
    assert starts[0] - began < 1.0  # the first call goes at once


@pytest.mark.timeout(30)
def test_rate_limit_object_per_minute_and_in_a_stream() -> None:
    async def ident(x: int) -> int:
        return x

    async def main() -> tuple[float, list[int]]:
        began = time.monotonic()
        indexes = sorted(
            [r.index async for r in async_parallel_iter(ident, range(4), rate_limit=RateLimit(600, "minute"))]
        )
        return time.monotonic() - began, indexes

    elapsed, indexes = asyncio.run(main())
    assert indexes == [0, 1, 2, 3]
    assert elapsed >= min_span(4, 0.1)  # 600 per minute = one call every 0.1 s


@pytest.mark.timeout(30)
def test_rate_limiter_does_not_block_the_event_loop() -> None:
    """A heartbeat task ticking every 10 ms keeps its cadence while a run waits for tokens
    that come only every 0.5 s: the limiter waits by awaiting, not by sleeping the thread."""
    interval, items, beat = 0.5, 4, 0.01

    async def main() -> tuple[ParallelResult[int], list[float], float, float]:
        ticks: list[float] = []
        stop = asyncio.Event()

        async def heartbeat() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(beat)

        async def ident(x: int) -> int:
            return x

        beating = asyncio.create_task(heartbeat())
        began = time.monotonic()
        result = await async_parallel_map(ident, range(items), rate_limit=1 / interval)
        ended = time.monotonic()
        stop.set()
        await beating
        return result, ticks, began, ended

    result, ticks, began, ended = asyncio.run(main())
    assert result == list(range(items))
    assert ended - began >= min_span(items, interval)  # the rate limit was applied
    during = [began, *(t for t in ticks if began < t < ended), ended]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    # A limiter sleeping the thread would stop the heartbeat for a whole interval (0.5 s).
    assert max(gaps) < 0.3, max(gaps)
    assert len(during) - 2 >= ((ended - began) / beat) / 4  # ticking at (a quarter of) its cadence


@pytest.mark.timeout(30)
def test_decorator_rate_limit_default_and_override() -> None:
    @async_parallel(rate_limit=RateLimit(1, "hour"))
    async def ident(x: int) -> int:
        return x

    async def main() -> tuple[ParallelResult[int], ParallelResult[int], float]:
        default = await ident.map(range(3), timeout=0.3)  # one token an hour: only item 0 runs
        began = time.monotonic()
        overridden = await ident.map(range(3), rate_limit=1000)
        return default, overridden, time.monotonic() - began

    default, overridden, elapsed = asyncio.run(main())
    assert default.successes() == [(0, 0)]
    assert [i for i, _ in default.failures()] == [1, 2]
    assert overridden == [0, 1, 2]
    assert elapsed < 10  # not one call an hour


# -- a token per attempt -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_every_retry_attempt_draws_a_token() -> None:
    interval, items, attempts_each = 0.05, 4, 3
    calls: Counter[int] = Counter()

    async def always_fails(x: int) -> int:
        calls[x] += 1
        raise Boom(x)

    async def main() -> tuple[ParallelResult[int], float]:
        began = time.monotonic()
        result = await async_parallel_map(
            always_fails,
            range(items),
            concurrency=items,
            rate_limit=1 / interval,
            retry=Retry(attempts=attempts_each, backoff=0, jitter=False),
        )
        return result, time.monotonic() - began

    result, elapsed = asyncio.run(main())
    total = items * attempts_each
    assert calls == Counter(dict.fromkeys(range(items), attempts_each))
    assert [i for i, _ in result.failures()] == list(range(items))
    # 12 attempts at one token per 0.05 s take about 11 intervals; if retries did not draw
    # tokens the run would take only 3 intervals.
    assert elapsed >= min_span(total, interval)


@pytest.mark.timeout(30)
def test_tokens_granted_equal_attempts_with_retry_and_task_timeout() -> None:
    """Counted at the limiter itself: one grant per attempt, including attempts cancelled by
    ``task_timeout`` and retried, and never two grants closer than the interval."""
    spec = SharedSpec()
    limiter = LoggedLimiter(rate=40)
    attempts: Counter[int] = Counter()

    async def hangs_first(x: int) -> int:
        attempts[x] += 1
        if attempts[x] == 1 and x % 2:
            await asyncio.Event().wait()  # cancelled by task_timeout, then retried
        return x

    with registered(SharedLimiterPlugin(spec, limiter), "test-async-rate-limit-count"):
        result = asyncio.run(
            async_parallel_map(
                hangs_first,
                range(6),
                concurrency=6,
                rate_limit=spec,  # type: ignore[arg-type]
                task_timeout=0.1,
                retry=Retry(attempts=2, backoff=0, on=(TaskTimeoutError,)),
            )
        )
    assert result == list(range(6))
    assert attempts == Counter({0: 1, 1: 2, 2: 1, 3: 2, 4: 1, 5: 2})
    assert len(limiter.grants) == sum(attempts.values()) == 9
    times = sorted(t for t, _ in limiter.grants)
    assert min(b - a for a, b in itertools.pairwise(times)) >= limiter.interval - 1e-6
    assert times[-1] - times[0] >= min_span(9, limiter.interval)


# -- the limiter itself -------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.timeout(30)
def test_limiter_never_grants_two_calls_closer_than_its_interval() -> None:
    """Deterministic (a fake clock): a caller polls every 7 ms, often late, for 3 s, asking
    for one call at a time (a new reservation once the last one was granted)."""
    limiter = Limiter(RateLimit(10.0))  # one call every 0.1 s
    clock = FakeClock(1000.0)
    limiter._clock = clock  # the limiter's own injection point for its time source
    grants: list[float] = []
    reservation = limiter.request(0)
    for step in range(430):
        clock.now = 1000.0 + step * 0.007
        if reservation.try_acquire() == 0.0:
            grants.append(clock.now)
            reservation = limiter.request(step)
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert len(grants) >= 25
    assert grants[1] - grants[0] >= 0.1 - 1e-9  # the first call at once, the second one interval later
    assert min(gaps) >= 0.1 - 1e-9, min(gaps)


@pytest.mark.timeout(30)
def test_limiter_refusals_say_how_long_to_wait() -> None:
    limiter = Limiter(RateLimit(4.0))  # one call every 0.25 s
    clock = FakeClock(50.0)
    limiter._clock = clock
    assert limiter.request("a").try_acquire() == 0.0
    second = limiter.request("b")
    wait = second.try_acquire()
    assert 0 < wait <= 0.25
    clock.now += wait / 2
    assert 0 < second.try_acquire() <= wait / 2 + 1e-9  # still refused, and nothing was taken
    clock.now += wait / 2 + 1e-9
    assert second.try_acquire() == 0.0  # granted when it said
    # A reservation refused and then given up took nothing: the next call is due one
    # interval after the last grant, as if it had never asked.
    third = limiter.request("c")
    assert third.try_acquire() == pytest.approx(0.25)
    third.cancel()
    clock.now += 0.25
    assert limiter.request("d").try_acquire() == 0.0


# -- one limiter, three event loops/threads ------------------------------------------------------


@pytest.mark.timeout(60)
def test_one_limiter_shared_by_a_thread_and_two_event_loops() -> None:
    """A plugin hands the same ``Limiter`` to every run using ``spec``; a blocking run in
    one thread and async runs in two event loops (each in its own thread) draw from it at
    the same time, and no two grants, whoever they went to, are closer than the interval."""
    spec = SharedSpec()
    rate, per_run = 25.0, 8
    limiter = LoggedLimiter(rate)
    plugin = SharedLimiterPlugin(spec, limiter)
    start = threading.Barrier(3)
    outcomes: dict[str, Any] = {}
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def count_call() -> None:
        with lock:
            calls[threading.current_thread().name] += 1

    def sync_fn(x: int) -> int:
        with lock:
            calls["sync"] += 1
        return x

    async def async_fn(x: int) -> int:
        count_call()
        await asyncio.sleep(0)
        return x

    spans: dict[str, tuple[float, float]] = {}

    def run_sync() -> None:
        start.wait(10)
        began = time.monotonic()
        outcomes["sync"] = parallel_map(sync_fn, range(per_run), workers=4, rate_limit=spec)  # type: ignore[arg-type]
        spans["sync"] = (began, time.monotonic())

    def run_loop() -> None:
        start.wait(10)
        began = time.monotonic()
        name = threading.current_thread().name
        outcomes[name] = asyncio.run(
            async_parallel_map(async_fn, range(per_run), concurrency=4, rate_limit=spec)  # type: ignore[arg-type]
        )
        spans[name] = (began, time.monotonic())

    def guarded(target: Any) -> Any:
        def body() -> None:
            try:
                target()
            except BaseException as error:  # reported by the assertions below
                outcomes[threading.current_thread().name] = error

        return body

    threads = [
        threading.Thread(target=guarded(run_sync), name="sync"),
        threading.Thread(target=guarded(run_loop), name="loop-a"),
        threading.Thread(target=guarded(run_loop), name="loop-b"),
    ]
    with registered(plugin, "test-async-rate-limit-shared"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(40)
    assert not any(thread.is_alive() for thread in threads)

    for name in ("sync", "loop-a", "loop-b"):
        assert outcomes[name] == list(range(per_run)), outcomes[name]
    assert plugin.asked >= 3  # every run asked the plugin and got the one shared limiter
    assert calls["sync"] == calls["loop-a"] == calls["loop-b"] == per_run

    grants = sorted(limiter.grants)
    assert len(grants) == 3 * per_run
    assert Counter(name for _, name in grants) == dict.fromkeys(("sync", "loop-a", "loop-b"), per_run)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(grants)]
    # No two grants closer than the interval (a shared limiter without a lock would grant
    # several calls at one instant).
    assert min(gaps) >= limiter.interval - 1e-6, min(gaps)
    assert grants[-1][0] - grants[0][0] >= min_span(3 * per_run, limiter.interval)
    # the three runs really ran at the same time, competing for the tokens
    assert max(began for began, _ in spans.values()) < min(ended for _, ended in spans.values()), spans
    assert limiter.refusals > 0


# -- plugins serve both worlds -------------------------------------------------------------------


class FixedRetries:
    """A custom ``retry=`` spec: retry ``times`` more times, at once."""

    def __init__(self, times: int) -> None:
        self.times = times


class FixedRetriesPolicy:
    def __init__(self, spec: FixedRetries) -> None:
        self.spec = spec
        self.asked: list[tuple[int, str]] = []

    def decide(self, failed: FailedAttempt) -> float | None:
        self.asked.append((failed.attempt, type(failed.error).__name__))
        return 0.0 if failed.attempt <= self.spec.times else None


class RetryPlugin:
    def __init__(self) -> None:
        self.policies: list[FixedRetriesPolicy] = []

    @pyarallel.hookimpl
    def pyarallel_retry_policy(self, retry: object) -> FixedRetriesPolicy | None:
        if isinstance(retry, FixedRetries):
            policy = FixedRetriesPolicy(retry)
            self.policies.append(policy)
            return policy
        return None


@pytest.mark.timeout(30)
def test_retry_policy_plugin_serves_sync_and_async_runs() -> None:
    sync_calls: Counter[int] = Counter()
    async_calls: Counter[int] = Counter()

    def sync_flaky(x: int) -> int:
        sync_calls[x] += 1
        if x == 1:
            raise Boom(x)
        return x

    async def async_flaky(x: int) -> int:
        async_calls[x] += 1
        await asyncio.sleep(0)
        if x == 1:
            raise Boom(x)
        return x

    plugin = RetryPlugin()
    spec = FixedRetries(2)
    with registered(plugin, "test-async-rate-limit-retry"):
        sync_result = parallel_map(sync_flaky, range(3), workers=2, retry=spec)  # type: ignore[arg-type]
        async_result = asyncio.run(async_parallel_map(async_flaky, range(3), retry=spec))  # type: ignore[arg-type]
    for result in (sync_result, async_result):
        assert result.successes() == [(0, 0), (2, 2)]
        assert [(i, type(e)) for i, e in result.failures()] == [(1, Boom)]
    assert sync_calls == async_calls == Counter({0: 1, 1: 3, 2: 1})
    used = [policy for policy in plugin.policies if policy.asked]
    assert [policy.asked for policy in used] == [[(1, "Boom"), (2, "Boom"), (3, "Boom")]] * 2


@pytest.mark.timeout(30)
def test_same_rate_limit_and_retry_objects_serve_both_worlds() -> None:
    rate, retry = RateLimit(20), Retry(attempts=2, backoff=0)
    seen: Counter[tuple[str, int]] = Counter()

    def sync_fn(x: int) -> int:
        seen["sync", x] += 1
        if seen["sync", x] == 1:
            raise Boom(x)
        return x

    async def async_fn(x: int) -> int:
        seen["async", x] += 1
        if seen["async", x] == 1:
            raise Boom(x)
        return x

    began = time.monotonic()
    sync_result = parallel_map(sync_fn, range(3), workers=3, rate_limit=rate, retry=retry)
    middle = time.monotonic()
    async_result = asyncio.run(async_parallel_map(async_fn, range(3), rate_limit=rate, retry=retry))
    ended = time.monotonic()
    assert sync_result == async_result == [0, 1, 2]
    assert all(count == 2 for count in seen.values())
    assert len(seen) == 6
    # 6 attempts each at 20 per second: about 5 intervals per run
    assert middle - began >= min_span(6, 0.05)
    assert ended - middle >= min_span(6, 0.05)
