"""Runs of ``parallel_map`` & co. paced by a Redis limiter, passed as an object or as a spec."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time

import pytest
from benchmarks_support import RecordingLimiter
from helpers import most_in_window
from pyarallel_redis import RedisLimiter, RedisRateLimit
from redis_server import RedisServer

import pyarallel
from pyarallel import RateLimit, RateLimitCostError, Retry
from pyarallel.contracts import RateLimitSpec


class StartTimes:
    """A function recording when each call starts."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.times: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, item: object) -> object:
        with self._lock:
            self.times.append(time.monotonic())
        if self.seconds:
            time.sleep(self.seconds)
        return item


def achieved_rate(times: list[float]) -> float:
    ordered = sorted(times)
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])


def test_parallel_map_keeps_the_rate(server: RedisServer, name: str) -> None:
    work = StartTimes(0.02)
    limiter = RedisLimiter(RateLimit(50), url=server.url, name=name)
    result = pyarallel.parallel_map(work, range(60), workers=4, rate_limit=limiter)
    assert result.values() == list(range(60))
    assert most_in_window(work.times, 0.2) <= 10 + 1  # client clocks: one of slack for dispatch
    assert 45 < achieved_rate(work.times) <= 50.5


def test_calls_given_the_same_limiter_share_its_budget(server: RedisServer, name: str) -> None:
    work = StartTimes()
    limiter = RedisLimiter(RateLimit(40), url=server.url, name=name)
    threads = [
        threading.Thread(
            target=pyarallel.parallel_map, args=(work, range(20)), kwargs={"rate_limit": limiter}
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(work.times) == 40
    assert 36 < achieved_rate(work.times) <= 40.5


def test_a_spec_is_built_once_and_served_by_the_plugin_hook(server: RedisServer, name: str) -> None:
    spec = RedisRateLimit(RateLimit(100), url=server.url, name=name)
    assert isinstance(spec, RateLimitSpec)
    assert spec.as_rate_limiter() is spec.as_rate_limiter()
    hook = next(info for info in pyarallel.list_plugins() if info.name == "redis")
    assert hook.hooks == ("pyarallel_rate_limiter",)
    work = StartTimes()
    assert pyarallel.parallel_map(work, range(10), rate_limit=spec).values() == list(range(10))
    assert achieved_rate(work.times) <= 101
    assert spec == pickle.loads(pickle.dumps(spec))
    assert hash(spec) == hash(RedisRateLimit(RateLimit(100), url=server.url, name=name))


def test_a_decorated_function_takes_a_spec(server: RedisServer, name: str) -> None:
    @pyarallel.parallel(rate_limit=RedisRateLimit(50, url=server.url, name=name), workers=2)
    def double(item: int) -> int:
        return item * 2

    assert double.map(range(5)).values() == [0, 2, 4, 6, 8]


def test_an_item_costing_more_than_the_burst_fails_alone(server: RedisServer, name: str) -> None:
    limiter = RedisLimiter(RateLimit(1000, cost=len, burst=3), url=server.url, name=name)
    result = pyarallel.parallel_map(str.upper, ["ab", "abcdef", "c"], rate_limit=limiter)
    assert [value for _, value in result.successes()] == ["AB", "C"]
    ((index, error),) = result.failures()
    assert index == 1
    assert isinstance(error, RateLimitCostError)


def test_settle_refunds_raise_the_throughput(server: RedisServer, name: str) -> None:
    def run(settle: bool, suffix: str) -> float:
        limit = RateLimit(
            400,
            burst=40,
            cost=lambda item: 40,
            settle=(lambda item, result: 1) if settle else None,
        )
        limiter = RedisLimiter(limit, url=server.url, name=name + suffix)
        started = time.monotonic()
        assert pyarallel.parallel_map(abs, range(12), rate_limit=limiter, workers=2).ok
        return time.monotonic() - started

    reserved = run(False, "-reserved")  # 10 calls a second after the first
    settled = run(True, "-settled")
    assert reserved > 1.0
    assert settled < reserved / 3


def test_a_retry_after_pauses_the_shared_limiter(server: RedisServer, name: str) -> None:
    class Throttled(Exception):
        status_code = 429

    failed: list[int] = []
    work = StartTimes()

    def call(item: int) -> int:
        work(item)
        if item == 0 and not failed:
            failed.append(item)
            raise Throttled("slow down")
        return item

    limiter = RedisLimiter(RateLimit(100, burst=10), url=server.url, name=name)
    retry = Retry(attempts=2, backoff=0.0, jitter=False, on=Throttled, wait_from=lambda error: 0.3)
    result = pyarallel.parallel_map(call, range(3), rate_limit=limiter, retry=retry, workers=1)
    assert result.values() == [0, 1, 2]
    ordered = sorted(work.times)
    assert ordered[-1] - ordered[0] >= 0.28  # the retry (and anything after the 429) waited for the pause


def test_the_async_api_takes_a_redis_limiter(server: RedisServer, name: str) -> None:
    limiter = RedisLimiter(RateLimit(50), url=server.url, name=name)
    times: list[float] = []

    async def call(item: int) -> int:
        times.append(time.monotonic())
        await asyncio.sleep(0.01)
        return item

    result = asyncio.run(pyarallel.async_parallel_map(call, range(20), rate_limit=limiter, concurrency=4))
    assert result.values() == list(range(20))
    assert 45 < achieved_rate(times) <= 50.5


def test_keys_do_not_hold_each_other_up_in_a_run(server: RedisServer, name: str) -> None:
    limiter = RedisLimiter(RateLimit(5, key=lambda item: item % 4), url=server.url, name=name)
    started = time.monotonic()
    result = pyarallel.parallel_map(abs, range(12), rate_limit=limiter, workers=4)
    assert result.ok
    assert time.monotonic() - started < 0.8  # 3 calls per key at 5/s: 0.4 s, not 12 calls at 5/s


@pytest.mark.parametrize("spec", [False, True])
def test_a_run_with_an_unreachable_redis_fails_open_if_asked(name: str, spec: bool) -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    rate_limit: RedisLimiter | RedisRateLimit = (
        RedisRateLimit(1, url=url, name=name, on_unavailable="fail_open")
        if spec
        else RedisLimiter(1, url=url, name=name, on_unavailable="fail_open")
    )
    started = time.monotonic()
    assert pyarallel.parallel_map(abs, range(5), rate_limit=rate_limit).ok
    assert time.monotonic() - started < 2  # 1 call a second, were Redis there


def test_many_keys_waiting_on_a_shared_limit_cost_few_round_trips(server: RedisServer, name: str) -> None:
    # 200 keys, each with budget to spare, all waiting on one shared limit: the run reads
    # ahead (up to 1000 items, looking for a key with budget) and every waiting key's
    # first item is queued on the shared limit. Each is told to come back near its turn,
    # so a grant costs a few questions, not one per waiting key.
    limits = (RateLimit(100, key=lambda item: item % 200), RateLimit(50))
    limiter = RecordingLimiter(RedisLimiter(*limits, url=server.url, name=name))
    assert pyarallel.parallel_map(abs, range(100), workers=4, rate_limit=limiter).ok
    granted = sorted(limiter.granted)
    assert 45 < (len(granted) - 1) / (granted[-1] - granted[0]) <= 50.5
    assert limiter.asked / len(granted) < 10
