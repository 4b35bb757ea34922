"""What a schedule reports about items: final results, and retries."""

from __future__ import annotations

from dataclasses import dataclass

from pyarallel._result import Settled

__all__ = ["Event", "RetryEvent"]


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Item ``index`` failed attempt ``attempt`` with ``error`` and runs again after ``delay``."""

    index: int
    attempt: int
    error: BaseException
    delay: float


# What a schedule reports: final results (one item or a run of successes) and retries.
Event = Settled | RetryEvent
