"""Edges of the public API (issue 9, defects 4, 7 and 8).

- The blocking API refuses an ``async def`` function (or a partial of one, an object with
  an ``async def __call__``, a bound async method, an ``@async_parallel`` function) with a
  ``TypeError`` that points at the async API, before any work starts: the input is not
  read, nothing is called. ``parallel_iter`` refuses at call time, not at the first
  ``next()``; ``@parallel`` refuses at decoration time.
- Error messages say what is wrong: ``Retry(on=...)`` shows the value as given,
  ``ParallelResult`` names the index repeated or missing, ``ItemResult.failure`` wants an
  exception, and a ``RateLimit`` too slow to pace is refused when it is built (the rate
  must be at least ``1e-300`` calls per second), never with a ``ZeroDivisionError`` later.
- Compatibility with the reference implementation: the messages and exception types of
  ``RateLimit`` and ``ItemResult`` construction.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyarallel import (
    ItemResult,
    ParallelResult,
    RateLimit,
    Retry,
    RunStatus,
    async_parallel,
    async_parallel_map,
    parallel,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)

# -- the blocking API refuses async functions ------------------------------------------------------


async def async_identity(x: Any) -> Any:
    return x


async def async_add(x: int, y: int) -> int:
    return x + y


class AsyncCallable:
    async def __call__(self, x: Any) -> Any:
        return x


class WithAsyncMethod:
    async def method(self, x: Any) -> Any:
        return x


ASYNC_CALLABLES: dict[str, Callable[[], Any]] = {
    "async_def": lambda: async_identity,
    "partial_of_async_def": lambda: functools.partial(async_add, 1),
    "async_call_object": AsyncCallable,
    "bound_async_method": lambda: WithAsyncMethod().method,
    "async_parallel_function": lambda: async_parallel(async_identity),
}


class Pulls:
    """An input generator that records whether anything was pulled from it."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.pulled = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.pulled += 1
            yield item


def _check_refusal(raised: pytest.ExceptionInfo[TypeError], name: str) -> None:
    message = str(raised.value)
    assert re.search(rf"(^|\W){re.escape(name)}\W", message), message
    assert "async_parallel_map" in message
    assert "async def" in message


def _no_coroutine_was_created(caught: list[warnings.WarningMessage]) -> None:
    gc.collect()
    never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert never_awaited == []


@pytest.mark.parametrize("kind", list(ASYNC_CALLABLES))
def test_parallel_map_refuses_an_async_function_before_reading_the_input(kind: str) -> None:
    source = Pulls([1, 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError) as raised:
            parallel_map(ASYNC_CALLABLES[kind](), iter(source))
        _no_coroutine_was_created(caught)
    _check_refusal(raised, "fn")
    assert source.pulled == 0


def test_parallel_map_refuses_an_async_function_given_a_list() -> None:
    with pytest.raises(TypeError) as raised:
        parallel_map(async_identity, [1, 2])
    _check_refusal(raised, "fn")


@pytest.mark.parametrize("kind", list(ASYNC_CALLABLES))
def test_parallel_starmap_refuses_an_async_function(kind: str) -> None:
    source = Pulls([(1,), (2,)])
    with pytest.raises(TypeError) as raised:
        parallel_starmap(ASYNC_CALLABLES[kind](), iter(source))
    _check_refusal(raised, "fn")
    assert source.pulled == 0


@pytest.mark.parametrize("kind", list(ASYNC_CALLABLES))
def test_parallel_iter_refuses_an_async_function_when_called(kind: str) -> None:
    source = Pulls([1, 2])
    with pytest.raises(TypeError) as raised:
        parallel_iter(ASYNC_CALLABLES[kind](), iter(source))  # no next(): refused at call time
    _check_refusal(raised, "fn")
    assert source.pulled == 0


def test_the_options_form_and_the_process_executor_refuse_too() -> None:
    source = Pulls([1, 2])
    for call in (
        lambda: parallel_map(async_identity, iter(source), executor="process", workers=2),
        lambda: parallel_map(async_identity, iter(source), batch_size=2, timeout=5),
        lambda: parallel_iter(async_identity, iter(source), executor="process"),
    ):
        with pytest.raises(TypeError) as raised:
            call()
        _check_refusal(raised, "fn")
    assert source.pulled == 0


@pytest.mark.parametrize("kind", list(ASYNC_CALLABLES))
def test_parallel_decorator_refuses_an_async_function(kind: str) -> None:
    function = ASYNC_CALLABLES[kind]()
    with pytest.raises(TypeError) as bare:
        parallel(function)
    _check_refusal(bare, "@parallel")
    with pytest.raises(TypeError) as with_options:
        parallel(workers=2)(function)
    _check_refusal(with_options, "@parallel")


def test_parallel_decorator_refuses_async_static_and_class_methods() -> None:
    with pytest.raises(TypeError) as static:

        class Static:
            @parallel
            @staticmethod
            async def method(x: int) -> int:
                return x

    _check_refusal(static, "@parallel")
    with pytest.raises(TypeError) as klass:

        class Klass:
            @parallel
            @classmethod
            async def method(cls, x: int) -> int:
                return x

    _check_refusal(klass, "@parallel")


def test_regular_callables_are_still_accepted() -> None:
    class Callable_:
        def __call__(self, x: int) -> int:
            return x + 1

    assert parallel_map(Callable_(), [1, 2]) == [2, 3]
    assert parallel_map(functools.partial(pow, 2), [3, 4]) == [8, 16]
    assert parallel_map(int, ["5"]) == [5]
    assert parallel(lambda x: x * 2).map([1]) == [2]
    # and the async API still takes the async ones
    assert asyncio.run(async_parallel_map(functools.partial(async_add, 1), [1, 2])) == [2, 3]
    assert asyncio.run(async_parallel_map(AsyncCallable(), [7])) == [7]


# -- error messages that say what is wrong -------------------------------------------------------


def test_retry_on_a_non_exception_class_shows_it_as_given() -> None:
    with pytest.raises(TypeError) as raised:
        Retry(on=int)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "<class 'int'>" in message
    assert "(<class 'int'>,)" not in message
    assert "Retry on" in message


def test_retry_on_a_bad_tuple_or_list_shows_it_as_given() -> None:
    with pytest.raises(TypeError, match=re.escape("(<class 'ValueError'>, <class 'int'>)")):
        Retry(on=(ValueError, int))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("[<class 'ValueError'>]")):
        Retry(on=[ValueError])  # type: ignore[arg-type]


def test_retry_on_one_exception_class_is_kept_as_a_tuple() -> None:
    assert Retry(on=ValueError).on == (ValueError,)
    assert Retry(on=(KeyError, SystemExit)).on == (KeyError, SystemExit)
    assert Retry().on is None


@pytest.mark.parametrize(
    ("indices", "repeated"),
    [([0, 0], 0), ([0, 1, 1], 1), ([1, 0, 0], 0), ([2, 0, 1, 2], 2), ([0, 1, 2, 3, 3], 3)],
)
def test_parallel_result_names_the_repeated_index(indices: list[int], repeated: int) -> None:
    results = [ItemResult(index, value=position) for position, index in enumerate(indices)]
    with pytest.raises(ValueError, match="ParallelResult needs") as raised:
        ParallelResult(results)
    message = str(raised.value)
    assert f"index {repeated} is repeated" in message
    assert re.findall(r"index (\d+) is", message) == [str(repeated)]


@pytest.mark.parametrize(("indices", "missing"), [([0, 2], 1), ([1], 0), ([0, 1, 3, 4], 2), ([3, 1, 0], 2)])
def test_parallel_result_names_the_missing_index(indices: list[int], missing: int) -> None:
    with pytest.raises(ValueError, match="ParallelResult needs") as raised:
        ParallelResult([ItemResult(index, value=index) for index in indices])
    message = str(raised.value)
    assert f"index {missing} is missing" in message
    assert re.findall(r"index (\d+) is", message) == [str(missing)]


def test_parallel_result_with_every_index_once_in_any_order() -> None:
    result = ParallelResult([ItemResult(2, value="c"), ItemResult(0, value="a"), ItemResult(1, value=None)])
    assert result == ["a", None, "c"]


@pytest.mark.parametrize("error", [None, "boom", ValueError, 3])
def test_item_result_failure_needs_an_exception_instance(error: Any) -> None:
    with pytest.raises(TypeError):
        ItemResult.failure(0, error)


def test_item_result_error_must_be_an_exception_instance() -> None:
    with pytest.raises(TypeError):
        ItemResult(0, error="boom")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ItemResult(0, error=ValueError)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("count", "per"),
    [(5e-324, "hour"), (5e-324, "second"), (1e-297, "hour"), (1e-300, "minute"), (1e-310, "second")],
)
def test_a_rate_too_slow_to_pace_is_refused_when_built(count: float, per: Any) -> None:
    with pytest.raises(ValueError, match="RateLimit count"):
        RateLimit(count, per)


def test_a_number_rate_too_slow_to_pace_is_refused_before_the_run() -> None:
    source = Pulls([1, 2])
    with pytest.raises(ValueError, match=r"^rate_limit=5e-324 cannot be used: RateLimit count"):
        parallel_map(abs, iter(source), rate_limit=5e-324)
    with pytest.raises(ValueError, match=r"^rate_limit=5e-324 cannot be used"):
        asyncio.run(async_parallel_map(async_identity, iter(source), rate_limit=5e-324))
    assert source.pulled == 0


@pytest.mark.parametrize(
    ("count", "per"), [(1e-200, "hour"), (1e-300, "second"), (1, "hour"), (1e-6, "minute")]
)
def test_a_slow_but_sane_rate_is_accepted(count: float, per: Any) -> None:
    # The bound is 1e-300 calls per second: 1e-200 an hour is slower than anyone needs,
    # but above it.
    rate = RateLimit(count, per)
    assert rate.per_second > 0
    assert rate.per_second >= 1e-300
    assert 1 / rate.per_second < float("inf")


@pytest.mark.parametrize(
    "rate", [RateLimit(1, "hour"), RateLimit(1e-200, "hour")], ids=["1/hour", "1e-200/hour"]
)
def test_a_slow_rate_runs_its_first_call_at_once(rate: RateLimit) -> None:
    assert parallel_map(abs, [-3], rate_limit=rate) == [3]
    assert asyncio.run(async_parallel_map(async_identity, [4], rate_limit=rate)) == [4]


def test_a_stream_at_one_call_an_hour_gives_its_first_result() -> None:
    stream = parallel_iter(abs, [-1, -2, -3], rate_limit=RateLimit(1, "hour"))
    assert next(stream) == ItemResult(0, value=1)
    stream.close()  # the second call is an hour away: stop before it


@pytest.mark.parametrize("rate", [RateLimit(1e-200, "hour"), RateLimit(1e-300), RateLimit(1e-10)])
def test_a_rate_accepted_by_rate_limit_never_overflows_the_sync_driver(rate: RateLimit) -> None:
    # The next token is more than threading.TIMEOUT_MAX (~9.2e9 s) away: the driver must
    # wait for it in bounded steps, not raise OverflowError from its queue's get().
    stream = parallel_iter(abs, [-1, -2], rate_limit=rate)
    assert next(stream) == ItemResult(0, value=1)
    stream.close()


@pytest.mark.parametrize(
    "rate", [RateLimit(1, "hour"), RateLimit(1e-200, "hour")], ids=["1/hour", "1e-200/hour"]
)
def test_a_slow_rate_waits_for_its_next_token_until_the_timeout(rate: RateLimit) -> None:
    result = parallel_map(abs, [-1, -2], rate_limit=rate, timeout=0.05)
    assert result.status is RunStatus.TIMED_OUT
    assert result.successes() == [(0, 1)]
    assert [index for index, _ in result.failures()] == [1]
    async_result = asyncio.run(async_parallel_map(async_identity, [1, 2], rate_limit=rate, timeout=0.05))
    assert async_result.status is RunStatus.TIMED_OUT
    assert async_result.successes() == [(0, 1)]


# -- compatibility with the reference implementation ---------------------------------------------


@pytest.mark.parametrize(("count", "per"), [(0, "second"), (-1, "second"), (-0.5, "minute"), (0.0, "hour")])
def test_rate_limit_count_must_be_positive(count: float, per: Any) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        RateLimit(count, per)


@pytest.mark.parametrize("per", ["day", "seconds", "Second", ""])
def test_rate_limit_per_lists_the_units(per: Any) -> None:
    with pytest.raises(ValueError, match="RateLimit per") as raised:
        RateLimit(1, per)
    assert '"second", "minute", or "hour"' in str(raised.value)


def test_item_result_needs_a_value_or_an_error() -> None:
    with pytest.raises(ValueError, match="ItemResult"):
        ItemResult(index=0)  # type: ignore[call-arg]


def test_item_result_cannot_hold_both_a_value_and_an_error() -> None:
    with pytest.raises(ValueError, match="not both"):
        ItemResult(index=0, value=1, error=ValueError())


def test_item_result_of_none_is_a_success() -> None:
    result = ItemResult(index=0, value=None)
    assert result.ok
    assert result.value is None
    assert result.error is None
    assert result == ItemResult.success(0, None)


def test_item_result_with_an_error_is_a_failure() -> None:
    error = ValueError("bad")
    result: ItemResult[Any] = ItemResult(0, error=error)
    assert not result.ok
    assert result.error is error
    assert result.value is None
    assert result == ItemResult.failure(0, error)
