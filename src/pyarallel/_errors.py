"""The exceptions pyarallel raises or records, in one hierarchy users can catch at any level.

Validation errors are plain ``ValueError``/``TypeError`` raised before any work starts.
The classes here describe what happened to an *item* while a run was going on; each one
names the item's input index so that a failure read out of a log says which input caused it.
"""

from __future__ import annotations

__all__ = [
    "ItemError",
    "ItemTimeoutError",
    "PyarallelError",
    "SerializationError",
    "TaskTimeoutError",
    "WorkerCrashedError",
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

    Only the item that was running in the dead worker fails with this error; other items
    that were in flight on the same pool are run again on a fresh pool.
    """


class SerializationError(ItemError):
    """The item's arguments, its result or its exception could not be pickled.

    Raised for process (and other out-of-process) executors; the message names the
    pickling error (when pickling failed in this process, ``__cause__`` is that error).
    """


class TaskTimeoutError(ItemError, TimeoutError):
    """One attempt of an async item ran longer than ``task_timeout``; its coroutine was
    cancelled. Like any failure it may be retried. It is a ``TimeoutError``."""


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
