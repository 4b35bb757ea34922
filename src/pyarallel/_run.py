"""What every driver of a run shares: the schedule, the clock's deadline, progress and
observer calls, and the end-of-run summary. A driver (sync or async) adds only the
waiting and the way tasks execute."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pyarallel._observers import Observers
from pyarallel._plan import RunPlan
from pyarallel._result import (
    ItemResult,
    ParallelResult,
    ResultCollector,
    RunStatus,
    Settled,
    Successes,
    item_results,
)
from pyarallel._scheduling import Event, RetryEvent, Schedule
from pyarallel.contracts import NO_CAPABILITIES, Capabilities, RunInfo, RunSummary

__all__ = ["Run"]

MAX_WAIT_SECONDS = 3600.0


class Run:
    """One run in progress: its ``schedule`` plus the bookkeeping around it."""

    def __init__(
        self,
        plan: RunPlan,
        *,
        executor: str,
        capacity: int,
        capabilities: Capabilities = NO_CAPABILITIES,
    ) -> None:
        self.plan = plan
        self.started = time.monotonic()
        timeout = plan.options.timeout
        self.deadline = None if timeout is None else self.started + timeout
        self.schedule = Schedule(
            plan.source,
            total=plan.total,
            window=plan.window,
            capacity=capacity,
            limiter=plan.limiter,
            retry=plan.retry_policy,
            task_seconds=capabilities.task_seconds,
            queue_ahead=capabilities.queue_ahead,
            reclaim=capabilities.in_caller_process,
            paced_queue_ahead=capabilities.reports_idle_workers,
            clock=time.monotonic,
            deadline=self.deadline,
        )
        self.info: RunInfo = plan.describe(executor, capacity)
        self._observers = Observers()
        self._on_progress = plan.options.on_progress
        self._reported_total: int | None = None  # the total last given to on_progress
        self._observers.run_start(self.info)

    def expired(self, now: float) -> bool:
        """True once the total timeout has passed."""
        return self.deadline is not None and now >= self.deadline

    def wake_at(self) -> float | None:
        """The next moment the driver must act even if no task finishes."""
        wake, deadline = self.schedule.wake_at(), self.deadline
        if wake is None or (deadline is not None and deadline < wake):
            return deadline
        return wake

    def seconds_to_wait(self) -> float | None:
        """How long the driver may wait for a task before it must act (``None``: until a
        task finishes). Capped, so a huge timeout never overflows the platform's timers."""
        wake = self.wake_at()
        if wake is None:
            return None
        return min(max(0.0, wake - time.monotonic()), MAX_WAIT_SECONDS)

    def token_deadline(self) -> float | None:
        """The moment a rate-limit token comes due, when that is the next thing to act on.

        Drivers sleep until just before it and poll for the rest: timer wake-ups come
        0.1-1 ms late, and under a rate limit every late start would lower the rate."""
        due = self.schedule.token_due
        return due if due is not None and due == self.wake_at() else None

    def deliver(self, events: list[Event]) -> list[Settled]:
        """Report ``events`` to observers and progress; return the final results among them
        (single items, or runs of successes that observers and progress see item by item)."""
        if not events:
            return []
        results: list[Settled] = [event for event in events if type(event) is not RetryEvent]  # type: ignore[misc]
        observers, on_progress = self._observers, self._on_progress
        if not observers.watch_items and on_progress is None:
            return results
        schedule = self.schedule
        total = self._reported_total = schedule.total if schedule.total is not None else schedule.seen
        # The schedule has counted the whole task already; report one item at a time.
        done = schedule.done - sum(len(result) if type(result) is Successes else 1 for result in results)
        for event in events:
            if on_progress is not None and not observers.watch_items:  # no ItemResult is needed
                if not isinstance(event, RetryEvent):
                    for _ in range(len(event) if isinstance(event, Successes) else 1):
                        done += 1
                        on_progress(done, total)
                continue
            item_events: Sequence[ItemResult[Any] | RetryEvent] = (
                (event,) if isinstance(event, RetryEvent) else item_results(event)
            )
            for item_event in item_events:
                if isinstance(item_event, ItemResult):
                    done += 1
                observers.item_event(self.info, item_event, done, schedule.seen)
                if on_progress is not None and isinstance(item_event, ItemResult):
                    on_progress(done, total)
        return results

    def finish(self) -> None:
        """The schedule has finished: when the input turned out to hold a different number
        of items than its ``len()`` said, tell ``on_progress`` the real total."""
        schedule = self.schedule
        if (
            self._on_progress is not None
            and schedule.size_mismatch
            and self._reported_total != schedule.total
        ):
            self._reported_total = schedule.total
            self._on_progress(schedule.done, schedule.seen)

    @property
    def status(self) -> RunStatus:
        """How the run ended (or is ending)."""
        schedule = self.schedule
        if schedule.expired:
            return RunStatus.TIMED_OUT
        return RunStatus.SIZE_MISMATCH if schedule.size_mismatch else RunStatus.COMPLETED

    def result(self, collector: ResultCollector[Any]) -> ParallelResult[Any]:
        """The ``ParallelResult`` of the finished run, from what ``collector`` gathered."""
        schedule = self.schedule
        if schedule.expired:
            return collector.result(self.status, schedule.read_at_expiry, schedule.done_at_expiry)
        if schedule.size_mismatch:
            return collector.result(self.status, schedule.seen, schedule.done, schedule.declared_total)
        return collector.result()

    def expire(self) -> list[ItemResult[Any]]:
        """End the run on its timeout: a timeout failure for every unfinished item."""
        failures = self.schedule.expire(self.plan.options.timeout or 0.0)
        self.deliver([*failures])
        return failures

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Tell observers how the run ended."""
        schedule = self.schedule
        self._observers.run_end(
            self.info,
            RunSummary(
                outcome=outcome,
                succeeded=schedule.succeeded,
                failed=schedule.done - schedule.succeeded,
                retries=schedule.retries,
                seconds=time.monotonic() - self.started,
                error=error,
            ),
        )
