"""The function the scheduler sends to a backend: it runs the user's function on one
task's items and returns one outcome per item, so a failing item never hides the others.

It runs wherever the backend puts it (a thread, another process, another machine), so it
imports nothing heavy and returns only picklable values.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

__all__ = [
    "PROGRESS_SLOT",
    "ChunkClaim",
    "RemoteFailure",
    "RemoteTraceback",
    "TaskFunction",
    "TaskReport",
    "run_task",
]

# What a task sends back: ``values`` holds one entry per item that ran, in order: the
# item's return value, or the exception it failed with; ``failed`` lists the positions
# holding an exception (empty when every item succeeded, the common case, which the
# scheduler then settles as a whole). Last, the seconds the task took where it ran. A task
# that stopped early (see ``TaskFunction.budget``) reports only its first items.
TaskReport = tuple[list[Any], list[int], float]

# Where a worker process records which item of its task is running, so that the backend
# can tell, if the worker dies, which item was running (see ``_worker``): a view of
# shared memory and the position of the task's slot in it. Set by the worker around one
# task; a task clears it for the calls it makes, so nested runs never write to it.
PROGRESS_SLOT: ContextVar[tuple[memoryview, int] | None] = ContextVar("pyarallel_progress_slot", default=None)


class TaskFunction:
    """What every task of one run calls: the user's ``fn`` (called as ``fn(*payload)``
    when ``star``) with the run's settings, applied to one task's payloads.

    The same object serves every task of a run, so a backend that sends tasks to other
    processes can send it once per worker and keep it there (see ``Backend.submit``).
    ``origin_pid`` is the scheduler's process id: in any other process a failure's
    traceback would be lost on the way back, so it travels along as text. ``budget``: a
    task of several items running elsewhere stops starting items once it has run that
    many seconds (far longer than planned: an item in it turned out slow), and reports
    what ran; the scheduler sends the rest elsewhere.
    """

    __slots__ = ("budget", "fn", "origin_pid", "star")

    def __init__(
        self, fn: Callable[..., Any], star: bool, origin_pid: int, budget: float | None = None
    ) -> None:
        self.fn = fn
        self.star = star
        self.origin_pid = origin_pid
        self.budget = budget

    def __call__(self, payloads: Sequence[Any], claim: ChunkClaim | None = None) -> TaskReport:
        """Run ``fn`` on each payload and report every outcome (see ``run_task``)."""
        return run_task(self.fn, self.star, payloads, self.origin_pid, claim=claim, budget=self.budget)

    def __reduce__(self) -> tuple[object, ...]:
        return (TaskFunction, (self.fn, self.star, self.origin_pid, self.budget))


def run_task(
    fn: Callable[..., Any],
    star: bool,
    payloads: Sequence[Any],
    origin_pid: int,
    *,
    claim: ChunkClaim | None = None,
    budget: float | None = None,
) -> TaskReport:
    """Call ``fn`` on each payload (``fn(*payload)`` when ``star``) and report every outcome.

    The task's own duration, measured where it runs, lets the scheduler size the next
    tasks. With a ``claim`` (tasks run in the scheduler's process), payloads are taken one
    at a time through it, and only the ones taken are run and reported. Without one, a
    task of several items stops soon after ``budget`` seconds have passed.
    """
    started = time.perf_counter()
    slot = PROGRESS_SLOT.get()
    if slot is not None:
        PROGRESS_SLOT.set(None)  # not for the runs fn itself may start
    # With a claim, the report is shared so the scheduler can settle items while we run.
    values: list[Any] = [] if claim is None else claim.values
    failed: list[int] = [] if claim is None else claim.failed
    if claim is not None:
        _run_items(fn, star, _claimed(payloads, claim), values, failed, origin_pid, slot)
    elif budget is None or len(payloads) < 2:
        _run_items(fn, star, payloads, values, failed, origin_pid, slot)
    else:
        stop_at, clock = started + budget, time.perf_counter
        for batch in _batches(payloads, clock):
            _run_items(fn, star, batch, values, failed, origin_pid, slot)
            if clock() >= stop_at:
                break
    return values, failed, time.perf_counter() - started


def _run_items(  # noqa: PLR0917 - the hot loop: no object per task
    fn: Callable[..., Any],
    star: bool,
    payloads: Iterable[Any],
    values: list[Any],
    failed: list[int],
    origin_pid: int,
    slot: tuple[memoryview, int] | None,
) -> None:
    """Run ``payloads`` one after the other, appending each outcome to ``values`` (and the
    position of each exception to ``failed``); record each start in ``slot`` if given."""
    append = values.append
    if slot is None:
        for payload in payloads:
            try:
                value = fn(*payload) if star else fn(payload)
            except BaseException as error:  # SystemExit, KeyboardInterrupt too: they fail this item only
                failed.append(len(values))
                append(_sendable(error, origin_pid))
            else:
                append(value)
        return
    view, word = slot
    for started, payload in enumerate(payloads, len(values) + 1):
        view[word] = started  # this many items have started
        try:
            value = fn(*payload) if star else fn(payload)
        except BaseException as error:
            failed.append(len(values))
            append(_sendable(error, origin_pid))
        else:
            append(value)


def _sendable(error: BaseException, origin_pid: int) -> Any:
    """``error``, with its traceback as text when it must travel to another process."""
    return _with_remote_traceback(error) if os.getpid() != origin_pid else error


BATCH_SECONDS = 0.002  # how often a task with a budget reads the clock, at most
MAX_BATCH = 1024


def _batches(payloads: Sequence[Any], clock: Callable[[], float]) -> Iterator[Sequence[Any]]:
    """``payloads`` in batches of about ``BATCH_SECONDS`` of work each (by the time per item
    measured so far; the first batch is one item), so that the caller can read the clock
    between them without reading it for every item."""
    start, size, began = 0, 1, clock()
    while start < len(payloads):
        yield payloads[start : start + size]
        start += size
        per_item = (clock() - began) / start
        size = max(1, min(MAX_BATCH, int(BATCH_SECONDS / max(per_item, 1e-9))))


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


class RemoteFailure:
    """Pickles as the exception itself with its traceback text attached as ``__cause__``."""

    def __init__(self, error: BaseException, text: str) -> None:
        self.error = error
        self.text = text

    def __reduce__(self) -> tuple[object, ...]:
        return (_attach_traceback, (self.error, self.text))


def _with_remote_traceback(error: BaseException) -> RemoteFailure:
    import traceback  # only failures in another process need it

    text = "".join(traceback.format_exception(error))
    return RemoteFailure(error, f'\n"""\n{text}"""')


def _attach_traceback(error: BaseException, text: str) -> BaseException:
    error.__cause__ = RemoteTraceback(text)
    return error
