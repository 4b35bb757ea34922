"""What every driver of a run shares: the schedule, the clock's deadline, progress,
``on_result`` and observer calls, the checkpoint, stopping (``max_errors``, ``stop=``) and
the end-of-run summary and statistics. A driver (sync or async) adds only the waiting and the way tasks
execute."""

from __future__ import annotations

import time
from collections.abc import Callable
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
from pyarallel._scheduling import Event, LostEvent, RetryEvent, Schedule, WaitEvent
from pyarallel._scheduling.schedule import ABORTED, CANCELLED
from pyarallel._stats import RunStats, StatsCollector
from pyarallel.contracts import NO_CAPABILITIES, Capabilities, FinishedItems, RunInfo, RunSummary

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyarallel._checkpointing import Recorder

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
        options = plan.options
        timeout = options.timeout
        self.deadline = None if timeout is None else self.started + timeout
        self._stop = options.stop
        resume = None
        self._recorder: Recorder | None = None
        if plan.checkpoint is not None:
            from pyarallel._checkpointing import open_checkpoint

            resume, self._recorder = open_checkpoint(plan)
        self.schedule = Schedule(
            plan.source,
            total=plan.total,
            window=plan.window,
            capacity=capacity,
            limiter=plan.limiter,
            retry=plan.retry_policy,
            task_seconds=capabilities.task_seconds,
            queue_ahead=capabilities.queue_ahead,
            reclaim=capabilities.in_caller_process and not capabilities.synchronous,
            paced_queue_ahead=capabilities.reports_idle_workers,
            clock=time.monotonic,
            deadline=self.deadline,
            max_errors=options.max_errors,
            task_timeout=options.task_timeout,
            enforce_task_timeout=not capabilities.kills_overdue_tasks,
            resume=resume,
            max_task_items=options.max_tasks_per_worker,
        )
        self.info: RunInfo = plan.describe(executor, capacity)
        self._on_progress = options.on_progress
        self._on_result = options.on_result
        self._reported_total: int | None = None  # the total last given to on_progress
        self._stats = StatsCollector()
        self.stats: RunStats | None = None  # set when the run ends
        try:
            self._observers = Observers(self.info, [self._stats])
            self._observers.start(self.info)
        except BaseException:
            self.close_checkpoint()
            raise

    @property
    def stop_due(self) -> bool:
        """True once the run's ``stop=`` token is triggered, until ``stop()`` is called."""
        stop = self._stop
        return stop is not None and stop.stopped and self.schedule.closed is None

    def stop(self) -> list[Settled]:
        """Stop gracefully (the ``stop=`` token was triggered): close admission and return
        the items that ended then."""
        return self.deliver([*self.schedule.close_admission(CANCELLED)])

    def subscribe_to_stop(self, wake: Callable[[], object]) -> Callable[[], None]:
        """Call ``wake()`` when the run's ``stop=`` token is triggered (from any thread);
        return the function that cancels that."""
        if self._stop is None:
            return _nothing
        return self._stop.subscribe(wake)

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
        """Record ``events`` in the checkpoint and report them to ``on_result``, observers
        and progress (with the items the schedule settled on its own, and those ended by
        reaching ``max_errors``); return the final results among them (single items, or
        runs of successes that observers and progress see item by item)."""
        schedule = self.schedule
        if schedule.has_events:
            events = [*schedule.take_events(), *events]
        if schedule.abort_due:
            events = [*events, *schedule.close_admission(ABORTED)]
        if not events:
            return []
        results: list[Settled] = [
            event for event in events if type(event) is Successes or type(event) is ItemResult
        ]
        if len(results) != len(events):
            self._notify(events)
        if not results:
            return results
        if self._recorder is not None:
            self._recorder.record(results)
        if self._on_result is not None:
            on_result = self._on_result
            for result in results:
                for item_result in item_results(result):
                    on_result(item_result)
        succeeded = failed = 0
        for result in results:
            if type(result) is Successes:
                succeeded += len(result)
            elif result.ok:  # type: ignore[union-attr]
                succeeded += 1
            else:
                failed += 1
        observers, info = self._observers, self.info
        observers.finished(info, FinishedItems(results, succeeded, failed), schedule.done, schedule.seen)
        if observers.item_result or self._on_progress is not None:
            self._report_each(results, schedule.done - succeeded - failed)
        return results

    def _notify(self, events: list[Event]) -> None:
        """Tell observers of the retries, lost workers and waits among ``events``."""
        observers, info = self._observers, self.info
        for event in events:
            if type(event) is RetryEvent:
                observers.retry(info, event.index, event.attempt, event.error, event.delay)
            elif type(event) is LostEvent:
                observers.lost(info, event.indexes, event.error)
            elif type(event) is WaitEvent:
                observers.waited(info, event.reason, event.seconds)

    def _report_each(self, results: list[Settled], done: int) -> None:
        """Report ``results`` one item at a time to ``on_progress`` and the observers that
        want every ``ItemResult``; ``done`` items had finished before them."""
        schedule, on_progress, observers, info = self.schedule, self._on_progress, self._observers, self.info
        total = self._reported_total = schedule.total if schedule.total is not None else schedule.seen
        if not observers.item_result:  # only on_progress: no ItemResult is needed
            assert on_progress is not None
            for result in results:
                for _ in range(len(result) if type(result) is Successes else 1):
                    done += 1
                    on_progress(done, total)
            return
        for result in results:
            for item_result in item_results(result):
                done += 1
                observers.result(info, item_result, done, schedule.seen)
                if on_progress is not None:
                    on_progress(done, total)

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
        if schedule.closed is not None:
            return RunStatus.ABORTED if schedule.closed == ABORTED else RunStatus.CANCELLED
        return RunStatus.SIZE_MISMATCH if schedule.size_mismatch else RunStatus.COMPLETED

    def result(self, collector: ResultCollector[Any]) -> ParallelResult[Any]:
        """The ``ParallelResult`` of the ended run, from what ``collector`` gathered."""
        result = self._collected(collector)
        result._stats = self.stats
        return result

    def _collected(self, collector: ResultCollector[Any]) -> ParallelResult[Any]:
        schedule = self.schedule
        if schedule.expired:
            return collector.result(self.status, schedule.read_at_expiry, schedule.done_at_expiry)
        if schedule.closed is not None:
            finished = schedule.done - schedule.ended_early
            return collector.result(self.status, schedule.read_at_close, finished)
        if schedule.size_mismatch:
            return collector.result(self.status, schedule.seen, schedule.done, schedule.declared_total)
        return collector.result()

    def expire(self) -> list[ItemResult[Any]]:
        """End the run on its timeout: a timeout failure for every unfinished item."""
        failures = self.schedule.expire(self.plan.options.timeout or 0.0)
        self.deliver([*failures])
        return failures

    def close_checkpoint(self) -> None:
        """Make the checkpoint's records durable and release it (idempotent)."""
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.close()

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Close the checkpoint, gather the run's statistics and tell observers how the
        run ended."""
        self.close_checkpoint()
        schedule = self.schedule
        now = time.monotonic()
        seconds = now - self.started
        wait = schedule.end_wait(now)
        if wait is not None:
            self._observers.waited(self.info, wait.reason, wait.seconds)
        self.stats = self._stats.stats(
            self.info,
            outcome=outcome,
            seconds=seconds,
            calls=schedule.calls,
            retries=schedule.retries,
            restored=schedule.restored,
        )
        summary = RunSummary(
            outcome=outcome,
            succeeded=schedule.succeeded,
            failed=schedule.done - schedule.succeeded,
            retries=schedule.retries,
            seconds=seconds,
            error=error,
            stats=self.stats,
        )
        self._observers.end(self.info, summary)


def _nothing() -> None:
    pass
