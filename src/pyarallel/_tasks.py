"""The function the scheduler sends to a backend: it runs the user's function on one
task's items and returns one outcome per item, so a failing item never hides the others.

It runs wherever the backend puts it (a thread, another process, another machine), so it
imports nothing heavy and returns only picklable values.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["ChunkClaim", "RemoteTraceback", "TaskReport", "run_task"]

# What a task sends back: ``values`` holds one entry per item, in order: the item's return
# value, or the exception it failed with; ``failed`` lists the positions holding an
# exception (empty when every item succeeded, the common case, which the scheduler then
# settles as a whole). Last, the seconds the task took where it ran.
TaskReport = tuple[list[Any], list[int], float]


def run_task(
    fn: Callable[..., Any],
    star: bool,
    payloads: Sequence[Any],
    origin_pid: int,
    claim: ChunkClaim | None = None,
) -> TaskReport:
    """Call ``fn`` on each payload (``fn(*payload)`` when ``star``) and report every outcome.

    ``origin_pid`` is the scheduler's process id: in any other process a failure's
    traceback would be lost on the way back, so it travels along as text. The task's own
    duration, measured where it runs, lets the scheduler size the next tasks. With a
    ``claim`` (tasks run in the scheduler's process), payloads are taken one at a time
    through it, and only the ones taken are run and reported.
    """
    started = time.perf_counter()
    # With a claim, the report is shared so the scheduler can settle items while we run.
    values: list[Any] = [] if claim is None else claim.values
    failed: list[int] = [] if claim is None else claim.failed
    append = values.append
    for payload in payloads if claim is None else _claimed(payloads, claim):
        try:
            value = fn(*payload) if star else fn(payload)
        except BaseException as error:  # SystemExit, KeyboardInterrupt too: they fail this item only
            if os.getpid() != origin_pid:
                error = _with_remote_traceback(error)  # type: ignore[assignment]
            failed.append(len(values))
            append(error)
        else:
            append(value)
    return values, failed, time.perf_counter() - started


class ChunkClaim:
    """Hands out a chunk's items one at a time, and lets the scheduler stop that and take
    back the items not started yet. Only meaningful when tasks share this process."""

    __slots__ = ("_limit", "_lock", "_next", "failed", "values")

    def __init__(self, size: int) -> None:
        self.values: list[Any] = []  # appended by the task as its items finish
        self.failed: list[int] = []  # positions in ``values`` that hold an exception
        self._lock = threading.Lock()
        self._next = 0
        self._limit = size

    def take(self) -> int | None:
        """The position of the next item to run, or None when the chunk is done."""
        with self._lock:
            position = self._next
            if position >= self._limit:
                return None
            self._next = position + 1
            return position

    def revoke(self) -> int:
        """Hand out nothing more; return how many items were taken (they will be reported)."""
        with self._lock:
            self._limit = self._next
            return self._next


def _claimed(payloads: Sequence[Any], claim: ChunkClaim) -> Iterator[Any]:
    while (position := claim.take()) is not None:
        yield payloads[position]


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in another process; it is
    set as that exception's ``__cause__`` so it prints under the error."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _RemoteFailure:
    """Pickles as the exception itself with its traceback text attached as ``__cause__``."""

    def __init__(self, error: BaseException, text: str) -> None:
        self.error = error
        self.text = text

    def __reduce__(self) -> tuple[object, ...]:
        return (_attach_traceback, (self.error, self.text))


def _with_remote_traceback(error: BaseException) -> _RemoteFailure:
    import traceback  # only failures in another process need it

    text = "".join(traceback.format_exception(error))
    return _RemoteFailure(error, f'\n"""\n{text}"""')


def _attach_traceback(error: BaseException, text: str) -> BaseException:
    error.__cause__ = RemoteTraceback(text)
    return error
