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
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from pyarallel._errors import TaskTimeoutError
from pyarallel._plan import RunPlan
from pyarallel._result import ItemResult
from pyarallel._run import Run
from pyarallel._scheduler import Task
from pyarallel._tasks import Outcome

__all__ = ["EXECUTOR_NAME", "execute_async"]

EXECUTOR_NAME = "asyncio"


async def execute_async(plan: RunPlan) -> AsyncGenerator[ItemResult[Any], None]:
    """Run ``plan``; yield every item's final result exactly once, in completion order."""
    capacity = plan.options.workers or 1
    run = Run(plan, executor=EXECUTOR_NAME, capacity=capacity)
    tasks: dict[asyncio.Task[list[Outcome]], Task] = {}
    outcome, failure = "error", None
    try:
        async with contextlib.aclosing(_drive(run, tasks)) as results:
            async for result in results:
                yield result
        outcome = "timed_out" if run.schedule.expired else "completed"
    except (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt):
        outcome = "interrupted"
        raise
    except BaseException as error:
        failure = error
        raise
    finally:
        await _cancel_all(tasks)
        run.end(outcome, failure)


async def _drive(
    run: Run, tasks: dict[asyncio.Task[list[Outcome]], Task]
) -> AsyncGenerator[ItemResult[Any], None]:
    schedule, plan = run.schedule, run.plan
    fn, star, task_timeout = plan.fn, plan.star, plan.options.task_timeout
    source = plan.async_source
    pull: asyncio.Task[Any] | None = None
    try:
        while True:
            now = time.monotonic()
            if run.expired(now):
                await _cancel_all(tasks)
                for result in run.expire():
                    yield result
                return
            if source is not None and pull is None and schedule.needs_input():
                pull = asyncio.ensure_future(anext(source))
            for task in schedule.next_tasks(now):
                item = task[0]
                coroutine = _attempt(fn, star, item.payload, item.index, item.attempts, task_timeout)
                tasks[asyncio.ensure_future(coroutine)] = task
            if schedule.finished:
                return
            waiting: set[asyncio.Future[Any]] = set(tasks)
            if pull is not None:
                waiting.add(pull)
            timeout = run.seconds_to_wait()
            if not waiting:
                await asyncio.sleep(timeout or 0.0)
                continue
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if pull is not None and pull in done:
                done.discard(pull)
                try:
                    schedule.admit(pull.result())
                except StopAsyncIteration:
                    schedule.close_input()
                pull = None
            now = time.monotonic()
            for finished in done:
                task = tasks.pop(finished)  # type: ignore[call-overload]
                for result in run.deliver(schedule.finish_task(task, finished.result(), now)):
                    yield result
    finally:
        if pull is not None:
            await _cancel_all({pull: []})


async def _attempt(  # noqa: PLR0917
    fn: Callable[..., Coroutine[Any, Any, Any]],
    star: bool,
    payload: Any,
    index: int,
    attempt: int,
    task_timeout: float | None,
) -> list[Outcome]:
    """One attempt of one item, as the one-item list of outcomes the schedule expects."""
    scope = asyncio.timeout(task_timeout)
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
    except Exception as error:
        return [(False, error)]
    return [(True, value)]


async def _cancel_all(tasks: dict[Any, Any]) -> None:
    """Cancel every task in ``tasks`` and wait until each has really finished."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    tasks.clear()
