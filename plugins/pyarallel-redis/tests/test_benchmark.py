"""The benchmark helpers (``benchmarks_support.py``), run small: one round trip per
``try_acquire``, granted or refused, and ``parallel_map`` near its rate."""

from __future__ import annotations

from benchmarks_support import measure_acquire_overhead, measure_parallel_map_rate
from redis_server import RedisServer


def test_one_round_trip_per_try_acquire(server: RedisServer, name: str) -> None:
    overhead = measure_acquire_overhead(server.url, calls=300, name=name)
    print(overhead)
    assert overhead.round_trips_granted == 1.0
    assert overhead.round_trips_refused == 1.0
    assert overhead.evalsha_per_call == 1.0
    assert overhead.us_granted < 5000  # a local server: well under a millisecond, unless very busy


def test_300_calls_at_100_a_second(server: RedisServer, name: str) -> None:
    figures = measure_parallel_map_rate(server.url, calls=300, rate=100.0, name=name)
    print(figures)
    assert figures.most_in_one_second <= 100
    assert 90.0 <= figures.achieved_server <= 100.0
    assert figures.questions_per_grant < 4
