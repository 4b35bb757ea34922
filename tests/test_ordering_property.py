"""Property tests: results keep input order, every item finishes exactly once, failures land
exactly on the failing indices, and per-item retry counts attempts exactly."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyarallel import ItemResult, ParallelResult, Retry, parallel_iter, parallel_map, parallel_starmap

PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Values that may repeat, may be None, and mix types.
plain_values = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["a", "b", ""]))
worker_counts = st.integers(1, 8)
batch_sizes = st.one_of(st.none(), st.integers(1, 6))
tiny_delays = st.sampled_from([0.0, 0.0, 0.0005, 0.001, 0.002])


class Boom(Exception):
    """Raised by work items that are meant to fail."""


@st.composite
def work_items(draw: st.DrawFn) -> list[tuple[object, float, bool]]:
    """Items ``(value, delay, fail)``: the function sleeps ``delay`` then returns ``value``
    or raises ``Boom`` carrying the item."""
    values = draw(st.lists(plain_values, max_size=30))
    return [(value, draw(tiny_delays), draw(st.booleans())) for value in values]


def work(item: tuple[object, float, bool]) -> object:
    value, delay, fail = item
    if delay:
        time.sleep(delay)
    if fail:
        raise Boom(item)
    return value


def work_star(value: object, delay: float, fail: bool) -> object:
    return work((value, delay, fail))


def check_ordered_result(result: ParallelResult[object], items: list[tuple[object, float, bool]]) -> None:
    assert isinstance(result, ParallelResult)
    assert len(result) == len(items)
    failing = [i for i, (_, _, fail) in enumerate(items) if fail]
    succeeded = [i for i, _ in result.successes()]
    failed = [i for i, _ in result.failures()]
    # every index exactly once, either as a success or as a failure
    assert sorted(succeeded + failed) == list(range(len(items)))
    assert failed == failing
    assert result.ok == (not failing)
    for index, value in result.successes():
        assert value == items[index][0]
        assert type(value) is type(items[index][0])
    for index, error in result.failures():
        assert isinstance(error, Boom)
        assert error.args == (items[index],)
    if not failing:
        assert result.values() == [value for value, _, _ in items]
        assert list(result) == [value for value, _, _ in items]


@PROPERTY_SETTINGS
@given(items=work_items(), workers=worker_counts, batch_size=batch_sizes)
def test_parallel_map_keeps_input_order_and_places_failures(
    items: list[tuple[object, float, bool]], workers: int, batch_size: int | None
) -> None:
    result = parallel_map(work, items, workers=workers, executor="thread", batch_size=batch_size)
    check_ordered_result(result, items)


@PROPERTY_SETTINGS
@given(items=work_items(), workers=worker_counts, batch_size=batch_sizes)
def test_parallel_map_on_unsized_generator_keeps_input_order(
    items: list[tuple[object, float, bool]], workers: int, batch_size: int | None
) -> None:
    result = parallel_map(work, (item for item in items), workers=workers, batch_size=batch_size)
    check_ordered_result(result, items)


@PROPERTY_SETTINGS
@given(items=work_items(), workers=worker_counts, batch_size=batch_sizes)
def test_parallel_starmap_keeps_input_order_and_places_failures(
    items: list[tuple[object, float, bool]], workers: int, batch_size: int | None
) -> None:
    result = parallel_starmap(work_star, items, workers=workers, executor="thread", batch_size=batch_size)
    check_ordered_result(result, items)


@PROPERTY_SETTINGS
@given(
    values=st.lists(plain_values, max_size=40),
    failing_values=st.sets(st.one_of(st.none(), st.integers(-3, 3)), max_size=3),
    workers=worker_counts,
    batch_size=batch_sizes,
)
def test_parallel_map_over_raw_values_with_none_and_duplicates(
    values: list[object], failing_values: set[object], workers: int, batch_size: int | None
) -> None:
    def fn(value: object) -> object:
        if value in failing_values:
            raise Boom(value)
        return value

    result = parallel_map(fn, values, workers=workers, batch_size=batch_size)
    assert len(result) == len(values)
    expected_failed = [i for i, value in enumerate(values) if value in failing_values]
    assert [i for i, _ in result.failures()] == expected_failed
    assert [(i, v) for i, v in result.successes()] == [
        (i, v) for i, v in enumerate(values) if v not in failing_values
    ]
    for index, error in result.failures():
        assert error.args == (values[index],)


@PROPERTY_SETTINGS
@given(items=work_items(), workers=worker_counts, batch_size=batch_sizes)
def test_parallel_iter_yields_every_index_once_with_its_value(
    items: list[tuple[object, float, bool]], workers: int, batch_size: int | None
) -> None:
    seen: list[ItemResult[object]] = list(
        parallel_iter(work, (item for item in items), workers=workers, batch_size=batch_size)
    )
    assert sorted(result.index for result in seen) == list(range(len(items)))
    for result in seen:
        assert isinstance(result, ItemResult)
        value, _, fail = items[result.index]
        assert result.ok == (not fail)
        if fail:
            assert isinstance(result.error, Boom)
            assert result.error.args == (items[result.index],)
            assert result.value is None
        else:
            assert result.error is None
            assert result.value == value
            assert type(result.value) is type(value)


# -- retry ------------------------------------------------------------------------------


class Flaky:
    """Item ``(key, j)`` fails its first ``j`` attempts; counts calls per key."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, item: tuple[int, int]) -> str:
        key, failures = item
        with self._lock:
            self.calls[key] += 1
            attempt = self.calls[key]
        if attempt <= failures:
            raise Boom(key, attempt)
        return f"ok-{key}"


@PROPERTY_SETTINGS
@given(
    fail_counts=st.lists(st.integers(0, 4), max_size=20),
    attempts=st.integers(1, 4),
    workers=worker_counts,
    batch_size=batch_sizes,
)
def test_retry_succeeds_iff_failures_below_attempts_and_counts_calls(
    fail_counts: list[int], attempts: int, workers: int, batch_size: int | None
) -> None:
    flaky = Flaky()
    items = list(enumerate(fail_counts))
    result = parallel_map(
        flaky, items, workers=workers, batch_size=batch_size, retry=Retry(attempts=attempts, backoff=0)
    )
    assert len(result) == len(items)
    failed = dict(result.failures())
    succeeded = dict(result.successes())
    for key, failures in items:
        assert flaky.calls[key] == min(failures + 1, attempts)
        if failures < attempts:
            assert key not in failed
            assert succeeded[key] == f"ok-{key}"
        else:
            # the final error is the one of the last attempt
            assert isinstance(failed[key], Boom)
            assert failed[key].args == (key, attempts)
    assert set(flaky.calls) == {key for key, _ in items}


@PROPERTY_SETTINGS
@given(fail_counts=st.lists(st.integers(0, 4), max_size=20), attempts=st.integers(1, 4))
def test_retry_in_parallel_iter_and_starmap(fail_counts: list[int], attempts: int) -> None:
    flaky = Flaky()
    items = list(enumerate(fail_counts))
    streamed = list(parallel_iter(flaky, iter(items), workers=3, retry=Retry(attempts=attempts, backoff=0)))
    assert sorted(r.index for r in streamed) == list(range(len(items)))
    for r in streamed:
        assert r.ok == (fail_counts[r.index] < attempts)
        assert flaky.calls[r.index] == min(fail_counts[r.index] + 1, attempts)

    star_flaky = Flaky()
    starred = parallel_starmap(
        lambda key, failures: star_flaky((key, failures)),
        items,
        workers=3,
        retry=Retry(attempts=attempts, backoff=0),
    )
    assert [i for i, _ in starred.failures()] == [k for k, j in items if j >= attempts]
    assert dict(star_flaky.calls) == {k: min(j + 1, attempts) for k, j in items}


def fail_first_attempts_on_disk(item: tuple[str, int]) -> tuple[int, int]:
    """Process-safe flaky function: each attempt appends a line to the item's own file."""
    path, failures = item
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    attempt = len(Path(path).read_text().splitlines())
    if attempt <= failures:
        raise Boom(path, attempt)
    return attempt, os.getpid()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("fail_counts", "attempts"),
    [([0, 1, 2, 3, 5], 3), ([2, 0, 1], 2)],
)
def test_retry_on_process_executor(tmp_path: Path, fail_counts: list[int], attempts: int) -> None:
    items = [(str(tmp_path / f"item-{i}.log"), j) for i, j in enumerate(fail_counts)]
    result = parallel_map(
        fail_first_attempts_on_disk,
        items,
        workers=2,
        executor="process",
        retry=Retry(attempts=attempts, backoff=0),
    )
    assert len(result) == len(items)
    failed = dict(result.failures())
    succeeded = dict(result.successes())
    for index, (path, failures) in enumerate(items):
        calls = Path(path).read_text().splitlines()
        assert len(calls) == min(failures + 1, attempts)
        assert all(int(pid) != os.getpid() for pid in calls)
        if failures < attempts:
            assert succeeded[index][0] == failures + 1
        else:
            assert isinstance(failed[index], Boom)
            assert failed[index].args == (path, attempts)
