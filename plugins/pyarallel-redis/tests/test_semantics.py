"""The limiter's semantics, against a real redis-server: the same as the local
``pyarallel.Limiter``'s, on the server's clock."""

from __future__ import annotations

import itertools
import time

import pytest
import redis
from helpers import acquire
from pyarallel_redis import RedisLimiter, RedisReservation
from redis_server import RedisServer

from pyarallel import ItemResult, Limiter, RateLimit, RateLimitCostError
from pyarallel.contracts import RateLimiter


def limiter(server: RedisServer, name: str, *limits: RateLimit | float) -> RedisLimiter:
    return RedisLimiter(*limits, url=server.url, name=name)


def test_it_is_a_rate_limiter(server: RedisServer, name: str) -> None:
    shared = limiter(server, name, 10)
    assert isinstance(shared, RateLimiter)
    assert shared.limits == (RateLimit(10),)
    assert repr(shared) == (
        "RedisLimiter(RateLimit(count=10.0, per='second', burst=1, cost=None, key=None, settle=None), "
        f"name={name!r}, on_unavailable='fail_closed')"
    )


def test_a_burst_is_granted_at_once_then_the_steady_rate(server: RedisServer, name: str) -> None:
    shared = limiter(server, name, RateLimit(10, burst=4))
    assert [shared.request(n).try_acquire() for n in range(4)] == [0.0] * 4
    wait = shared.request(4).try_acquire()
    assert 0.08 < wait <= 0.1


def test_at_burst_1_no_two_grants_are_closer_than_one_interval(server: RedisServer, name: str) -> None:
    rate = 40.0
    shared = limiter(server, name, RateLimit(rate))
    reservations = [shared.request(n) for n in range(16)]
    client_times = [acquire(reservation) for reservation in reservations]
    server_times = [reservation.granted_at for reservation in reservations]
    assert all(moment is not None for moment in server_times)
    server_gaps = [b - a for a, b in itertools.pairwise(server_times)]  # type: ignore[operator]
    client_gaps = [b - a for a, b in itertools.pairwise(client_times)]
    assert min(server_gaps) >= 1 / rate - 1e-6, server_gaps  # the server's clock counts microseconds
    assert min(client_gaps) >= 1 / rate - 0.003, client_gaps  # a round trip's jitter
    assert sum(server_gaps) / len(server_gaps) < 1.3 / rate  # and not much slower either


def test_a_call_refused_by_one_limit_takes_nothing_from_the_others(server: RedisServer, name: str) -> None:
    requests = RateLimit(1, "hour", burst=3)
    tokens = RateLimit(1, "hour", burst=10, cost=lambda item: item)
    both = limiter(server, name, requests, tokens)
    assert both.request(10).try_acquire() == 0.0  # 1 of 3 requests, 10 of 10 tokens
    for _ in range(5):
        assert both.request(1).try_acquire() > 60  # the tokens limit refuses: no request is taken
    # the requests budget is shared by any limiter of this name whose first limit it is
    requests_only = limiter(server, name, requests)
    assert [requests_only.request(n).try_acquire() for n in range(2)] == [0.0, 0.0]
    assert requests_only.request(3).try_acquire() > 60


def test_a_cost_above_the_burst_fails_like_the_local_limiter(server: RedisServer, name: str) -> None:
    limit = RateLimit(100, burst=5, cost=len)
    with pytest.raises(RateLimitCostError) as remote:
        limiter(server, name, limit).request("abcdef")
    with pytest.raises(RateLimitCostError) as local:
        Limiter(limit).request("abcdef")
    assert str(remote.value) == str(local.value)
    assert "burst=5" in str(remote.value)


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (RateLimit(10, cost=lambda item: 1 / 0, burst=2), "the cost function"),
        (RateLimit(10, cost=lambda item: "one", burst=2), "must return a number"),
        (RateLimit(10, cost=lambda item: -1.0, burst=2), "finite number >= 0"),
        (RateLimit(10, key=lambda item: 1 / 0), "the key function"),
        (RateLimit(10, key=lambda item: object()), "the same in every process"),
        (RateLimit(10, key=lambda item: frozenset({"a"})), "the same in every process"),
    ],
)
def test_bad_costs_and_keys_fail_the_item(
    server: RedisServer, name: str, limit: RateLimit, message: str
) -> None:
    with pytest.raises(RateLimitCostError, match=message):
        limiter(server, name, limit).request("item")


def test_each_key_has_a_budget_of_its_own(server: RedisServer, name: str) -> None:
    keyed = limiter(server, name, RateLimit(1, "hour", key=lambda item: item[0]))
    assert keyed.request("a1").try_acquire() == 0.0
    assert keyed.request("a2").try_acquire() > 60
    assert keyed.request("b1").try_acquire() == 0.0
    assert keyed.request(("x", 1)).lane == (("x", 1)[0],)
    # keys are told apart by repr, the same in every process
    assert keyed.request("a1").lane == ("a",)
    assert keyed.bucket_keys("a1") == (f"{{pyarallel:{name}}}:0:'a'",)
    assert keyed.pause_key == f"{{pyarallel:{name}}}:pause"


def test_a_long_key_is_hashed(server: RedisServer, name: str) -> None:
    keyed = limiter(server, name, RateLimit(1, key=lambda item: item))
    (bucket,) = keyed.bucket_keys("k" * 500)
    prefix = f"{{pyarallel:{name}}}:0:#"
    assert bucket.startswith(prefix)
    assert len(bucket) == len(prefix) + 64


def test_a_keyed_and_a_shared_limit_both_apply(server: RedisServer, name: str) -> None:
    both = limiter(server, name, RateLimit(1, "hour", key=lambda item: item), RateLimit(1, "hour", burst=2))
    assert both.request("a").try_acquire() == 0.0
    assert both.request("a").try_acquire() > 60  # its key
    assert both.request("b").try_acquire() == 0.0
    assert both.request("c").try_acquire() > 60  # the shared limit


def test_a_pause_holds_every_call_and_the_furthest_deadline_wins(server: RedisServer, name: str) -> None:
    shared = limiter(server, name, RateLimit(100, burst=5))
    shared.pause(0.4)
    assert 0.35 < shared.request(0).try_acquire() <= 0.4
    shared.pause(0.1)  # nearer: changes nothing
    assert 0.3 < shared.request(0).try_acquire() <= 0.4
    shared.pause(0.6)
    assert 0.55 < shared.request(0).try_acquire() <= 0.6


def test_calls_resume_after_a_pause_without_a_burst(server: RedisServer, name: str) -> None:
    shared = limiter(server, name, RateLimit(5, burst=5))
    shared.pause(0.2)
    time.sleep(0.25)  # 1.25 units ready by now: 1 at the end of the pause, then 5 a second
    assert shared.request(0).try_acquire() == 0.0
    wait = shared.request(1).try_acquire()  # not the burst of 5
    assert 0.1 < wait <= 0.15


def test_pausing_a_key_holds_that_key_only(server: RedisServer, name: str) -> None:
    keyed = limiter(server, name, RateLimit(10, burst=3, key=lambda item: item[0]))
    keyed.pause(0.3, key="a")
    assert 0.25 < keyed.request("a1").try_acquire() <= 0.3
    assert keyed.request("b1").try_acquire() == 0.0
    time.sleep(0.31)
    assert keyed.request("a2").try_acquire() == 0.0
    assert keyed.request("a3").try_acquire() > 0  # no burst on resume


def test_a_pause_of_a_key_in_a_limiter_without_keys_changes_nothing(server: RedisServer, name: str) -> None:
    shared = limiter(server, name, 10)
    shared.pause(5, key="a")
    assert shared.request(0).try_acquire() == 0.0


def test_a_throttled_call_pauses_what_it_drew_on(server: RedisServer, name: str) -> None:
    keyed = limiter(
        server, name, RateLimit(100, burst=10, key=lambda item: item[0]), RateLimit(1000, burst=10)
    )
    granted = keyed.request("a1")
    assert granted.try_acquire() == 0.0
    granted.finished(ItemResult.failure(0, ConnectionError("429")))
    granted.throttled(None)  # no pause asked: nothing changes (no adaptive rate)
    assert keyed.request("a2").try_acquire() == 0.0
    granted.throttled(0.3)  # Retry-After: 0.3
    assert 0.25 < keyed.request("a3").try_acquire() <= 0.3
    assert keyed.request("b1").try_acquire() == 0.0  # the shared limit is not paused: other keys go on


def test_settle_refunds_what_the_call_did_not_use(server: RedisServer, name: str) -> None:
    limit = RateLimit(200, burst=20, cost=lambda item: 20, settle=lambda item, result: result.value)
    tokens = limiter(server, name, limit)
    first = tokens.request("a")
    assert first.try_acquire() == 0.0
    second = tokens.request("b")
    assert 0.09 < second.try_acquire() <= 0.1  # the whole burst is taken
    first.finished(ItemResult.success(0, 2))  # it used 2 of the 20 tokens: 18 come back
    assert second.try_acquire() <= 0.011  # 2 tokens short: 10 ms at 200 tokens a second


def test_settle_charges_what_the_call_used_beyond_its_cost(server: RedisServer, name: str) -> None:
    limit = RateLimit(100, burst=10, cost=lambda item: 1, settle=lambda item, result: 11)
    tokens = limiter(server, name, limit)
    first = tokens.request("a")
    assert first.try_acquire() == 0.0
    first.finished(ItemResult.success(0, None))  # 10 more: the bucket is 1 unit in debt
    assert 0.015 < tokens.request("b").try_acquire() <= 0.02


def test_a_failing_settle_function_fails_the_item(server: RedisServer, name: str) -> None:
    limit = RateLimit(100, burst=10, cost=lambda item: 1, settle=lambda item, result: "lots")
    reservation = limiter(server, name, limit).request("a")
    assert reservation.try_acquire() == 0.0
    with pytest.raises(RateLimitCostError, match="the settle function"):
        reservation.finished(ItemResult.success(0, None))


def test_the_waiter_refused_first_is_served_first(server: RedisServer, name: str) -> None:
    limit = RateLimit(100, burst=10, cost=lambda item: item)
    tokens = limiter(server, name, limit)
    assert tokens.request(10).try_acquire() == 0.0
    big = tokens.request(10)
    wait = big.try_acquire()
    assert 0.09 < wait <= 0.1
    small = tokens.request(1)
    assert small.try_acquire() > 0.05  # there would be 1 token by now, but the big call is next
    time.sleep(wait)
    assert big.try_acquire() == 0.0
    assert small.try_acquire() > 0  # and then the bucket is empty again


def test_waiters_are_served_in_the_order_they_were_refused_in_every_process(
    server: RedisServer, name: str
) -> None:
    here, there = (
        limiter(server, name, RateLimit(10)),
        limiter(server, name, RateLimit(10)),
    )  # two "processes"
    assert here.request("a").try_acquire() == 0.0
    first, second, third = here.request("b"), there.request("c"), here.request("d")
    waits = [first.try_acquire(), second.try_acquire(), third.try_acquire()]
    # each is told to come back near its turn: one interval after the one ahead of it
    assert 0.09 < waits[0] <= 0.1
    assert 0.19 < waits[1] <= 0.2
    assert 0.29 < waits[2] <= 0.3
    time.sleep(waits[0])
    assert third.try_acquire() > 0  # early, and behind the others
    assert second.try_acquire() > 0  # behind the first
    assert first.try_acquire() == 0.0
    time.sleep(0.1)
    assert third.try_acquire() > 0
    assert second.try_acquire() == 0.0
    time.sleep(0.1)
    assert third.try_acquire() == 0.0


def test_a_waiter_that_misses_its_turn_loses_its_place(server: RedisServer, name: str) -> None:
    shared = limiter(server, name, RateLimit(20))
    assert shared.request(0).try_acquire() == 0.0
    vanished = shared.request(1)
    assert vanished.try_acquire() > 0  # and never asks again
    time.sleep(0.05 + 0.1 + 0.01)  # its turn, and the grace after it
    assert shared.request(2).try_acquire() == 0.0


def test_finished_says_whether_budget_came_back(server: RedisServer, name: str) -> None:
    used = {"a": 1, "b": 5, "c": 9}
    limit = RateLimit(100, burst=10, cost=lambda item: 5, settle=lambda item, result: used[item])
    tokens = limiter(server, name, limit)
    answers = []
    for item in used:
        reservation = tokens.request(item)
        acquire(reservation)
        answers.append(reservation.finished(ItemResult.success(0, None)))
    assert answers == [True, False, False]  # a refund; the same; a charge
    assert limiter(server, name, RateLimit(10)).request(0).finished(ItemResult.success(0, None)) is False


def test_a_cancelled_waiter_is_no_longer_served_first(server: RedisServer, name: str) -> None:
    tokens = limiter(server, name, RateLimit(100, burst=10, cost=lambda item: item))
    assert tokens.request(10).try_acquire() == 0.0
    big = tokens.request(10)
    assert big.try_acquire() > 0
    time.sleep(0.03)
    small = tokens.request(1)
    assert small.try_acquire() > 0  # held for the big one
    big.cancel()
    assert small.try_acquire() == 0.0


def test_idle_keys_expire(server: RedisServer, name: str, client: redis.Redis) -> None:
    keyed = limiter(server, name, RateLimit(10, key=lambda item: item))
    reservation = keyed.request("idle")
    assert reservation.try_acquire() == 0.0
    (bucket,) = reservation.buckets
    assert 1000 < client.pttl(bucket) <= 1101  # at rest in 0.1 s, kept 1 s more
    keyed.pause(0.2)
    pause_key = keyed.pause_key
    assert 1000 < client.pttl(pause_key) <= 1201  # the pause, plus the time to refill (0 at burst 1)
    time.sleep(1.35)
    assert client.exists(bucket, pause_key) == 0


def test_a_pause_outlives_its_deadline_with_a_burst_under_one(
    server: RedisServer, name: str, client: redis.Redis
) -> None:
    shared = limiter(server, name, RateLimit(10, burst=0.5, cost=lambda item: 0.5))
    shared.pause(0.3)
    assert 1250 < client.pttl(shared.pause_key) <= 1301
    assert 0.25 < shared.request(0).try_acquire() <= 0.3


def test_a_reservation_never_asked_costs_no_round_trip(server: RedisServer, name: str) -> None:
    shared = limiter(server, name, RateLimit(10, settle=lambda item, result: 1))
    reservation = shared.request(0)
    reservation.cancel()
    assert isinstance(reservation, RedisReservation)
    assert reservation.granted_at is None


@pytest.mark.parametrize(
    ("limits", "options", "error", "message"),
    [
        ((), {}, ValueError, "at least one limit"),
        (("ten",), {}, TypeError, "RateLimit objects or numbers"),
        ((10,), {"name": ""}, ValueError, "non-empty string"),
        ((10,), {"name": "a{b}"}, ValueError, "without"),
        ((10,), {"name": 3}, TypeError, "must be a string"),
        ((10,), {"on_unavailable": "ignore"}, ValueError, "fail_closed"),
        ((10,), {"timeout": 0}, ValueError, "timeout"),
        ((10,), {"client": "redis://x"}, TypeError, "redis.Redis"),
        ((10,), {"adaptive": True}, TypeError, "adaptive"),
    ],
)
def test_bad_arguments_are_refused(
    limits: tuple[object, ...], options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RedisLimiter(*limits, **options)  # type: ignore[arg-type]


def test_a_client_and_a_url_are_not_both_taken(client: redis.Redis) -> None:
    with pytest.raises(TypeError, match="not both"):
        RedisLimiter(10, client=client, url="redis://127.0.0.1:1/0")
