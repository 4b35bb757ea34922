"""W10: quotas: shared, composite and per-key limits, paced as exactly as one limit.

Every call records when it starts (``perf_counter``, in the worker) and sleeps ``call_s``
(the time a service takes to answer). The metric is *accuracy*: the achieved rate over
the rate the quota allows, (calls - 1) / (last start - first start) / rate, for the
binding figure of each case:

- "shared": two ``parallel_map`` calls in two threads share one ``Limiter`` at ``rate``;
  the combined starts of both.
- "composite": ``Limiter(RateLimit(rate), RateLimit(tokens_per_s, cost=tokens))`` with
  items of mixed token costs whose average makes the tokens limit bind at
  ``tokens_per_s / mean cost`` calls/s (half of ``rate``): the tokens started per second
  over ``tokens_per_s``.
- "keyed": ``RateLimit(per_key_rate, key=...)`` over ``keys`` keys whose items are
  interleaved; the accuracy of the worst key (each key's own starts).
- "redis": the ``pyarallel-redis`` limiter at ``rate``, through a ``redis-server`` the
  child starts on a free port of 127.0.0.1 (not timed). Also reported: the Redis round
  trips per ``try_acquire`` (commands the client wrote, each one request and one answer)
  and the microseconds per granted acquire, beside a bare ``PING``.

The baseline is the hand-written loop of W5, pacing the same starts against absolute
times (``t0 + i / rate``) on a ``ThreadPoolExecutor``: for "keyed", one loop over the
interleaved items at ``keys * per_key_rate``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from measure import expect_equal, user_imports
from model import Contender, Measurement, Metric, Params, Role, Target, TargetContext, Workload

from workloads.pools import PYARALLEL_DEFERRED

BASELINE = "hand-paced TPE"

Start = tuple[float, Any]  # (perf_counter at the start, the item)


def _items(variant: str, params: Params) -> list[Any]:
    if variant == "composite":
        costs = params["costs"]
        return [{"i": i, "tokens": costs[i % len(costs)]} for i in range(params["calls"])]
    if variant == "keyed":
        return [{"i": i, "key": i % params["keys"]} for i in range(params["calls"])]
    return [{"i": i} for i in range(params["calls"])]


def _rate(variant: str, params: Params) -> float:
    """The rate at which the quota lets the items start (calls per second)."""
    if variant == "composite":
        costs = params["costs"]
        return min(params["rate"], params["tokens_per_s"] / (sum(costs) / len(costs)))
    if variant == "keyed":
        return params["keys"] * params["per_key_rate"]
    return float(params["rate"])


def _accuracy(variant: str, starts: list[Start], params: Params) -> Measurement:
    expect_equal("number of calls started", len(starts), params["calls"])
    starts = sorted(starts, key=lambda start: start[0])
    if variant == "composite":
        tokens = sum(item["tokens"] for _, item in starts[1:])
        span = starts[-1][0] - starts[0][0]
        return Measurement({"accuracy": tokens / span / params["tokens_per_s"]}, {"span_s": span})
    if variant == "keyed":
        per_key: dict[int, list[float]] = defaultdict(list)
        for at, item in starts:
            per_key[item["key"]].append(at)
        rates = [(len(times) - 1) / (times[-1] - times[0]) for times in per_key.values()]
        worst = max(rates, key=lambda rate: abs(rate / params["per_key_rate"] - 1))
        return Measurement({"accuracy": worst / params["per_key_rate"]}, {"per_key_rates": rates})
    span = starts[-1][0] - starts[0][0]
    return Measurement({"accuracy": (len(starts) - 1) / span / params["rate"]}, {"span_s": span})


def _recorder(starts: list[Start], call_s: float) -> Callable[[Any], int]:
    def call(item: Any) -> int:
        starts.append((time.perf_counter(), item))
        time.sleep(call_s)
        return int(item["i"])

    return call


def run_hand_paced(variant: str, params: Params) -> Measurement:
    user_imports("concurrent.futures:ThreadPoolExecutor")
    from concurrent.futures import ThreadPoolExecutor

    starts: list[Start] = []
    call, items = _recorder(starts, params["call_s"]), _items(variant, params)
    rate = _rate(variant, params)
    if variant == "composite":
        offsets, total = [], 0.0
        for position, item in enumerate(items):  # each start waits for its own tokens
            if position:
                total += item["tokens"]
            offsets.append(total / params["tokens_per_s"])
    else:
        offsets = [i / rate for i in range(len(items))]
    with ThreadPoolExecutor(max_workers=params["workers"]) as pool:
        t0 = time.perf_counter()
        futures = []
        for item, offset in zip(items, offsets, strict=True):
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(call, item))
        expect_equal("results", [f.result() for f in futures], [item["i"] for item in items])
    return _accuracy(variant, starts, params)


@contextlib.contextmanager
def _redis_server() -> Iterator[str]:
    """A ``redis-server`` on a free port of 127.0.0.1 for the child's lifetime; its URL."""
    import shutil

    import redis

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen([*command, "--dir", directory], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(host="127.0.0.1", port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait()


def _counting_client(url: str) -> tuple[Any, list[int]]:
    """A Redis client and a one-element list counting the commands it writes."""
    import redis

    written = [0]

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            written[0] += 1
            super().send_packed_command(command, check_health)

    pool = redis.ConnectionPool.from_url(url, connection_class=Counting)
    return redis.Redis(connection_pool=pool), written


class _CountedLimiter:
    """A limiter counting how often its reservations are asked (``try_acquire``)."""

    def __init__(self, limiter: Any, asked: list[int]) -> None:
        self._limiter = limiter
        self._asked = asked

    def request(self, item: object) -> Any:
        return _CountedReservation(self._limiter.request(item), self._asked)


class _CountedReservation:
    def __init__(self, reservation: Any, asked: list[int]) -> None:
        self._reservation = reservation
        self._asked = asked
        self.lane = reservation.lane

    def try_acquire(self) -> float:
        self._asked[0] += 1
        return float(self._reservation.try_acquire())

    def cancel(self) -> None:
        self._reservation.cancel()

    def throttled(self, pause: float | None) -> None:
        self._reservation.throttled(pause)

    def finished(self, result: Any) -> Any:
        return self._reservation.finished(result)


def run_pyarallel_redis(variant: str, params: Params) -> Measurement:
    user_imports("pyarallel:parallel_map", "pyarallel_redis:RedisLimiter", *PYARALLEL_DEFERRED)
    from pyarallel_redis import RedisLimiter

    from pyarallel import RateLimit, parallel_map

    starts: list[Start] = []
    call, items = _recorder(starts, params["call_s"]), _items(variant, params)
    with _redis_server() as url:
        client, written = _counting_client(url)
        limiter = RedisLimiter(RateLimit(params["rate"]), client=client, name="w10")
        acquires = [0]
        counted = _CountedLimiter(limiter, acquires)
        before = written[0]
        result = parallel_map(call, items, workers=params["workers"], rate_limit=counted)
        round_trips = (written[0] - before) / acquires[0]
        expect_equal("results", list(result), [item["i"] for item in items])
        acquire_us, ping_us = _acquire_and_ping_us(client, params)
    measurement = _accuracy(variant, starts, params)
    measurement.metrics.update(round_trips=round_trips, acquire_us=acquire_us)
    measurement.extra.update(ping_us=ping_us, acquires=acquires[0])
    return measurement


def _acquire_and_ping_us(client: Any, params: Params) -> tuple[float, float]:
    """Microseconds per granted acquire of a limiter that always grants, and per PING."""
    from pyarallel_redis import RedisLimiter

    from pyarallel import RateLimit

    limiter = RedisLimiter(RateLimit(1e9, burst=1e9), client=client, name="w10-overhead")
    count = params["overhead_calls"]
    began = time.perf_counter()
    for i in range(count):
        assert limiter.request(i).try_acquire() == 0.0
    acquire = (time.perf_counter() - began) / count
    began = time.perf_counter()
    for _ in range(count):
        client.ping()
    return acquire * 1e6, (time.perf_counter() - began) / count * 1e6


def _limiter(variant: str, params: Params) -> Any:
    from pyarallel import Limiter, RateLimit

    if variant == "composite":
        tokens = RateLimit(
            params["tokens_per_s"], cost=lambda item: item["tokens"], burst=max(params["costs"])
        )
        return Limiter(RateLimit(params["rate"]), tokens)
    if variant == "keyed":
        return Limiter(RateLimit(params["per_key_rate"], key=lambda item: item["key"]))
    return Limiter(RateLimit(params["rate"]))


def run_pyarallel(variant: str, params: Params) -> Measurement:
    user_imports("pyarallel:parallel_map", "pyarallel:Limiter", *PYARALLEL_DEFERRED)
    from pyarallel import parallel_map

    starts: list[Start] = []
    call, items = _recorder(starts, params["call_s"]), _items(variant, params)
    limiter = _limiter(variant, params)
    if variant != "shared":
        result = parallel_map(call, items, workers=params["workers"], rate_limit=limiter)
        expect_equal("results", list(result), [item["i"] for item in items])
        return _accuracy(variant, starts, params)
    halves = [items[0::2], items[1::2]]
    results: list[list[int]] = [[], []]

    def run(half: int) -> None:
        result = parallel_map(call, halves[half], workers=params["workers"] // 2, rate_limit=limiter)
        results[half] = list(result)

    threads = [threading.Thread(target=run, args=(half,)) for half in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for half in (0, 1):
        expect_equal("results", results[half], [item["i"] for item in halves[half]])
    return _accuracy(variant, starts, params)


def _within(fraction: float) -> Callable[[float, TargetContext], bool]:
    def check(value: float, context: TargetContext) -> bool:
        return abs(value - 1) <= fraction

    return check


CONTENDERS: tuple[Contender, ...] = (
    Contender(BASELINE, run_hand_paced, Role.BASELINE),
    Contender("pyarallel", run_pyarallel, Role.SUBJECT, variants=("shared", "composite", "keyed")),
    Contender("pyarallel-redis", run_pyarallel_redis, Role.SUBJECT, variants=("redis",)),
)

_COMMON: Params = {
    "rate": 100,
    "tokens_per_s": 2000,
    "costs": [10, 30, 50, 70, 40],  # mean 40 tokens: the tokens limit binds at 50 calls/s
    "keys": 10,
    "per_key_rate": 10,
    "workers": 20,
    "call_s": 0.05,
    "overhead_calls": 2000,
}

WORKLOAD = Workload(
    id="W10",
    title="quotas: a shared Limiter, composite RPM+TPM limits, per-key pacing",
    variants=("shared", "composite", "keyed", "redis"),
    metrics=(
        Metric("accuracy", "achieved / allowed rate", "", digits=4),
        Metric("round_trips", "Redis round trips per acquire", "", ratio=False),
        Metric("acquire_us", "time per granted acquire", "us", ratio=False),
    ),
    contenders=CONTENDERS,
    targets=(
        Target("accuracy", "within 1%", _within(0.01), variants=("shared", "composite", "keyed")),
        Target("accuracy", "within 2%", _within(0.02), variants=("redis",)),
        Target("round_trips", "<= 2", lambda value, context: value <= 2, variants=("redis",)),
    ),
    full_params={**_COMMON, "calls": 300, "timeout_s": 60},
    quick_params={**_COMMON, "calls": 100, "timeout_s": 30},
)
