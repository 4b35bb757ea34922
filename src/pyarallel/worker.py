"""For executor backends whose tasks run outside the caller's process (other processes,
other hosts): what to do where a task runs.

A backend's ``submit(fn, *args)`` receives pyarallel's task function ``fn`` and one
task's ``args`` (see :class:`pyarallel.contracts.Backend`). Where the task runs, a remote
backend calls :func:`run_task` instead of ``fn(*args)``, so that the task can stop between
items when the backend learns it was cancelled, and sends the outcome back with
:func:`dumps_outcome`, so that a value or an exception that cannot make the trip fails
only its own item, with a :class:`~pyarallel.SerializationError` naming it. The built-in
process executor does both; so does the Dask plugin.

:func:`function_label` names the user's function behind a task function in messages
(when it cannot be pickled, say).

This module imports nothing heavy (no pluggy, no scheduler): a worker that imports it
starts fast. ``cloudpickle`` is imported when an outcome is pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyarallel._errors import SerializationError
from pyarallel._tasks import RemoteFailure, TaskFunction, function_label

__all__ = ["dumps_outcome", "function_label", "run_task"]


def run_task(fn: Callable[..., Any], args: tuple[Any, ...], *, stop: Callable[[], bool] | None = None) -> Any:
    """Run one task where it was sent: ``fn(*args)``, with ``stop``.

    ``stop`` (optional) is asked before each item of the task after the first, and once it
    answers ``True`` no further item starts: the task reports the items that ran and the
    scheduler sends the rest elsewhere (or drops them, if the run is over). Ask something
    cheap: whether the cluster has cancelled this task, say. The task also stops on its
    own once it has run far longer than planned (the run's chunk budget), as ``fn(*args)``
    does. When ``fn`` is not pyarallel's task function (a backend used on its own), this
    is ``fn(*args)``.
    """
    if stop is not None and isinstance(fn, TaskFunction) and len(args) == 1:
        return fn(args[0], stop=stop)
    return fn(*args)


def dumps_outcome(outcome: Any, *, where: str = "the worker process") -> bytes:
    """Pickle a task's outcome (with cloudpickle) to send it back to the scheduler.

    For a task report (what pyarallel's task function returns), a value or an exception
    that cannot make the trip (it cannot be pickled, or an exception that could not be
    unpickled on the other side) is replaced by a :class:`~pyarallel.SerializationError`
    for its item alone, saying it could not be sent back from ``where``. Any other outcome
    that cannot be pickled raises ``SerializationError``.
    """
    import cloudpickle

    report = _as_report(outcome)
    if report is not None and report[1]:
        _check_exceptions(report, where)
    try:
        return cloudpickle.dumps(outcome)  # type: ignore[no-any-return]
    except Exception as error:
        if report is None:
            raise SerializationError(
                f"the task's outcome could not be pickled in {where}: {error!r}"
            ) from None
    _replace_unpicklable_values(report, where)
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


def _check_exceptions(report: tuple[list[Any], list[int], float], where: str) -> None:
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
            values[position] = _unsendable(values[position], "the exception it raised", error, where)


def _replace_unpicklable_values(report: tuple[list[Any], list[int], float], where: str) -> None:
    import cloudpickle

    values, failed = report[0], report[1]
    failures = set(failed)
    for position, value in enumerate(values):
        if position in failures:
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            values[position] = _unsendable(value, "the value it returned", error, where)
            failed.append(position)
    failed.sort()


def _unsendable(value: Any, what: str, error: Exception, where: str) -> Any:
    """A ``SerializationError`` standing for ``value`` (with the original traceback as its
    note, for an exception)."""
    if isinstance(value, RemoteFailure):
        failure = SerializationError(
            f"{what} could not be sent back from {where} ({error!r}): {value.error!r}"
        )
        return value.standing_in(failure)
    return SerializationError(f"{what} could not be sent back from {where}: {error!r}")
