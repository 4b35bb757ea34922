"""Quotas end to end: pyarallel's limiters against a real local HTTP API that enforces its
own quotas and counts every request it receives (``quota_server``).

Every assertion is about what the *server* saw: the arrival time, key, tokens and answer
of each request. Limits are set so that a correct limiter never gets a 429 (a little
below the server's quota where arrivals jitter), and margins are generous: the machine
has 2 cores.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import urllib.error
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pyarallel import (
    Limiter,
    RateLimit,
    RateLimitCostError,
    Retry,
    async_parallel_map,
    parallel_map,
)
from quota_server import Quota, QuotaServer, get


def _caller(url: str, **fixed: object) -> Callable[[Any], dict[str, Any]]:
    """A function calling the server once per item (a dict of query parameters, or a key)."""

    def call(item: Any) -> dict[str, Any]:
        params = dict(item) if isinstance(item, dict) else {"item": item}
        return get(url, **fixed, **params)

    return call


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(sorted(times))]


# -- a shared Limiter --------------------------------------------------------------------


def test_two_maps_sharing_a_limiter_keep_the_servers_quota_and_share_it_fairly() -> None:
    with QuotaServer([Quota(20, 1.0)]) as server:
        limiter = Limiter(RateLimit(19))  # a little below 20 per second: arrivals jitter
        results: dict[str, Any] = {}

        def run(name: str) -> None:
            items = [{"item": f"{name}{i}", "key": name} for i in range(30)]
            results[name] = parallel_map(_caller(server.url), items, workers=4, rate_limit=limiter)

        threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert all(result.ok for result in results.values())
        assert not server.refused()
        assert server.max_in_window(1.0) <= 20
        # Fair: until the first map finished, each had close to half of the calls.
        first_done = min(max(r.at for r in server.accepted(key=name)) for name in ("a", "b"))
        shares = [sum(r.at <= first_done for r in server.accepted(key=name)) for name in ("a", "b")]
        assert min(shares) >= 0.4 * sum(shares), shares


def test_a_limiter_is_shared_by_a_thread_and_an_event_loop() -> None:
    with QuotaServer([Quota(20, 1.0)]) as server:
        limiter = Limiter(RateLimit(19))
        call = _caller(server.url)

        async def call_async(item: Any) -> dict[str, Any]:
            return await asyncio.to_thread(call, item)

        thread_result: list[Any] = []
        thread = threading.Thread(
            target=lambda: thread_result.append(
                parallel_map(call, [{"key": "t", "item": i} for i in range(20)], rate_limit=limiter)
            )
        )
        thread.start()
        async_result = asyncio.run(
            async_parallel_map(
                call_async, [{"key": "a", "item": i} for i in range(20)], concurrency=4, rate_limit=limiter
            )
        )
        thread.join()

        assert thread_result[0].ok
        assert async_result.ok
        assert not server.refused()
        assert server.max_in_window(1.0) <= 20
        assert len(server.accepted(key="t")) == len(server.accepted(key="a")) == 20


# -- weighted and composite quotas ----------------------------------------------------------


def _token_items(count: int) -> list[dict[str, float]]:
    """Items declaring twice the tokens they really use (an estimate before the call)."""
    return [{"tokens": 20 + 10 * (i % 5), "used": (20 + 10 * (i % 5)) / 2} for i in range(count)]


def _token_limiter(settle: bool) -> Limiter:
    return Limiter(
        RateLimit(38, "second"),
        RateLimit(
            420,  # tokens per second: with the burst, at most 480 + 60 in a second, under 540
            "second",
            burst=60,
            cost=lambda item: item["tokens"],
            settle=(lambda item, result: result.value["used_tokens"] if result.ok else item["tokens"])
            if settle
            else None,
        ),
    )


def test_requests_and_tokens_quotas_both_hold_and_settling_raises_the_token_throughput() -> None:
    # The runs without and with settle share nothing (each has its own server and limiter)
    # and make few calls (~10 and ~25 a second): they run side by side, not one after the other.
    servers = {
        settle: QuotaServer([Quota(40, 1.0), Quota(540, 1.0, unit="tokens")], charge="used")
        for settle in (False, True)
    }

    def run(settle: bool) -> Any:
        return parallel_map(
            _caller(servers[settle].url), _token_items(40), workers=4, rate_limit=_token_limiter(settle)
        )

    with servers[False], servers[True], ThreadPoolExecutor(2) as runs:
        results = dict(zip((False, True), runs.map(run, (False, True)), strict=True))
    rates = {}
    for settle, server in servers.items():
        assert results[settle].ok
        assert not server.refused()
        assert server.max_in_window(1.0) <= 40
        accepted = server.accepted()
        span = accepted[-1].at - accepted[0].at
        rates[settle] = sum(r.used_tokens for r in accepted) / span
        assert server.max_in_window(1.0, unit="tokens") <= 540  # charged what was used
    assert rates[True] > 1.5 * rates[False], rates


def test_an_item_costing_more_than_the_burst_fails_at_once_and_the_others_run() -> None:
    with QuotaServer() as server:
        limiter = Limiter(RateLimit(100, cost=lambda item: item["tokens"], burst=50))
        items = [{"tokens": 10}, {"tokens": 500}, {"tokens": 20}, {"tokens": "many"}]
        result = parallel_map(_caller(server.url), items, rate_limit=limiter)

        failures = dict(result.failures())
        assert sorted(failures) == [1, 3]
        too_big, bad = failures[1], failures[3]
        assert isinstance(too_big, RateLimitCostError)
        assert too_big.index == 1
        assert "500" in str(too_big)
        assert "burst=50" in str(too_big)
        assert isinstance(bad, RateLimitCostError)
        assert "'many'" in str(bad)
        assert len(server.requests()) == 2  # the refused items were never called


# -- per-key budgets ------------------------------------------------------------------------


def test_a_throttled_key_does_not_delay_the_other_keys() -> None:
    # The server allows 5 calls a second per key; the client thinks 20. Key "hot" comes
    # first in the input and is throttled at once; "a" and "b" must not wait behind it.
    with QuotaServer([Quota(5, 1.0, per_key=True)]) as server:
        limiter = Limiter(RateLimit(20, key=lambda item: item["key"]))
        items = [{"key": "hot", "item": i} for i in range(15)]
        items += [{"key": key, "item": i} for i in range(5) for key in ("a", "b")]
        result = parallel_map(
            _caller(server.url), items, workers=4, rate_limit=limiter, retry=Retry.for_http(attempts=10)
        )

        assert result.ok
        hot = server.requests(key="hot")
        assert len(server.refused(key="hot")) >= 1
        for key in ("a", "b"):
            starts = [r.at for r in server.requests(key=key)]
            assert not server.refused(key=key)
            # Five calls at 20 per second take 0.2 s: they ran while "hot" was held back,
            # not after it (hot needs about 3 s).
            assert max(starts) - hot[0].at < 1.5, (key, max(starts) - hot[0].at)
        # The throttled key was paused for the server's Retry-After (whole seconds).
        assert max(_gaps([r.at for r in hot])) >= 0.9


def test_keyed_limits_pace_each_key_on_its_own() -> None:
    with QuotaServer([Quota(10, 1.0, per_key=True)]) as server:
        limiter = Limiter(RateLimit(9.5, key=lambda item: item["key"]))
        items = [{"key": f"k{i % 4}", "item": i} for i in range(40)]
        result = parallel_map(_caller(server.url), items, workers=8, rate_limit=limiter)

        assert result.ok
        assert not server.refused()
        for key in ("k0", "k1", "k2", "k3"):
            assert server.max_in_window(1.0, key=key) <= 10
        # The four keys ran side by side: 10 calls each at 9.5/s take about a second.
        accepted = server.accepted()
        assert accepted[-1].at - accepted[0].at < 2.5


# -- server-driven backoff ------------------------------------------------------------------


def test_one_429_with_retry_after_pauses_the_whole_pool() -> None:
    with QuotaServer([Quota(10, 1.0)], retry_after="seconds") as server:
        result = parallel_map(
            _caller(server.url),
            list(range(20)),
            workers=8,
            rate_limit=Limiter(RateLimit(40)),
            retry=Retry.for_http(attempts=5),
        )
        assert result.ok
        refused = server.refused()
        assert refused
        first = refused[0].at
        # The pool stopped for Retry-After (1 s): only calls already on their way arrive
        # just after the 429.
        during = [r.at for r in server.requests() if first + 0.1 < r.at < first + 0.9]
        assert not during, [t - first for t in during]


def test_a_run_without_a_rate_limit_pauses_its_own_starts_on_retry_after() -> None:
    with QuotaServer([Quota(4, 1.0)], retry_after="date") as server:
        result = parallel_map(
            _caller(server.url), list(range(8)), workers=2, retry=Retry.for_http(attempts=6)
        )
        assert result.ok
        refused = server.refused()
        assert refused
        first = refused[0].at
        during = [r.at for r in server.requests() if first + 0.1 < r.at < first + 0.5]
        assert not during, [t - first for t in during]


def test_adaptive_rate_finds_a_quota_the_client_does_not_know() -> None:
    # The server allows 40 calls a second (4 in any 0.1 s); the client starts at 100.
    quota = 40
    with QuotaServer([Quota(4, 0.1)], retry_after="none") as server:
        limiter = Limiter(RateLimit(100), adaptive=True)
        result = parallel_map(
            _caller(server.url),
            list(range(500)),
            workers=8,
            rate_limit=limiter,
            retry=Retry.for_http(attempts=20, backoff=0.05, max_delay=0.5),
        )
        assert result.ok
        accepted, refused = server.accepted(), server.refused()
        goodput = len(accepted) / (accepted[-1].at - accepted[0].at)
        assert goodput >= 0.85 * quota, goodput
        assert len(refused) < 0.05 * len(server.requests()), (len(refused), len(server.requests()))


# -- a retry budget --------------------------------------------------------------------------


def test_a_retry_budget_bounds_the_calls_to_a_failing_endpoint() -> None:
    with QuotaServer(fail_status=503) as server:
        result = parallel_map(
            _caller(server.url),
            list(range(200)),
            workers=4,
            retry=Retry(attempts=5, backoff=0, jitter=False, budget=0.1),
        )
        assert not result.ok
        assert all(isinstance(error, urllib.error.HTTPError) for _, error in result.failures())
        calls = len(server.requests())
        # 200 first attempts, and retries at most a tenth of the calls (never fewer than 10).
        assert 200 <= calls <= 200 + max(10, 0.1 * calls) + 1, calls


# -- async ------------------------------------------------------------------------------------


def test_async_keyed_limits_and_server_pauses() -> None:
    with QuotaServer([Quota(5, 1.0, per_key=True)]) as server:
        call = _caller(server.url)

        async def call_async(item: Any) -> dict[str, Any]:
            return await asyncio.to_thread(call, item)

        limiter = Limiter(RateLimit(20, key=lambda item: item["key"]))
        items = [{"key": "hot", "item": i} for i in range(10)]
        items += [{"key": "a", "item": i} for i in range(5)]
        result = asyncio.run(
            async_parallel_map(
                call_async, items, concurrency=4, rate_limit=limiter, retry=Retry.for_http(attempts=10)
            )
        )
        assert result.ok
        hot = server.requests(key="hot")
        assert server.refused(key="hot")
        assert not server.refused(key="a")
        assert max(r.at for r in server.requests(key="a")) - hot[0].at < 1.5


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_cost_function_is_called_in_the_driver_with_the_item(executor: str) -> None:
    seen: list[Any] = []

    def cost(item: Any) -> float:
        seen.append(item)
        return 1.0

    result = parallel_map(
        abs, [-1, -2, -3], executor=executor, rate_limit=Limiter(RateLimit(1000, cost=cost))
    )
    assert result.values() == [1, 2, 3]
    assert sorted(seen) == [-3, -2, -1]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_failing_settle_function_fails_its_item_without_a_retry(executor: str) -> None:
    settled: list[Any] = []

    def settle(item: Any, result: Any) -> float:
        settled.append(item)
        if item == 2:
            raise KeyError("usage")
        return 1.0

    limiter = Limiter(RateLimit(1000, cost=lambda item: 1, settle=settle))
    result = parallel_map(
        abs,
        [1, 2, 3],
        executor=executor,
        rate_limit=limiter,
        retry=Retry(attempts=3, backoff=0, on=RateLimitCostError),  # would retry it, if asked
    )
    failures = dict(result.failures())
    assert sorted(failures) == [1]
    assert result.successes() == [(0, 1), (2, 3)]
    assert isinstance(failures[1], RateLimitCostError)
    assert failures[1].index == 1
    assert isinstance(failures[1].__cause__, KeyError)
    assert sorted(settled) == [1, 2, 3]  # one attempt each: the failure was not retried
