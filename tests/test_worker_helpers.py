"""``pyarallel.worker``: what a backend whose tasks run elsewhere calls where a task runs.
``run_task`` stops a task between items when the backend says it was cancelled;
``dumps_outcome`` fails only the item whose value or exception cannot travel."""

from __future__ import annotations

import pickle
import threading

import pytest

from pyarallel import SerializationError
from pyarallel._tasks import TaskFunction
from pyarallel.worker import dumps_outcome, function_label, run_task


def double(x: int) -> int:
    return 2 * x


def test_without_stop_a_task_runs_every_item() -> None:
    fn = TaskFunction(double, star=False, remote=True)
    values, failed, seconds = run_task(fn, ([1, 2, 3],))
    assert (values, failed) == ([2, 4, 6], [])
    assert seconds >= 0


def test_stop_is_asked_between_items_and_ends_the_task_early() -> None:
    started: list[int] = []

    def record(x: int) -> int:
        started.append(x)
        return x

    asked = []

    def stop() -> bool:
        asked.append(len(started))
        return len(started) >= 2

    values, failed, _ = run_task(
        TaskFunction(record, star=False, remote=True), ([10, 11, 12, 13],), stop=stop
    )
    assert values == [10, 11]  # the task reports the items that ran; the rest run elsewhere
    assert failed == []
    assert started == [10, 11]
    assert asked == [1, 2]  # never before the first item


def test_a_stopped_task_still_reports_an_items_failure() -> None:
    def fail_first(x: int) -> int:
        if x == 0:
            raise ValueError("first")
        return x

    values, failed, _ = run_task(
        TaskFunction(fail_first, star=False, remote=False), ([0, 1, 2],), stop=lambda: True
    )
    assert failed == [0]
    assert isinstance(values[0], ValueError)
    assert len(values) == 1


def test_the_runs_budget_still_applies_with_a_stop_check() -> None:
    clock = threading.Event()

    def slow(x: int) -> int:
        clock.wait(0.02)
        return x

    fn = TaskFunction(slow, star=False, remote=True, budget=0.05)
    values, _, _ = run_task(fn, (list(range(100)),), stop=lambda: False)
    assert 1 <= len(values) < 100


def test_a_function_that_is_no_task_function_is_called_as_it_is() -> None:
    assert run_task(lambda a, b: a + b, (1, 2), stop=lambda: True) == 3


def test_an_unpicklable_value_fails_only_its_item_naming_where() -> None:
    lock = threading.Lock()
    report = ([1, lock, 3], [], 0.5)
    values, failed, seconds = pickle.loads(dumps_outcome(report, where="the Dask worker"))
    assert [values[0], values[2]] == [1, 3]
    assert failed == [1]
    assert isinstance(values[1], SerializationError)
    assert "could not be sent back from the Dask worker" in str(values[1])
    assert seconds == 0.5


class TwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)  # unpickling calls TwoArgs(a) and fails


def test_an_exception_that_cannot_be_rebuilt_fails_its_item_as_a_serialization_error() -> None:
    report = ([TwoArgs(1, 2), 5], [0], 0.1)
    values, failed, _ = pickle.loads(dumps_outcome(report))
    assert failed == [0]
    assert isinstance(values[0], SerializationError)
    assert "the exception it raised could not be sent back from the worker process" in str(values[0])
    assert values[1] == 5


def test_an_outcome_that_is_no_report_and_cannot_be_pickled_raises() -> None:
    with pytest.raises(SerializationError, match="could not be pickled in the worker process"):
        dumps_outcome(threading.Lock())


def test_function_label_names_the_users_function() -> None:
    assert function_label(TaskFunction(double, star=False, remote=True)) == "double"
