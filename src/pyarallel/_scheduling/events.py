"""What a schedule reports about items: final results, and retries."""

from __future__ import annotations

from pyarallel._result import Settled

__all__ = ["Event", "RetryEvent"]


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


# What a schedule reports: final results (one item or a run of successes) and retries.
Event = Settled | RetryEvent
