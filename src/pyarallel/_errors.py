"""The exceptions pyarallel raises or records, in one hierarchy users can catch at any level.

Validation errors are plain ``ValueError``/``TypeError`` raised before any work starts.
The classes here describe what happened to an *item* while a run was going on; each one
names the item's input index so that a failure read out of a log says which input caused it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "IncompleteRunError",
    "ItemAbortedError",
    "ItemCancelledError",
    "ItemError",
    "ItemTimeoutError",
    "PyarallelError",
    "RateLimitCostError",
    "SerializationError",
    "TaskLostError",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "WorkerInitError",
]


class PyarallelError(Exception):
    """Base class of every exception pyarallel itself creates."""


class ItemError(PyarallelError):
    """A failure pyarallel records for one item (not raised by the user's function).

    ``index`` is the item's input index. A backend that raises one of these for a task
    may leave ``index`` as ``None``; the scheduler fills it in before the failure is
    reported, so users always see it set.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index

    def __str__(self) -> str:
        if self.index is None:
            return self.message
        return f"item {self.index}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments are lost by Exception's default pickling.
        return (_rebuild_item_error, (type(self), self.message, self.index))


def _rebuild_item_error(cls: type[ItemError], message: str, index: int | None) -> ItemError:
    error = cls.__new__(cls)
    ItemError.__init__(error, message, index=index)
    return error


class WorkerCrashedError(ItemError):
    """The worker process running this item died (``os._exit``, a segfault, the OOM killer).

    Only the item that was running in the dead worker fails with this error; the other
    items that were in flight on the same pool are run again, their attempts uncounted.
    """


class SerializationError(ItemError):
    """The item's arguments, its result or its exception could not be pickled.

    Raised for process (and other out-of-process) executors; the message names the
    pickling error (when pickling failed in this process, ``__cause__`` is that error).
    """


class RateLimitCostError(ItemError):
    """The item could not be given a rate-limit reservation, so it was never called: its
    ``cost`` can never fit (it exceeds the ``burst`` of a limit, which is as much as may
    start at once), or a ``cost``, ``key`` or ``settle`` function raised or returned a bad
    value (``__cause__`` is that function's exception). Not retried: it would fail again.
    """


class TaskTimeoutError(ItemError, TimeoutError):
    """One attempt of an item ran longer than ``task_timeout``: its coroutine was cancelled
    (async API), its worker process stopped (``executor="process"``), or, where the
    backend cannot stop it (threads), the run stopped waiting for it. Like any failure it
    may be retried. It is a ``TimeoutError``."""


class ItemAbortedError(ItemError):
    """The run was aborted before this item finished: ``max_errors`` items had failed
    for good, so no more work was admitted. The item's function was not called for this
    attempt (it may have failed attempts before: the last one's exception is the
    ``__cause__``)."""


class ItemCancelledError(ItemError):
    """The run was stopped (its ``stop=`` token was triggered) before this item started
    or before it could be retried; the last failed attempt's exception, if any, is the
    ``__cause__``."""


class ItemTimeoutError(PyarallelError, TimeoutError):
    """The run's total ``timeout`` expired before this item finished.

    It is a ``TimeoutError``, so ``except TimeoutError`` catches it.
    """

    def __init__(self, index: int, timeout: float) -> None:
        super().__init__(index, timeout)
        self.index = index
        self.timeout = timeout

    def __str__(self) -> str:
        return f"item {self.index} did not finish within the run's {self.timeout:g} s timeout"


class TaskLostError(PyarallelError):
    """A backend's report that a task did not complete because the worker running it went
    away, not because of anything the task is known to have done (part of the backend
    contract; users never see it: the scheduler runs the items again).

    ``started`` is how many of the task's items had started when it was lost (the last of
    them was running), ``0`` if it never started, or ``None`` if the backend cannot tell.
    ``finished`` is ``True`` when the task had run all of them and only its outcome was
    lost (no item was running). ``crashed`` says what the backend knows of the running
    item: ``True``, it killed its worker (it then fails with :class:`WorkerCrashedError`);
    ``False``, it did not (its worker was alive when the pool went down: it runs again,
    uncounted); ``None``, the backend cannot tell: the item is a *suspect*, runs again
    alone, with nothing else in flight, and fails with :class:`WorkerCrashedError` only
    if it is lost again. Items that had not started, or whose outcomes were lost with the
    worker, run again without counting an attempt.

    ``overdue`` is ``True`` when the backend itself stopped the worker because the running
    item (the last of the ``started``) had run longer than ``task_timeout`` (a backend
    with ``Capabilities.kills_overdue_tasks``): that item's attempt fails with
    :class:`TaskTimeoutError` (and may be retried); it is no crash, so it is never a
    suspect.
    """

    def __init__(
        self,
        message: str,
        *,
        started: int | None,
        finished: bool = False,
        crashed: bool | None = None,
        overdue: bool = False,
    ) -> None:
        super().__init__(message)
        self.started = started
        self.finished = finished
        self.crashed = crashed
        self.overdue = overdue

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_task_lost, (str(self), self.started, self.finished, self.crashed, self.overdue))


def _rebuild_task_lost(
    message: str, started: int | None, finished: bool, crashed: bool | None, overdue: bool = False
) -> TaskLostError:
    return TaskLostError(message, started=started, finished=finished, crashed=crashed, overdue=overdue)


class IncompleteRunError(PyarallelError):
    """The run did not complete, so its result is partial: raised (inside the
    ``ExceptionGroup`` of :meth:`ParallelResult.raise_on_failure`) by every operation that
    needs all the values, even when every item that was read succeeded.

    ``status`` is how the run ended (a :class:`~pyarallel.RunStatus`), ``read`` how many
    items were taken from the input and ``finished`` how many of them finished before the
    run ended. For ``RunStatus.SIZE_MISMATCH``, ``expected`` is the number of items the
    input's ``len()`` gave when the run started (else ``None``).
    """

    def __init__(self, status: object, *, read: int, finished: int, expected: int | None = None) -> None:
        super().__init__(status, read, finished)
        self.status = status
        self.read = read
        self.finished = finished
        self.expected = expected

    def __str__(self) -> str:
        status = getattr(self.status, "value", self.status)
        if self.expected is not None:
            return (
                f"the run did not complete as asked (status {status}): the input gave {self.read} "
                f"items, not the {self.expected} its len() said when the run started (it changed "
                f"while being read, or its __len__ is wrong); the result holds the {self.read} "
                "items read"
            )
        return (
            f"the run did not complete (status {status}): {self.read} items were read from the "
            f"input and {self.finished} of them finished"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_incomplete, (self.status, self.read, self.finished, self.expected))


def _rebuild_incomplete(
    status: object, read: int, finished: int, expected: int | None = None
) -> IncompleteRunError:
    return IncompleteRunError(status, read=read, finished=finished, expected=expected)


class WorkerInitError(PyarallelError):
    """A call's ``worker_init`` raised in a worker, so the run could not go on: raised
    from the call (after every worker has stopped), with the exception ``worker_init``
    raised as its ``__cause__`` (its traceback as text, from another process)."""


class CheckpointError(PyarallelError, ValueError):
    """The checkpoint cannot be used: it belongs to another job, or its contents cannot be
    trusted (a file that is not a pyarallel checkpoint, records that fail their integrity
    check). Raised when the run starts, before any item runs; the message names the file
    and says what to do (pass another path or the right secret, or delete the file to
    start over). It is a ``ValueError``."""
