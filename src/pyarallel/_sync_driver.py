"""Runs a plan to completion in the calling thread, yielding each item's final result as
soon as it is known (completion order).

The driver owns everything the ``Schedule`` leaves out: the clock, the backend, waiting for
completions, the total timeout, progress and observer calls, and shutting the backend down
however the run ends (normally, on timeout, on Ctrl-C, or when the consumer of the stream
stops early). Completed futures arrive through one queue, so waiting costs the same
whatever the number of tasks in flight.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future
from queue import Empty, SimpleQueue
from typing import Any

from pyarallel._observers import Observers
from pyarallel._plan import RunPlan
from pyarallel._result import ItemResult
from pyarallel._scheduler import RetryEvent, Schedule, Task
from pyarallel._tasks import Outcome, run_task
from pyarallel.contracts import RunSummary

__all__ = ["execute"]


def execute(plan: RunPlan) -> Iterator[ItemResult[Any]]:
    """Run ``plan``; yield every item's final result exactly once, in completion order."""
    started = time.monotonic()
    deadline = None if plan.options.timeout is None else started + plan.options.timeout
    backend = plan.start_backend()
    schedule = Schedule(
        plan.source,
        total=plan.total,
        window=plan.window,
        capacity=backend.capacity,
        limiter=plan.limiter,
        retry=plan.retry_policy,
    )
    observers = Observers()
    run = plan.describe(backend)
    on_progress = plan.options.on_progress
    fn, star, origin_pid = plan.fn, plan.star, os.getpid()
    completed: SimpleQueue[Future[list[Outcome]]] = SimpleQueue()
    in_flight: dict[Future[list[Outcome]], Task] = {}
    outcome, failure = "error", None
    observers.run_start(run)

    def deliver(events: list[ItemResult[Any] | RetryEvent]) -> Iterator[ItemResult[Any]]:
        for event in events:
            if observers.watch_items:
                observers.item_event(run, event, schedule.done, schedule.seen)
            if isinstance(event, ItemResult):
                if on_progress is not None:
                    on_progress(
                        schedule.done,
                        schedule.total if schedule.total is not None else schedule.seen,
                    )
                yield event

    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                outcome = "timed_out"
                yield from deliver(list(schedule.expire(plan.options.timeout or 0.0)))
                break
            for task in schedule.next_tasks(now):
                future = backend.submit(run_task, fn, star, [item.payload for item in task], origin_pid)
                in_flight[future] = task
                future.add_done_callback(completed.put)
            if schedule.finished:
                outcome = "completed"
                break
            wake = _earliest(schedule.wake_at(), deadline)
            try:
                future = completed.get(timeout=None if wake is None else max(0.0, wake - time.monotonic()))
            except Empty:
                continue
            while True:
                task = in_flight.pop(future)
                yield from deliver(schedule.finish_task(task, _outcomes(future), time.monotonic()))
                try:
                    future = completed.get_nowait()
                except Empty:
                    break
    except (GeneratorExit, KeyboardInterrupt):
        outcome = "interrupted"
        raise
    except BaseException as error:
        failure = error
        raise
    finally:
        backend.close(abort=outcome != "completed")
        observers.run_end(
            run,
            RunSummary(
                outcome=outcome,
                succeeded=schedule.succeeded,
                failed=schedule.done - schedule.succeeded,
                retries=schedule.retries,
                seconds=time.monotonic() - started,
                error=failure,
            ),
        )


def _outcomes(future: Future[list[Outcome]]) -> list[Outcome] | BaseException:
    """The task's per-item outcomes, or the exception that failed the whole task."""
    if future.cancelled():
        from concurrent.futures import CancelledError

        return CancelledError("the task was cancelled by its executor")
    error = future.exception()
    return error if error is not None else future.result()


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)
