"""What a schedule reports: final results, retries, and notices for observers (a task
lost with its worker, a wait on the rate limiter or a pause)."""

from __future__ import annotations

from pyarallel._errors import TaskLostError
from pyarallel._result import Settled

__all__ = ["Event", "LostEvent", "Notice", "RetryEvent", "WaitEvent"]


class RetryEvent:
    """Item ``index`` failed attempt ``attempt`` with ``error`` and runs again after ``delay``."""

    __slots__ = ("attempt", "delay", "error", "index")

    def __init__(self, index: int, attempt: int, error: BaseException, delay: float) -> None:
        self.index = index
        self.attempt = attempt
        self.error = error
        self.delay = delay

    def _fields(self) -> tuple[int, int, BaseException, float]:
        return (self.index, self.attempt, self.error, self.delay)

    def __eq__(self, other: object) -> bool:
        if type(other) is not RetryEvent:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = f"index={self.index}, attempt={self.attempt}, error={self.error!r}, delay={self.delay}"
        return f"RetryEvent({fields})"


class LostEvent:
    """The worker running items ``indexes`` went away (``error``): a crash, or a worker
    stopped because an item overran ``task_timeout`` (``error.overdue``). What became of
    each item follows as its own events."""

    __slots__ = ("error", "indexes")

    def __init__(self, indexes: tuple[int, ...], error: TaskLostError) -> None:
        self.indexes = indexes
        self.error = error

    def __repr__(self) -> str:
        return f"LostEvent(indexes={self.indexes}, error={self.error!r})"


class WaitEvent:
    """Starts were held back for ``seconds``: ``reason`` is ``"rate_limit"`` (reported
    when the wait for the rate limiter ends) or ``"pause"`` (a retry decision paused the
    run's starts; reported when decided, for the part of the pause not already under
    way)."""

    __slots__ = ("reason", "seconds")

    def __init__(self, reason: str, seconds: float) -> None:
        self.reason = reason
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"WaitEvent(reason={self.reason!r}, seconds={self.seconds})"


# What happened that observers hear of besides results and retries.
Notice = LostEvent | WaitEvent

# What a schedule reports: final results (one item or a run of successes), retries and
# notices.
Event = Settled | RetryEvent | Notice
