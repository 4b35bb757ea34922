"""ItemResult and ParallelResult, as the API reference's tables describe them.

Results are built through the real API (``parallel_map``, ``parallel_iter``) where that
reads naturally, and through the constructors where exact contents matter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from pyarallel import ItemResult, ParallelResult, parallel_iter, parallel_map, parallel_starmap

WAIT = 10.0  # seconds an event wait may take before the test is considered stuck


def fail_on(bad: set[int]) -> Callable[[int], int]:
    """A function returning ``x * 10`` that raises ``ValueError(x)`` for every ``x`` in ``bad``."""

    def work(x: int) -> int:
        if x in bad:
            raise ValueError(x)
        return x * 10

    return work


def built(values: list[object], errors: dict[int, Exception]) -> ParallelResult[object]:
    """A ParallelResult built through the public constructor."""
    items = [
        ItemResult.failure(i, errors[i]) if i in errors else ItemResult.success(i, v)
        for i, v in enumerate(values)
    ]
    return ParallelResult(items)


# -- ItemResult -------------------------------------------------------------------------------------


def test_item_result_success_members() -> None:
    item = ItemResult.success(4, "four")
    assert item.index == 4
    assert item.ok is True
    assert item.value == "four"
    assert item.error is None


def test_item_result_failure_members() -> None:
    error = KeyError("missing")
    item = ItemResult.failure(2, error)
    assert item.index == 2
    assert item.ok is False
    assert item.error is error
    assert item.value is None


def test_item_result_none_is_a_legitimate_value() -> None:
    item = ItemResult.success(0, None)
    assert item.ok is True
    assert item.value is None
    assert item.error is None


def test_item_result_constructor_with_only_a_value_is_a_success() -> None:
    item = ItemResult(3, value=[1, 2])
    assert (item.index, item.ok, item.value, item.error) == (3, True, [1, 2], None)


def test_item_result_constructor_with_an_error_is_a_failure() -> None:
    error = RuntimeError("boom")
    item = ItemResult(3, error=error)
    assert (item.index, item.ok, item.value, item.error) == (3, False, None, error)


@pytest.mark.parametrize("name", ["index", "ok", "value", "error"])
def test_item_result_public_members_cannot_be_assigned(name: str) -> None:
    item = ItemResult.success(1, "v")
    with pytest.raises(AttributeError):
        setattr(item, name, "changed")
    assert (item.index, item.ok, item.value, item.error) == (1, True, "v", None)


@pytest.mark.parametrize("name", ["index", "value", "error"])
def test_item_result_public_members_cannot_be_deleted(name: str) -> None:
    item = ItemResult.failure(1, ValueError("x"))
    with pytest.raises(AttributeError):
        delattr(item, name)
    assert item.index == 1
    assert isinstance(item.error, ValueError)


def test_item_result_refuses_new_attributes() -> None:
    item = ItemResult.success(0, 1)
    with pytest.raises(AttributeError):
        item.extra = 1  # type: ignore[attr-defined]
    assert not hasattr(item, "extra")


def test_item_results_from_parallel_iter_hold_exactly_one_of_value_or_error() -> None:
    bad = {1, 4, 7}
    seen: dict[int, ItemResult[int]] = {}
    for item in parallel_iter(fail_on(bad), range(10), workers=3):
        assert item.index not in seen
        seen[item.index] = item
    assert sorted(seen) == list(range(10))
    for index, item in seen.items():
        if index in bad:
            assert item.ok is False
            assert item.value is None
            assert isinstance(item.error, ValueError)
            assert item.error.args == (index,)
        else:
            assert item.ok is True
            assert item.error is None
            assert item.value == index * 10


def test_item_results_from_parallel_iter_keep_none_values_as_successes() -> None:
    results = list(parallel_iter(lambda x: None, range(5), workers=2))
    assert sorted(r.index for r in results) == list(range(5))
    assert all(r.ok and r.value is None and r.error is None for r in results)


def test_item_result_constructor_cannot_break_the_exactly_one_invariant() -> None:
    try:
        item = ItemResult(0, value="stale", error=ValueError("boom"))
    except (TypeError, ValueError):
        return  # refusing the contradiction is fine
    # Otherwise the failure must not also expose a value.
    assert item.ok is False
    assert item.value is None


# -- ParallelResult: the all-success case -------------------------------------------------------


def test_all_success_result_behaves_like_a_list() -> None:
    result = parallel_map(lambda x: x * x, [1, 2, 3, 4], workers=2)
    assert isinstance(result, ParallelResult)
    assert result.ok is True
    assert result.values() == [1, 4, 9, 16]
    assert len(result) == 4
    assert result[0] == 1
    assert result[3] == 16
    assert result[-1] == 16
    assert list(result) == [1, 4, 9, 16]
    assert [v for v in result] == [1, 4, 9, 16]
    assert 9 in result
    assert 5 not in result
    assert result.successes() == [(0, 1), (1, 4), (2, 9), (3, 16)]
    assert result.failures() == []
    assert result.raise_on_failure() is None


def test_all_success_result_supports_the_read_only_list_operations() -> None:
    result = parallel_map(lambda x: x % 3, range(7))
    assert isinstance(result, Sequence)
    assert result == [0, 1, 2, 0, 1, 2, 0]
    assert result[1:4] == [1, 2, 0]
    assert result.index(2) == 2
    assert result.count(0) == 3
    assert list(reversed(result)) == [0, 2, 1, 0, 2, 1, 0]
    with pytest.raises(IndexError):
        result[7]


def test_values_returns_a_new_list_each_time() -> None:
    result = parallel_map(lambda x: x, [1, 2])
    values = result.values()
    values.append(99)
    assert result.values() == [1, 2]
    assert len(result) == 2


def test_values_are_in_input_order_whatever_the_completion_order() -> None:
    n = 6
    finished = [threading.Event() for _ in range(n)]
    completion_order: list[int] = []

    def work(i: int) -> int:
        # Item i may only finish after item i + 1: completion order is reversed.
        if i + 1 < n and not finished[i + 1].wait(WAIT):
            raise TimeoutError(f"item {i + 1} never finished")
        completion_order.append(i)
        finished[i].set()
        return i * 100

    result = parallel_map(work, range(n), workers=n)
    assert completion_order == list(reversed(range(n)))
    assert result.values() == [i * 100 for i in range(n)]
    assert result == [0, 100, 200, 300, 400, 500]


def test_none_is_a_valid_value_in_a_result() -> None:
    result = parallel_map(lambda x: None if x % 2 else x, range(4))
    assert result.ok is True
    assert result.values() == [0, None, 2, None]
    assert result.successes() == [(0, 0), (1, None), (2, 2), (3, None)]
    assert result.failures() == []
    assert result[1] is None
    assert repr(result) == "ParallelResult([0, None, 2, None])"


def test_all_none_result_is_ok_and_equal_to_a_list_of_none() -> None:
    result = parallel_map(lambda x: None, range(3))
    assert result.ok
    assert result == [None, None, None]
    assert bool(result) is True


def test_equality_with_a_list() -> None:
    result = parallel_starmap(lambda a, b: a + b, [(1, 2), (3, 4)])
    assert result == [3, 7]
    assert [3, 7] == result
    assert result != [3, 8]
    assert result != [3]
    assert result != [7, 3]
    assert not (result != [3, 7])


def test_equality_between_results() -> None:
    first = parallel_map(lambda x: x + 1, [1, 2, 3])
    assert first == built([2, 3, 4], {})
    assert first != built([2, 3, 5], {})


def test_result_with_failures_is_not_equal_to_any_list() -> None:
    result = parallel_map(fail_on({1}), range(3))
    assert result != [0, None, 20]
    assert result != [0, 10, 20]
    assert [0, None, 20] != result


def test_constructor_orders_items_by_index() -> None:
    result = ParallelResult(
        [ItemResult.success(2, "c"), ItemResult.success(0, "a"), ItemResult.success(1, "b")]
    )
    assert result.values() == ["a", "b", "c"]
    assert result.successes() == [(0, "a"), (1, "b"), (2, "c")]


@pytest.mark.parametrize(
    "indices",
    [pytest.param([0, 2], id="missing"), pytest.param([0, 1, 1], id="repeated"), pytest.param([1], id="gap")],
)
def test_constructor_refuses_indices_that_are_not_0_to_n_minus_1(indices: list[int]) -> None:
    with pytest.raises(ValueError, match="index"):
        ParallelResult([ItemResult.success(i, i) for i in indices])


# -- ParallelResult: failures -------------------------------------------------------------------


def test_result_with_failures_gives_structured_access() -> None:
    result = parallel_map(fail_on({1, 3}), range(5), workers=3)
    assert result.ok is False
    assert len(result) == 5
    assert result.successes() == [(0, 0), (2, 20), (4, 40)]
    failures = result.failures()
    assert [index for index, _ in failures] == [1, 3]
    assert all(isinstance(error, ValueError) for _, error in failures)
    assert [error.args for _, error in failures] == [(1,), (3,)]


def test_raise_on_failure_raises_an_exception_group_with_the_failures_in_index_order() -> None:
    errors = {0: KeyError("a"), 2: ValueError("c"), 3: OSError("d")}
    result = built(["x", "y", "z", "w", "v"], errors)
    with pytest.raises(ExceptionGroup) as excinfo:
        result.raise_on_failure()
    group = excinfo.value
    assert type(group) is ExceptionGroup
    assert "3 of 5 items failed" in group.message
    assert list(group.exceptions) == [errors[0], errors[2], errors[3]]
    assert all(a is b for a, b in zip(group.exceptions, [errors[0], errors[2], errors[3]], strict=True))


def test_exception_group_order_follows_the_index_not_the_completion_order() -> None:
    n = 5
    finished = [threading.Event() for _ in range(n)]

    def work(i: int) -> int:
        if i + 1 < n and not finished[i + 1].wait(WAIT):
            raise TimeoutError(f"item {i + 1} never finished")
        finished[i].set()
        raise ValueError(i)

    result = parallel_map(work, range(n), workers=n)
    with pytest.raises(ExceptionGroup) as excinfo:
        result.raise_on_failure()
    assert "5 of 5 items failed" in excinfo.value.message
    assert [error.args for error in excinfo.value.exceptions] == [(i,) for i in range(n)]
    assert all(type(error) is ValueError for error in excinfo.value.exceptions)


def test_one_of_three_failed_message() -> None:
    result = parallel_map(fail_on({2}), range(3))
    with pytest.raises(ExceptionGroup, match="1 of 3 items failed") as excinfo:
        result.raise_on_failure()
    assert len(excinfo.value.exceptions) == 1
    assert excinfo.value.exceptions[0] is result.failures()[0][1]


def _access_values(result: ParallelResult[object]) -> object:
    return result.values()


def _access_index(result: ParallelResult[object]) -> object:
    return result[0]


def _access_list(result: ParallelResult[object]) -> object:
    return list(result)


def _access_for_loop(result: ParallelResult[object]) -> object:
    return [value for value in result]


def _access_iter(result: ParallelResult[object]) -> object:
    return iter(result)


@pytest.mark.parametrize(
    "access",
    [_access_values, _access_index, _access_list, _access_for_loop, _access_iter],
    ids=["values()", "result[0]", "list(result)", "for-loop", "iter(result)"],
)
def test_value_access_on_a_result_with_failures_raises_the_group(
    access: Callable[[ParallelResult[object]], object],
) -> None:
    result = parallel_map(fail_on({1}), range(3))
    with pytest.raises(ExceptionGroup) as excinfo:
        access(result)
    assert "1 of 3 items failed" in excinfo.value.message
    assert [type(e) for e in excinfo.value.exceptions] == [ValueError]
    assert excinfo.value.exceptions[0].args == (1,)


def test_indexing_a_successful_item_of_a_failed_result_still_raises() -> None:
    result = parallel_map(fail_on({2}), range(3))
    with pytest.raises(ExceptionGroup, match="1 of 3 items failed"):
        result[0]
    assert result.successes()[0] == (0, 0)


def test_raise_on_failure_with_a_base_exception_failure_still_raises_a_group() -> None:
    stop = SystemExit(3)
    result = built([0, 1, 2], {1: stop})  # type: ignore[dict-item]
    assert result.ok is False
    with pytest.raises(BaseExceptionGroup) as excinfo:
        result.raise_on_failure()
    assert "1 of 3 items failed" in excinfo.value.message
    assert list(excinfo.value.exceptions) == [stop]


def test_a_base_exception_from_one_item_never_fails_other_items() -> None:
    def work(x: int) -> int:
        if x == 1_500:
            raise SystemExit(1)
        return x

    try:
        result = parallel_map(work, range(2_000), workers=4)
    except SystemExit:
        return  # letting it propagate out of the call is a fine answer too
    assert [index for index, _ in result.failures()] == [1_500]
    assert len(result.successes()) == 1_999


# -- len and bool -------------------------------------------------------------------------------


def test_len_counts_every_task_including_failures() -> None:
    result = parallel_map(fail_on({0, 1, 2}), range(4))
    assert len(result) == 4
    assert len(result.failures()) == 3
    assert len(result.successes()) == 1


def test_bool_is_false_only_when_nothing_was_submitted() -> None:
    empty = parallel_map(lambda x: x, [])
    assert bool(empty) is False
    assert empty.ok is True
    assert len(empty) == 0
    assert empty.values() == []
    assert empty == []

    assert bool(parallel_map(lambda x: x, [0])) is True  # a falsy value is still an item
    assert bool(parallel_map(lambda x: None, [1])) is True
    all_failed = parallel_map(fail_on({0, 1}), [0, 1])
    assert all_failed.ok is False
    assert bool(all_failed) is True


def test_bool_of_constructed_results() -> None:
    assert bool(ParallelResult([])) is False
    assert bool(built([None], {})) is True
    assert bool(built([None], {0: ValueError()})) is True


# -- repr ---------------------------------------------------------------------------------------


def test_repr_of_an_all_success_result_reads_like_a_list() -> None:
    assert repr(parallel_starmap(lambda a, b: a + b, [(1, 2), (3, 4)])) == "ParallelResult([3, 7])"
    assert repr(parallel_map(str, [1, 2])) == "ParallelResult(['1', '2'])"
    assert repr(parallel_map(lambda x: x, [])) == "ParallelResult([])"


def test_repr_with_exactly_ten_values_is_not_shortened() -> None:
    result = parallel_map(lambda x: x, range(10))
    assert repr(result) == f"ParallelResult({list(range(10))!r})"


def test_repr_of_a_long_result_is_shortened_with_an_item_count() -> None:
    result = parallel_map(lambda x: x * 1000, range(500))
    text = repr(result)
    assert text.startswith("ParallelResult([0, 1000, 2000")
    assert "500 items" in text
    assert "499000" not in text  # the tail is not printed
    assert len(text) < 200


def test_repr_of_eleven_values_is_shortened() -> None:
    text = repr(parallel_map(lambda x: x, range(11)))
    assert "11 items" in text
    assert "10" not in text.replace("11 items", "")


def test_repr_with_failures_shows_counts() -> None:
    assert repr(parallel_map(fail_on({1}), range(3))) == "ParallelResult(2 ok, 1 failed)"
    assert repr(parallel_map(fail_on({0, 1, 2}), range(3))) == "ParallelResult(0 ok, 3 failed)"


def test_repr_of_a_failed_result_does_not_raise() -> None:
    result = built(list(range(50)), {7: ValueError("bad")})
    assert repr(result) == "ParallelResult(49 ok, 1 failed)"
