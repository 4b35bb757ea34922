"""Timing behaviour of rate limiting and per-item retry, with generous margins."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict

import pytest

from pyarallel import RateLimit, Retry, parallel_iter, parallel_map

# Scheduling latency on a loaded machine: how much a measured gap between two call starts
# may fall short of the configured interval (each start is measured in a worker thread, and
# two dispatch latencies differ), and how much a gap may exceed the configured one.
SHORT = 0.03
LATE = 0.3


class StartRecorder:
    """A work function that records the start time of every call, per item."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.starts: list[float] = []
        self.by_item: dict[object, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, item: object) -> object:
        now = time.monotonic()
        with self._lock:
            self.starts.append(now)
            self.by_item[item].append(now)
            attempt = len(self.by_item[item])
        if attempt <= self.fail_first:
            raise ConnectionError(item, attempt)
        return item

    def gaps(self) -> list[float]:
        starts = sorted(self.starts)
        return [b - a for a, b in itertools.pairwise(starts)]


# -- rate limit -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_rate_limit_paces_starts_smoothly_without_initial_burst() -> None:
    recorder = StartRecorder()
    t0 = time.monotonic()
    result = parallel_map(recorder, range(8), workers=8, rate_limit=RateLimit(20))
    elapsed = time.monotonic() - t0
    assert result.values() == list(range(8))
    gaps = recorder.gaps()
    assert len(gaps) == 7
    # the first two starts are not together: no burst, not even at the start
    assert gaps[0] >= 0.05 - SHORT
    assert min(gaps) >= 0.05 - SHORT, gaps
    assert sorted(recorder.starts)[-1] - sorted(recorder.starts)[0] >= 7 * 0.05 - SHORT
    assert elapsed < 7 * 0.05 + 2.0


@pytest.mark.timeout(30)
def test_rate_limit_no_burst_at_low_rate() -> None:
    recorder = StartRecorder()
    parallel_map(recorder, range(3), workers=3, rate_limit=RateLimit(5))
    gaps = recorder.gaps()
    assert gaps[0] >= 0.2 - SHORT
    assert gaps[1] >= 0.2 - SHORT


@pytest.mark.timeout(30)
def test_every_attempt_including_retries_draws_a_token() -> None:
    recorder = StartRecorder(fail_first=1)
    result = parallel_map(
        recorder,
        ["a", "b", "c"],
        workers=3,
        rate_limit=RateLimit(20),
        retry=Retry(attempts=2, backoff=0, jitter=False),
    )
    assert result.values() == ["a", "b", "c"]
    assert len(recorder.starts) == 6
    starts = sorted(recorder.starts)
    # six attempts at 20/s need at least five intervals
    assert starts[-1] - starts[0] >= 5 * 0.05 - SHORT
    assert min(recorder.gaps()) >= 0.05 - SHORT


@pytest.mark.timeout(30)
@pytest.mark.parametrize("shorthand", [20, 20.0])
def test_number_shorthand_means_calls_per_second(shorthand: float) -> None:
    recorder = StartRecorder()
    result = parallel_map(recorder, range(5), workers=5, rate_limit=shorthand)
    assert result.values() == list(range(5))
    starts = sorted(recorder.starts)
    assert min(recorder.gaps()) >= 0.05 - SHORT
    assert starts[-1] - starts[0] >= 4 * 0.05 - SHORT
    # per second, not per minute: five calls take well under a second
    assert starts[-1] - starts[0] < 4 * 0.05 + 1.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("spec", "interval"), [(RateLimit(600, "minute"), 0.1), (RateLimit(36_000, "hour"), 0.1)]
)
def test_rate_limit_per_minute_and_hour(spec: RateLimit, interval: float) -> None:
    assert spec.per_second == pytest.approx(1 / interval)
    recorder = StartRecorder()
    parallel_map(recorder, range(4), workers=4, rate_limit=spec)
    starts = sorted(recorder.starts)
    assert min(recorder.gaps()) >= interval - SHORT
    assert starts[-1] - starts[0] >= 3 * interval - SHORT
    assert starts[-1] - starts[0] < 3 * interval + 1.5


def test_rate_limit_minute_is_slow() -> None:
    """RateLimit(60, "minute") is one call per second: the second of two calls waits ~1 s."""
    recorder = StartRecorder()
    parallel_map(recorder, range(2), workers=2, rate_limit=RateLimit(60, "minute"))
    assert recorder.gaps()[0] >= 1.0 - SHORT


@pytest.mark.timeout(30)
def test_rate_limit_in_stream() -> None:
    recorder = StartRecorder()
    results = list(parallel_iter(recorder, iter(range(5)), workers=5, rate_limit=RateLimit(20)))
    assert sorted(r.index for r in results) == list(range(5))
    assert min(recorder.gaps()) >= 0.05 - SHORT


# -- retry ------------------------------------------------------------------------------


def test_only_the_failing_item_is_retried() -> None:
    calls: dict[int, int] = defaultdict(int)
    lock = threading.Lock()

    def fn(v: int) -> int:
        with lock:
            calls[v] += 1
            attempt = calls[v]
        if v == 2 and attempt < 3:
            raise OSError(attempt)
        return v

    result = parallel_map(fn, range(6), workers=3, retry=Retry(attempts=3, backoff=0.01))
    assert result.values() == list(range(6))
    assert dict(calls) == {0: 1, 1: 1, 2: 3, 3: 1, 4: 1, 5: 1}


@pytest.mark.timeout(30)
def test_retry_delays_double_and_are_capped_without_jitter() -> None:
    recorder = StartRecorder(fail_first=99)
    retry = Retry(attempts=6, backoff=0.05, max_delay=0.1, jitter=False)
    result = parallel_map(recorder, ["x"], workers=1, retry=retry)
    assert not result.ok
    starts = recorder.by_item["x"]
    assert len(starts) == 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    expected = [min(0.05 * 2**n, 0.1) for n in range(5)]  # 0.05, 0.1, 0.1, 0.1, 0.1
    assert expected == [retry.delay(n) for n in range(1, 6)]
    for gap, delay in zip(gaps, expected, strict=True):
        assert delay - 0.005 <= gap <= delay + LATE, (gaps, expected)
    # capped: without max_delay the last gap would be 0.8 s
    assert gaps[-1] < 0.8 - 0.2


@pytest.mark.timeout(30)
def test_retry_delays_grow_exponentially() -> None:
    recorder = StartRecorder(fail_first=99)
    result = parallel_map(recorder, ["y"], retry=Retry(attempts=4, backoff=0.05, jitter=False))
    assert not result.ok
    starts = recorder.by_item["y"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2], strict=True):
        assert delay - 0.005 <= gap <= delay + LATE, gaps


@pytest.mark.timeout(30)
def test_retry_jitter_stays_between_half_and_full_delay() -> None:
    recorder = StartRecorder(fail_first=99)
    parallel_map(recorder, range(4), workers=4, retry=Retry(attempts=3, backoff=0.1, jitter=True))
    for starts in recorder.by_item.values():
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        for gap, delay in zip(gaps, [0.1, 0.2], strict=True):
            assert delay * 0.5 - 0.005 <= gap <= delay + LATE, gaps


def test_retry_on_filters_exception_types() -> None:
    calls: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    raises = {"conn": ConnectionError, "key": KeyError, "timeout": TimeoutError, "value": ValueError}

    def fn(name: str) -> str:
        with lock:
            calls[name] += 1
        raise raises[name](name)

    result = parallel_map(
        fn, list(raises), workers=2, retry=Retry(attempts=3, backoff=0, on=(ConnectionError, TimeoutError))
    )
    failures = dict(result.failures())
    assert dict(calls) == {"conn": 3, "key": 1, "timeout": 3, "value": 1}
    assert [type(failures[i]) for i in range(4)] == [ConnectionError, KeyError, TimeoutError, ValueError]


def test_retry_on_matches_subclasses_and_accepts_a_single_type() -> None:
    calls: dict[int, int] = defaultdict(int)
    lock = threading.Lock()

    def fn(v: int) -> int:
        with lock:
            calls[v] += 1
        if v == 0:
            raise ConnectionResetError(v)  # an OSError subclass
        raise ArithmeticError(v)

    parallel_map(fn, [0, 1], retry=Retry(attempts=4, backoff=0, on=(OSError,)))
    assert dict(calls) == {0: 4, 1: 1}
    calls.clear()
    parallel_map(fn, [0, 1], retry=Retry(attempts=2, backoff=0, on=ArithmeticError))  # type: ignore[arg-type]
    assert dict(calls) == {0: 1, 1: 2}


def test_final_error_is_the_last_attempts_exception_object() -> None:
    raised: dict[int, list[Exception]] = defaultdict(list)
    lock = threading.Lock()

    def fn(v: int) -> int:
        error = ValueError(v, len(raised[v]) + 1)
        with lock:
            raised[v].append(error)
        raise error

    result = parallel_map(fn, [0, 1, 2], workers=3, retry=Retry(attempts=3, backoff=0))
    for index, error in result.failures():
        assert len(raised[index]) == 3
        assert len({id(e) for e in raised[index]}) == 3
        assert error is raised[index][-1]
        assert error is not raised[index][0]


def test_final_error_when_on_filter_stops_early_is_that_attempts_exception() -> None:
    raised: list[Exception] = []

    def fn(v: int) -> int:
        error: Exception = ConnectionError("first") if not raised else KeyError("second")
        raised.append(error)
        raise error

    result = parallel_map(fn, [0], retry=Retry(attempts=5, backoff=0, on=(ConnectionError,)))
    assert len(raised) == 2
    assert result.failures()[0][1] is raised[1]


@pytest.mark.timeout(30)
def test_retry_backoff_does_not_occupy_a_worker() -> None:
    events: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def fn(name: str) -> str:
        start = time.monotonic()
        try:
            if name == "A" and not events["A"]:
                raise ConnectionError("A fails its first attempt")
            time.sleep(0.05)
            return name
        finally:
            events[name].append((start, time.monotonic()))

    result = parallel_map(fn, ["A", "B", "C"], workers=1, retry=Retry(attempts=2, backoff=0.5, jitter=False))
    assert result.values() == ["A", "B", "C"]
    (_, a1_end), (a2_start, _) = events["A"]
    (b_start, b_end), (_, c_end) = events["B"][0], events["C"][0]
    assert a2_start - a1_end >= 0.5 - 0.005
    # B and C ran on the single worker while A waited out its backoff
    assert a1_end <= b_start < a2_start
    assert b_end <= a2_start
    assert c_end <= a2_start
    assert b_start - a1_end < 0.4


@pytest.mark.timeout(30)
def test_retry_backoff_does_not_occupy_a_worker_in_a_stream() -> None:
    order: list[str] = []
    attempts: dict[str, int] = defaultdict(int)

    def fn(name: str) -> str:
        attempts[name] += 1
        order.append(f"{name}{attempts[name]}")
        if name == "A" and attempts[name] == 1:
            raise ConnectionError(name)
        return name

    results = list(
        parallel_iter(
            fn, iter(["A", "B", "C"]), workers=1, retry=Retry(attempts=2, backoff=0.4, jitter=False)
        )
    )
    assert order == ["A1", "B1", "C1", "A2"]
    assert [r.index for r in results] == [1, 2, 0]
