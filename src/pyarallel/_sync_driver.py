"""Runs a plan in the calling thread, yielding each item's final result as soon as it is
known (completion order).

The driver owns what the ``Schedule`` leaves out: the backend, waiting for completions and
for the next timed event, and shutting the backend down however the run ends (normally, on
timeout, on Ctrl-C, or when the consumer of the stream stops early). Completed futures
arrive through one queue, so waiting costs the same whatever the number of tasks in flight.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import CancelledError, Future
from queue import Empty, SimpleQueue
from typing import Any

from pyarallel._plan import RunPlan
from pyarallel._result import ItemResult, ParallelResult, ResultCollector, Settled, item_results
from pyarallel._run import MAX_WAIT_SECONDS, Run
from pyarallel._scheduling import Schedule, Task
from pyarallel._tasks import ChunkClaim, TaskFunction, TaskReport, received
from pyarallel.contracts import Backend

__all__ = ["collect", "execute", "settle"]


def collect(plan: RunPlan) -> ParallelResult[Any]:
    """Run ``plan`` and gather its results in input order, with how the run ended."""
    collector: ResultCollector[Any] = ResultCollector(plan.total)
    add = collector.add
    settled = settle(plan)
    with contextlib.closing(settled):
        while True:
            try:
                result = next(settled)
            except StopIteration as end:
                run: Run = end.value
                return run.result(collector)
            add(result)


def execute(plan: RunPlan) -> Generator[ItemResult[Any], None, None]:
    """Run ``plan``; yield every item's final result exactly once, in completion order
    (in input order with ``ordered=True``: each result is held until those before it have
    been yielded)."""
    with contextlib.closing(settle(plan)) as settled:
        if not plan.options.ordered:
            for result in settled:
                yield from item_results(result)
            return
        held: dict[int, ItemResult[Any]] = {}
        next_index = 0
        for result in settled:
            for item in item_results(result):
                held[item.index] = item
            while next_index in held:
                yield held.pop(next_index)
                next_index += 1


def settle(plan: RunPlan) -> Generator[Settled, None, Run]:
    """Run ``plan``; yield every item's final result exactly once, in completion order,
    with a task's successes together as one ``Successes`` (cheaper for a collector).
    Return the finished ``Run`` (its status, for a collector)."""
    backend = plan.start_backend()
    try:
        run = Run(plan, executor=backend.name, capacity=backend.capacity, capabilities=backend.capabilities)
    except BaseException:  # an observer of the run's start raised: nothing ran
        backend.close(abort=True)
        raise
    outcome, failure = "error", None
    try:
        yield from _drive(run, backend)
        outcome = run.status.value
    except (GeneratorExit, KeyboardInterrupt):
        outcome = "interrupted"
        raise
    except BaseException as error:
        failure = error
        raise
    finally:
        aborted = outcome != "completed"
        if aborted:
            run.schedule.stop_claims()
        backend.close(abort=aborted)
        run.end(outcome, failure)
    return run


def _drive(run: Run, backend: Backend) -> Generator[Settled, None, None]:
    schedule, plan = run.schedule, run.plan
    remote = not backend.capabilities.in_caller_process
    task_function = TaskFunction(
        plan.fn, plan.star, remote, schedule.chunk_budget, plan.portable, plan.options.worker_init
    )
    completed: SimpleQueue[Future[Any]] = SimpleQueue()
    held: deque[Future[Any]] = deque()  # finished just before a token came due; handled next
    in_flight: dict[Future[Any], Task] = {}
    readiness = _Readiness(backend, completed) if schedule.paced else None
    unsubscribe = run.subscribe_to_stop(lambda: completed.put(_WAKE))
    try:
        yield from _loop(run, backend, task_function, completed, held, in_flight, readiness)
    finally:
        unsubscribe()


# Put in the completion queue to wake the driver (its ``stop=`` token was triggered).
_WAKE: Future[Any] = Future()
_WAKE.set_result(None)


def _loop(  # noqa: PLR0917
    run: Run,
    backend: Backend,
    task_function: TaskFunction,
    completed: SimpleQueue[Future[Any]],
    held: deque[Future[Any]],
    in_flight: dict[Future[Any], Task],
    readiness: _Readiness | None,
) -> Generator[Settled, None, None]:
    schedule = run.schedule
    queued_cancelled = False  # once admission closed, the tasks still queued were cancelled
    while True:
        now = time.monotonic()
        if run.expired(now):
            yield from run.expire()
            return
        if run.stop_due:
            yield from run.stop()
        if schedule.closed is not None and not queued_cancelled:  # stopped, or max_errors reached
            queued_cancelled = True
            if backend.capabilities.in_caller_process:  # else a future may not say its task started
                _cancel_queued(schedule, in_flight)
                yield from run.deliver([])
        yield from run.deliver(schedule.reclaim_stalled(now))
        yield from run.deliver(schedule.overdue(now))
        if readiness is None or (schedule.has_work_to_start(now) and readiness.ready()):
            _submit_all(schedule.start_tasks(now), schedule, backend, task_function, in_flight, completed)
        if schedule.has_events:  # items ended while tasks were started (refused, restored...)
            yield from run.deliver([])
        if schedule.finished:
            run.finish()
            return
        token_due = run.token_deadline()
        finished = held.popleft() if held else _next_completion(completed, held, run)
        if finished is None and token_due is not None and readiness is not None and readiness.ready():
            # The token is due: draw it first thing, before the checks at the top of the
            # loop (every microsecond between the due time and the draw lowers the rate).
            now = time.monotonic()
            if not run.expired(now):
                _submit_all(schedule.start_tasks(now), schedule, backend, task_function, in_flight, completed)
        while finished is not None:  # handle every task that has finished by now
            finished_task = in_flight.pop(finished, None)
            if finished_task is not None:  # else it is the backend becoming ready
                values, failed, seconds = _report(finished)
                events = schedule.finish_task(finished_task, values, failed, time.monotonic(), seconds)
                yield from run.deliver(events)
            finished = held.popleft() if held else _finished_now(completed)


def _cancel_queued(schedule: Schedule, in_flight: dict[Future[Any], Task]) -> None:
    """Admission closed: cancel the tasks still queued in the backend (their items end
    as never started); tasks already running finish. Only for a backend running tasks in
    this process, whose futures are its executor's own: ``cancel()`` succeeds only before
    the task starts (a backend that sends tasks elsewhere cannot always tell)."""
    for future, task in list(in_flight.items()):
        if future.cancel():
            del in_flight[future]
            schedule.unstarted(task)


class _Readiness:
    """Under a rate limit, asks the backend whether a task submitted now would start at
    once (``Backend.until_ready``), so that no token is drawn for a task that cannot start
    yet: a call's start is what the limit is measured on. While the backend is not ready,
    its readiness future is one of the completions the driver waits for."""

    def __init__(self, backend: Backend, completed: SimpleQueue[Future[Any]]) -> None:
        self._until_ready = backend.until_ready
        self._completed = completed
        self._waiting: Future[None] | None = None

    def ready(self) -> bool:
        if self._waiting is not None and not self._waiting.done():
            return False
        self._waiting = self._until_ready()
        if self._waiting is None or self._waiting.done():
            return True
        self._waiting.add_done_callback(self._completed.put)
        return False


def _submit_all(  # noqa: PLR0917
    tasks: Iterator[Task],
    schedule: Schedule,
    backend: Backend,
    task_function: TaskFunction,
    in_flight: dict[Future[Any], Task],
    completed: SimpleQueue[Future[Any]],
) -> None:
    """Submit each of ``tasks`` as soon as the schedule gives it."""
    for task in tasks:
        future = _submit(backend, task_function, task, schedule.claim(task))
        in_flight[future] = task
        future.add_done_callback(completed.put)


def _submit(
    backend: Backend, task_function: TaskFunction, task: Task, claim: ChunkClaim | None
) -> Future[Any]:
    """Submit ``task``; a backend that refuses it (its executor shut down or broken) fails
    it as a whole, like a task that could not run."""
    try:
        if claim is None:
            return backend.submit(task_function, task.payloads)
        return backend.submit(task_function, task.payloads, claim)
    except Exception as error:
        future: Future[Any] = Future()
        future.set_exception(error)
        return future


# How long before a token comes due to stop sleeping and poll for it, without yielding to
# other threads: a yield can hand the interpreter to a thread (a cluster client's event
# loop, a server in the same process) that keeps it for a millisecond or more, and a token
# drawn late lowers the rate for good. Measured on a Dask LocalCluster at 100 calls/s, the
# 90th percentile of the interval between draws went from 10.4 ms (0.5 ms, yielding) to
# 10.03 ms; the threads wait at most this long, once per token.
POLL_SECONDS = 0.001


def _next_completion(
    completed: SimpleQueue[Future[Any]], held: deque[Future[Any]], run: Run
) -> Future[Any] | None:
    """The next finished task, or None once it is time to act without one.

    When a rate-limit token is next, sleep until just before it and poll for the rest
    (``POLL_SECONDS``): timer wake-ups come 0.1-1 ms late, and every late start would
    lower the rate. A task
    finishing in that last stretch is put in ``held`` and handled after the token is
    drawn, for the same reason (calls lasting a whole number of intervals finish just as
    a token comes due; measured at 100 calls/s, holding them is worth 0.3% of the rate)."""
    due = run.token_deadline()
    sleep_for = 0.0 if due is None else due - time.monotonic() - POLL_SECONDS
    try:
        if due is None:
            return completed.get(timeout=run.seconds_to_wait())
        if sleep_for > 0:
            return completed.get(timeout=min(sleep_for, MAX_WAIT_SECONDS))
    except Empty:
        if due is None or sleep_for > MAX_WAIT_SECONDS:  # a very slow rate: look again later
            return None
    while due - time.monotonic() > 0:
        try:
            held.append(completed.get_nowait())
        except Empty:
            continue
    return None


def _finished_now(completed: SimpleQueue[Future[Any]]) -> Future[Any] | None:
    try:
        return completed.get_nowait()
    except Empty:
        return None


def _report(future: Future[Any]) -> tuple[list[Any] | BaseException, list[int], float | None]:
    """The task's report (see ``TaskReport``), or the exception that failed it whole."""
    if future.cancelled():
        return CancelledError("the task was cancelled by its executor"), [], None
    error = future.exception()
    if error is not None:
        return error, [], None
    report: TaskReport = future.result()
    values, failed, _ = report
    for position in failed:
        values[position] = received(values[position])
    return report
