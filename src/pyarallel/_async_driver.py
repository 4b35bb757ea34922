"""Runs a plan on the running event loop: each attempt is a task awaiting the user's
coroutine, and at most ``concurrency`` of them run at once (there is no pool).

The ``Schedule`` and ``Run`` are the very ones the blocking API uses, so ordering, the input
window, rate limiting, retries, progress and observers behave the same. This driver adds
only the waiting (``asyncio.wait`` over the running tasks, the pull of an async input, and
the next timed event) and structured cancellation: however the run ends (done, timeout,
the caller cancelled, the consumer closed the stream), every task it started has been
cancelled and awaited before control returns, and the input is not pulled again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from pyarallel._errors import TaskTimeoutError
from pyarallel._plan import RunPlan
from pyarallel._result import ItemResult, item_results
from pyarallel._run import MAX_WAIT_SECONDS, Run
from pyarallel._scheduling import Task
from pyarallel.contracts import Capabilities

__all__ = ["EXECUTOR_NAME", "execute_async", "execute_ordered", "start_async_run"]

EXECUTOR_NAME = "asyncio"


# An attempt's coroutine is cancelled once it overruns ``task_timeout``: the event loop is
# a backend that stops overdue tasks itself.
_CAPABILITIES = Capabilities(kills_overdue_tasks=True)


def start_async_run(plan: RunPlan) -> Run:
    """The ``Run`` of ``plan`` on the event loop (observers are told it starts)."""
    return Run(plan, executor=EXECUTOR_NAME, capacity=plan.options.workers or 1, capabilities=_CAPABILITIES)


async def execute_ordered(plan: RunPlan) -> AsyncGenerator[ItemResult[Any], None]:
    """``execute_async`` in input order: each result is held until those before it have
    been yielded."""
    held: dict[int, ItemResult[Any]] = {}
    next_index = 0
    async with contextlib.aclosing(execute_async(plan)) as results:
        async for item in results:
            held[item.index] = item
            while next_index in held:
                yield held.pop(next_index)
                next_index += 1


async def execute_async(plan: RunPlan, run: Run | None = None) -> AsyncGenerator[ItemResult[Any], None]:
    """Run ``plan`` (as ``run``, if the caller started it to read its status after);
    yield every item's final result exactly once, in completion order."""
    if run is None:
        run = start_async_run(plan)
    tasks: dict[asyncio.Task[_Report], Task] = {}
    outcome, failure = "error", None
    try:
        async with contextlib.aclosing(_drive(run, tasks)) as results:
            async for result in results:
                yield result
        outcome = run.status.value
    except (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt):
        outcome = "interrupted"
        raise
    except BaseException as error:
        failure = error
        raise
    finally:
        if outcome != "completed":
            run.schedule.stop_claims()
        await _cancel_all(tasks)
        run.end(outcome, failure)


async def _drive(run: Run, tasks: dict[asyncio.Task[_Report], Task]) -> AsyncGenerator[ItemResult[Any], None]:
    schedule, plan = run.schedule, run.plan
    fn, star, task_timeout = plan.fn, plan.star, plan.options.task_timeout
    source = plan.async_source
    inbox = _Inbox()
    pull: asyncio.Future[Any] | None = None
    loop = asyncio.get_running_loop()
    unsubscribe = run.subscribe_to_stop(lambda: loop.call_soon_threadsafe(inbox.wake))
    try:
        while True:
            now = time.monotonic()
            if run.expired(now):
                await _cancel_all(tasks)
                for result in run.expire():
                    yield result
                return
            if run.stop_due:
                for settled in run.stop():
                    for result in item_results(settled):
                        yield result
            for task in schedule.start_tasks(now):
                (item,) = task.items()  # no chunking here: one item per task
                coroutine = _attempt(fn, star, item.payload, item.index, item.attempts, task_timeout)
                future = asyncio.ensure_future(coroutine)
                tasks[future] = task
                future.add_done_callback(inbox.put)
            for settled in run.deliver([]):  # refused by the rate limiter, restored...
                for result in item_results(settled):
                    yield result
            if source is not None and pull is None and schedule.needs_input():
                pull = asyncio.ensure_future(anext(source))
                pull.add_done_callback(inbox.put)
            if schedule.finished:
                run.finish()
                return
            await _wait(inbox, run)
            now = time.monotonic()
            while inbox.finished:
                finished = inbox.finished.popleft()
                if finished is pull:
                    pull = None
                    try:
                        schedule.admit(finished.result())
                    except StopAsyncIteration:
                        schedule.close_input()
                    continue
                task = tasks.pop(finished)  # type: ignore[call-overload]
                values, failed, seconds = finished.result()
                for settled in run.deliver(schedule.finish_task(task, values, failed, now, seconds)):
                    for result in item_results(settled):
                        yield result
    finally:
        unsubscribe()
        if pull is not None:
            await _cancel_all({pull: None})


# An attempt's value or exception, [0] when it is an exception, and the seconds it ran
# (see ``TaskReport``).
_Report = tuple[list[Any], list[int], float]

POLL_SECONDS = 0.002  # the event loop's timers wake up to 1 ms late (epoll counts in ms)


async def _wait(inbox: _Inbox, run: Run) -> None:
    """Wait until something finishes or the driver must act; when a rate-limit token is
    next, sleep until just before it and yield to the loop for the rest, to start on time."""
    due = run.token_deadline()
    if due is None:
        await inbox.wait(run.seconds_to_wait())
        return
    sleep_for = due - time.monotonic() - POLL_SECONDS
    if sleep_for > MAX_WAIT_SECONDS:  # a very slow rate: wake up now and then anyway
        await inbox.wait(MAX_WAIT_SECONDS)
        return
    if sleep_for > 0:
        await inbox.wait(sleep_for)
    while not inbox.finished and time.monotonic() < due:
        await asyncio.sleep(0)


class _Inbox:
    """The futures that have finished, in order, and a way to wait for the next one or a
    deadline: one future and one timer per wait, whatever the number of tasks running."""

    def __init__(self) -> None:
        self.finished: deque[asyncio.Future[Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, future: asyncio.Future[Any]) -> None:
        """Done callback of every task and input pull."""
        self.finished.append(future)
        self.wake()

    def wake(self) -> None:
        """End the current wait (something finished, or the run's stop token fired)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Return once something has finished, or after ``timeout`` seconds."""
        if self.finished:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _attempt(  # noqa: PLR0917
    fn: Callable[..., Coroutine[Any, Any, Any]],
    star: bool,
    payload: Any,
    index: int,
    attempt: int,
    task_timeout: float | None,
) -> _Report:
    """One attempt of one item, reported as the schedule expects a one-item task's."""
    scope = asyncio.timeout(task_timeout)
    started = time.perf_counter()
    try:
        try:
            async with scope:
                value = await (fn(*payload) if star else fn(payload))
        except TimeoutError:
            if not scope.expired():
                raise  # the function's own TimeoutError
            raise TaskTimeoutError(
                f"attempt {attempt} did not finish within task_timeout={task_timeout:g} s", index=index
            ) from None
    except asyncio.CancelledError as error:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the run is cancelling this attempt
        return [error], [0], time.perf_counter() - started  # raised by the user's coroutine itself
    except BaseException as error:  # SystemExit, KeyboardInterrupt too: they fail this item only
        return [error], [0], time.perf_counter() - started
    return [value], [], time.perf_counter() - started


async def _cancel_all(tasks: dict[Any, Any]) -> None:
    """Cancel every task in ``tasks`` and wait until each has really finished."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    tasks.clear()
