"""Benchmarks of the Redis limiter against a local redis-server.

- :func:`measure_acquire_overhead`: round trips and microseconds per ``try_acquire``
  (granted and refused), beside a ``PING`` (the bare round trip) and the local
  ``pyarallel.Limiter``. Round trips are counted on the client's connections (every
  command written is one request and one answer: nothing is pipelined) and checked
  against the server's ``INFO commandstats`` (``EVALSHA`` calls).
- :func:`measure_parallel_map_rate`: the rate ``parallel_map`` achieves through the
  limiter (300 calls at 100 a second by default), on the server's grant times and on the
  calls' own start times, and how many questions (round trips) it asked per grant.

Run ``python benchmarks_support.py`` (from this directory) to start a redis-server on a
free port (see ``tests/redis_server.py``), run both and print the figures;
``tests/test_benchmark.py`` runs them too, smaller, and checks the figures.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from pyarallel_redis import RedisLimiter, RedisReservation

import pyarallel
from pyarallel import ItemResult, Limiter, RateLimit

__all__ = [
    "AcquireOverhead",
    "CountingConnection",
    "RateFigures",
    "RecordingLimiter",
    "measure_acquire_overhead",
    "measure_parallel_map_rate",
]


class CountingConnection(redis.Connection):
    """A connection counting the commands it writes: each is one round trip."""

    sent = 0
    _lock = threading.Lock()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        with CountingConnection._lock:
            CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def counting_client(url: str) -> redis.Redis:
    return redis.Redis(
        connection_pool=redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    )


def _evalsha_calls(admin: redis.Redis) -> int:
    return int(admin.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


@dataclass(frozen=True)
class AcquireOverhead:
    calls: int
    round_trips_granted: float  # per try_acquire that was granted
    round_trips_refused: float  # per try_acquire that was refused
    evalsha_per_call: float  # the server's count, per try_acquire
    us_granted: float  # microseconds per granted try_acquire (request() included)
    us_refused: float
    us_ping: float  # one bare round trip
    us_local: float  # the local pyarallel.Limiter, per granted request() + try_acquire()
    us_server_script: float  # the script's own time on the server, per call (commandstats)

    def __str__(self) -> str:
        return (
            f"{self.calls} calls: round trips per try_acquire: {self.round_trips_granted:.3f} granted, "
            f"{self.round_trips_refused:.3f} refused (server: {self.evalsha_per_call:.3f} EVALSHA per call); "
            f"µs per acquire: {self.us_granted:.0f} granted, {self.us_refused:.0f} refused "
            f"(PING {self.us_ping:.0f}, script on the server {self.us_server_script:.1f}, "
            f"local Limiter {self.us_local:.1f})"
        )


def measure_acquire_overhead(url: str, *, calls: int = 2000, name: str = "bench-overhead") -> AcquireOverhead:
    """Round trips and time per ``try_acquire`` on the server at ``url``."""
    admin = redis.Redis.from_url(url)
    client = counting_client(url)
    open_limit = RedisLimiter(RateLimit(1e9, burst=1e9), client=client, name=f"{name}-open-{time.time_ns()}")
    closed_limit = RedisLimiter(RateLimit(1, "hour"), client=client, name=f"{name}-closed-{time.time_ns()}")
    assert open_limit.request(0).try_acquire() == 0.0  # connect, load the script
    assert closed_limit.request(0).try_acquire() == 0.0  # its one unit: every later call is refused

    def timed(limiter: RedisLimiter, granted: bool) -> tuple[float, float, float]:
        sent, evalsha = CountingConnection.sent, _evalsha_calls(admin)
        started = time.perf_counter()
        for n in range(calls):
            wait = limiter.request(n).try_acquire()
            assert (wait == 0.0) is granted
        seconds = time.perf_counter() - started
        return (
            (CountingConnection.sent - sent) / calls,
            (_evalsha_calls(admin) - evalsha) / calls,
            seconds / calls * 1e6,
        )

    admin.config_resetstat()
    trips_granted, evalsha_granted, us_granted = timed(open_limit, True)
    stats = admin.info("commandstats")["cmdstat_evalsha"]
    script_us = float(stats["usec"]) / float(stats["calls"])
    trips_refused, evalsha_refused, us_refused = timed(closed_limit, False)
    started = time.perf_counter()
    for _ in range(calls):
        client.ping()
    us_ping = (time.perf_counter() - started) / calls * 1e6
    local = Limiter(RateLimit(1e9, burst=1e9))
    started = time.perf_counter()
    for n in range(calls):
        local.request(n).try_acquire()
    us_local = (time.perf_counter() - started) / calls * 1e6
    client.close()
    admin.close()
    return AcquireOverhead(
        calls=calls,
        round_trips_granted=trips_granted,
        round_trips_refused=trips_refused,
        evalsha_per_call=(evalsha_granted + evalsha_refused) / 2,
        us_granted=us_granted,
        us_refused=us_refused,
        us_ping=us_ping,
        us_local=us_local,
        us_server_script=script_us,
    )


@dataclass(frozen=True)
class RateFigures:
    calls: int
    rate: float
    seconds: float  # the whole run
    achieved_server: float  # (calls - 1) / (last grant - first grant), the server's clock
    achieved_client: float  # the same on the calls' own start times (time.monotonic())
    most_in_one_second: int  # the most grants in any 1-second window (server clock)
    questions_per_grant: float  # try_acquire calls (round trips) per grant

    def __str__(self) -> str:
        return (
            f"{self.calls} calls at {self.rate:g}/s: achieved {self.achieved_server:.2f}/s "
            f"({100 * self.achieved_server / self.rate:.1f} %; "
            f"calls' own clock {self.achieved_client:.2f}/s), "
            f"run {self.seconds:.2f} s, at most {self.most_in_one_second} in any second, "
            f"{self.questions_per_grant:.2f} try_acquire per grant"
        )


class RecordingLimiter:
    """A :class:`~pyarallel_redis.RedisLimiter`, recording every grant's server time
    (``granted``) and counting the questions asked (``asked``)."""

    def __init__(self, limiter: RedisLimiter) -> None:
        self.limiter = limiter
        self.granted: list[float] = []
        self.asked = 0

    def request(self, item: object) -> RecordedReservation:
        return RecordedReservation(self, self.limiter.request(item))


class RecordedReservation:
    def __init__(self, owner: RecordingLimiter, reservation: RedisReservation) -> None:
        self.owner = owner
        self.reservation = reservation
        self.lane = reservation.lane

    def try_acquire(self) -> float:
        self.owner.asked += 1
        wait = self.reservation.try_acquire()
        if wait == 0.0 and self.reservation.granted_at is not None:
            self.owner.granted.append(self.reservation.granted_at)
        return wait

    def cancel(self) -> None:
        self.reservation.cancel()

    def throttled(self, pause: float | None) -> None:
        self.reservation.throttled(pause)

    def finished(self, result: ItemResult[Any]) -> bool:
        return self.reservation.finished(result)


def _most_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def measure_parallel_map_rate(
    url: str, *, calls: int = 300, rate: float = 100.0, workers: int = 4, name: str = "bench-rate"
) -> RateFigures:
    """Run ``parallel_map`` over ``calls`` items under ``RedisLimiter(RateLimit(rate))``."""
    starts: list[float] = []
    lock = threading.Lock()

    def call(item: int) -> int:
        with lock:
            starts.append(time.monotonic())
        return item

    limiter = RecordingLimiter(RedisLimiter(RateLimit(rate), url=url, name=f"{name}-{time.time_ns()}"))
    started = time.monotonic()
    result = pyarallel.parallel_map(call, range(calls), workers=workers, rate_limit=limiter)
    seconds = time.monotonic() - started
    assert result.ok, result.failures()
    granted = sorted(limiter.granted)
    ordered = sorted(starts)
    limiter.limiter.close()
    return RateFigures(
        calls=calls,
        rate=rate,
        seconds=seconds,
        achieved_server=(len(granted) - 1) / (granted[-1] - granted[0]),
        achieved_client=(len(ordered) - 1) / (ordered[-1] - ordered[0]),
        most_in_one_second=_most_in_window(granted, 1.0),
        questions_per_grant=limiter.asked / len(granted),
    )


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
    from redis_server import MISSING_SERVER, RedisServer, find_redis_server

    binary = find_redis_server()
    if binary is None:
        raise SystemExit(MISSING_SERVER)
    with RedisServer(binary) as server:
        print(measure_acquire_overhead(server.url))
        print(measure_parallel_map_rate(server.url))


if __name__ == "__main__":
    main()
