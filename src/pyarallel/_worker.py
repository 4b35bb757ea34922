"""What a worker process runs for pyarallel: kept apart from the rest of the package so a
freshly started worker imports only this, ``_tasks`` and ``_errors`` (no pluggy, no
scheduler), which shortens a cold pool's start.

A task arrives as a reference to its run's function plus the pickled payloads:

- the function (a ``TaskFunction``: the user's function and the run's settings) is
  unpickled once per worker and run, and kept for the run's next tasks (``FunctionRef``);
- while the task runs, the worker records in shared memory which of its items are
  started (``PROGRESS_SLOT``), so that if the worker dies the backend knows which item was
  running;
- the outcome is pickled back; a value or an exception that cannot be pickled, or an
  exception that could not be unpickled on the other side, fails only its own item with
  a ``SerializationError``.
"""

from __future__ import annotations

import mmap
import os
import time
from typing import Any

from pyarallel._errors import SerializationError
from pyarallel._tasks import PROGRESS_SLOT, RemoteFailure

__all__ = ["FunctionRef", "SlotRef", "rendezvous", "run"]

# How a task names its run's function: a key unique to the run, the pickled function
# itself (small functions) or the path of a file holding it (large ones: read once), and
# the user's function's name for messages (see ``_tasks.function_label``).
FunctionRef = tuple[str, bytes | None, str | None, str]
# A task's slot in its pool's shared memory: the file's path and the slot's first word.
# The worker writes its pid there when it starts the task, the number of items started in
# the next word before each item, and minus its pid once the task's outcome is ready.
SlotRef = tuple[str, int]

_function_key: str | None = None  # the latest run's function, kept while that run lasts
_function: Any = None
_views: dict[str, memoryview] = {}  # slot file path -> a view of it as 64-bit words


def run(function: FunctionRef, payloads: bytes, slot: SlotRef | None) -> bytes:
    """Worker side of one task: call the run's function on the unpickled arguments and
    return the pickled outcome."""
    import cloudpickle

    fn = _load_function(function)
    try:
        args = cloudpickle.loads(payloads)
    except Exception as error:
        message = f"the item's arguments could not be unpickled in the worker process: {error!r}"
        raise SerializationError(message) from error
    if slot is None:
        return _dumps_outcome(fn(*args))
    view, first = _view(slot[0]), slot[1]
    view[first] = os.getpid()
    token = PROGRESS_SLOT.set((view, first + 1))
    try:
        outcome = fn(*args)
    finally:
        PROGRESS_SLOT.reset(token)
    pickled = _dumps_outcome(outcome)
    view[first] = -os.getpid()  # done: if this worker dies now, it is not this task's doing
    return pickled


def rendezvous(path: str, first: int, count: int, position: int, seconds: float) -> int:
    """One of ``count`` tasks that wait for each other: each marks its word and returns
    once all ``count`` are marked (or after ``seconds``). Since a worker runs one task at
    a time, all of them returning together means ``count`` workers are up."""
    view = _view(path)
    view[first + position] = 1
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up and not all(view[first + i] for i in range(count)):
        time.sleep(0.001)
    return os.getpid()


def _load_function(function: FunctionRef) -> Any:
    global _function, _function_key
    key, blob, path, label = function
    if key != _function_key:
        import cloudpickle

        if blob is None:
            assert path is not None
            with open(path, "rb") as file:
                blob = file.read()
        try:
            loaded = cloudpickle.loads(blob)
        except Exception as error:
            raise SerializationError(
                f"the function {label} could not be unpickled in the worker process: {error!r}"
            ) from error
        _function, _function_key = loaded, key
    return _function


def _view(path: str) -> memoryview:
    view = _views.get(path)
    if view is None:
        with open(path, "r+b") as file:
            mapping = mmap.mmap(file.fileno(), 0)
        view = _views[path] = memoryview(mapping).cast("q")
    return view


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
            raise SerializationError(f"the task's outcome could not be pickled: {error!r}") from None
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
    cannot be unpickled, such as one whose ``__init__`` takes two arguments). Its causes
    and contexts travel apart from it: one of them that cannot make the trip is replaced
    in its chain, on arrival, and costs the exception nothing (see ``RemoteFailure``)."""
    import cloudpickle

    values = report[0]
    for position in report[1]:
        try:
            cloudpickle.loads(cloudpickle.dumps(values[position]))
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


def _unsendable(value: Any, what: str, error: Exception) -> Any:
    """A ``SerializationError`` standing for ``value`` (with the original traceback as its
    note, for an exception)."""
    if isinstance(value, RemoteFailure):
        failure = SerializationError(
            f"{what} could not be sent back from the worker process ({error!r}): {value.error!r}"
        )
        return value.standing_in(failure)
    return SerializationError(f"{what} could not be sent back from the worker process: {error!r}")
