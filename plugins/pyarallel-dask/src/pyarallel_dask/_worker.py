"""What runs on the Dask workers: one task of a run, and the checks ``close(abort=True)``
makes on the workers and the scheduler. Kept apart from the client side so that a worker
imports only this module (and pyarallel's own ``_tasks``, which the run's function needs).

A task arrives as a reference to its run's function plus the pickled items, both bytes,
so that Dask sends them as they are and every pickling failure is ours to name:

- the function (pyarallel's task function: the user's function and the run's settings)
  is unpickled once per worker process and kept for the run's next tasks;
- the task's items are handed to it one at a time through a claim that stops handing
  them out once Dask has cancelled the task (the run was aborted: Dask cannot interrupt
  a running function, but it tells the worker, and no further item starts) or once the
  task has run for its budget (see ``pyarallel._tasks.TaskFunction``);
- the outcome is pickled back here; a value or an exception that cannot make the trip
  fails only its own item, with a ``SerializationError``.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from pyarallel import SerializationError
from pyarallel._tasks import ChunkClaim, TaskFunction

__all__ = ["FunctionRef", "live_keys", "pending_keys", "run"]

# How a task names its run's function: a key unique to the run, the function pickled with
# cloudpickle, and the user's function's name for messages.
FunctionRef = tuple[str, bytes, str]

# Worker-side states in which a task of ours may still start an item.
_LIVE = frozenset({"waiting", "ready", "constrained", "executing", "long-running", "resumed"})
_RUNNING = frozenset({"executing", "long-running"})

KEPT_FUNCTIONS = 8  # the latest runs' functions a worker process keeps, unpickled
_functions: dict[str, Any] = {}  # run key -> function, oldest first
_functions_lock = threading.Lock()


def run(function: FunctionRef, payload: bytes) -> bytes:
    """Worker side of one task: call the run's function on the unpickled arguments and
    return the pickled outcome."""
    fn = _load_function(function)
    try:
        args = pickle.loads(payload)
    except Exception as error:
        message = f"the task's items could not be unpickled on the Dask worker: {error!r}"
        raise SerializationError(message) from error
    if isinstance(fn, TaskFunction) and len(args) == 1:
        outcome = fn(args[0], _WorkerClaim(len(args[0]), fn.budget, _cancelled_check()))
    else:  # not a pyarallel run (the backend used on its own): call it as it is
        outcome = fn(*args)
    return _dumps_outcome(outcome)


def live_keys(keys: Collection[str], dask_worker: Any = None) -> list[str]:
    """Which of ``keys`` this worker may still start an item of (run by ``Client.run``,
    in the worker's event loop)."""
    tasks = dask_worker.state.tasks
    return [key for key in keys if (task := tasks.get(key)) is not None and task.state in _LIVE]


def pending_keys(keys: Collection[str], dask_scheduler: Any = None) -> list[str]:
    """Which of ``keys`` the scheduler still holds (run by ``Client.run_on_scheduler``):
    none once it has handled the cancellation of all of them."""
    tasks = dask_scheduler.tasks
    return [key for key in keys if key in tasks]


class _WorkerClaim(ChunkClaim):
    """Hands a task's items out one at a time, until the task is cancelled or has run
    for ``budget`` seconds (the first item always runs, unless cancelled)."""

    __slots__ = ("_cancelled", "_stop_at")

    def __init__(self, size: int, budget: float | None, cancelled: Callable[[], bool]) -> None:
        super().__init__(size)
        self._stop_at = None if budget is None or size < 2 else time.perf_counter() + budget
        self._cancelled = cancelled

    def take(self) -> int | None:
        if self._cancelled():
            return None
        stop_at = self._stop_at
        if stop_at is not None and self.values and time.perf_counter() >= stop_at:
            return None
        return super().take()


def _cancelled_check() -> Callable[[], bool]:
    """A check, cheap enough to make before every item, of whether Dask has cancelled the
    task running in this thread (it then stays "cancelled" until the function returns)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except Exception:  # not running in a Dask worker's thread
        return _never
    tasks = worker.state.tasks

    def cancelled() -> bool:
        task = tasks.get(key)
        return task is None or task.state not in _RUNNING

    return cancelled


def _never() -> bool:
    return False


def _load_function(function: FunctionRef) -> Any:
    """The run's function, unpickled once per worker process (a worker with several
    threads may run tasks of several runs at once)."""
    key, blob, label = function
    with _functions_lock:
        if key in _functions:
            return _functions[key]
    try:
        loaded = pickle.loads(blob)
    except Exception as error:
        raise SerializationError(
            f"the function {label} could not be unpickled on the Dask worker: {error!r}"
        ) from error
    with _functions_lock:
        _functions[key] = loaded
        while len(_functions) > KEPT_FUNCTIONS:
            del _functions[next(iter(_functions))]
    return loaded


def _dumps_outcome(outcome: Any) -> bytes:
    """Pickle a task's outcome; for a task report, a value or exception that cannot make
    the trip back becomes its item's ``SerializationError``."""
    import cloudpickle

    report = _as_report(outcome)
    if report is not None and report[1]:
        _check_exceptions(report)
    try:
        return cloudpickle.dumps(outcome)  # type: ignore[no-any-return]
    except Exception as error:
        if report is None:
            message = f"the task's outcome could not be pickled on the Dask worker: {error!r}"
            raise SerializationError(message) from None
    _replace_unpicklable_values(report)
    return cloudpickle.dumps(outcome)  # type: ignore[no-any-return]


def _as_report(outcome: Any) -> tuple[list[Any], list[int], float] | None:
    if (
        isinstance(outcome, tuple)
        and len(outcome) == 3
        and isinstance(outcome[0], list)
        and isinstance(outcome[1], list)
    ):
        return outcome
    return None


def _check_exceptions(report: tuple[list[Any], list[int], float]) -> None:
    """Replace each exception that would not survive the trip (it cannot be pickled, or
    cannot be unpickled, such as one whose ``__init__`` takes two arguments)."""
    import cloudpickle

    values = report[0]
    for position in report[1]:
        try:
            pickle.loads(cloudpickle.dumps(values[position]))
        except Exception as error:
            values[position] = _unsendable(values[position], "the exception it raised", error)


def _replace_unpicklable_values(report: tuple[list[Any], list[int], float]) -> None:
    import cloudpickle

    values, failed = report[0], report[1]
    failures = set(failed)
    for position, value in enumerate(values):
        if position in failures:
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            values[position] = _unsendable(value, "the value it returned", error)
            failed.append(position)
    failed.sort()


def _unsendable(value: Any, what: str, error: Exception) -> SerializationError:
    described = getattr(value, "error", value)  # a failure travels wrapped (RemoteFailure)
    try:
        text = repr(described)
    except Exception:
        text = f"<a {type(described).__qualname__} whose repr failed>"
    if what == "the value it returned":
        text = f"a {type(described).__qualname__}"
    return SerializationError(f"{what} could not be sent back from the Dask worker ({error!r}): {text}")
