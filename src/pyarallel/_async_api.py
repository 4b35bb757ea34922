"""The asynchronous public functions, the mirror of ``_api``: thin layers that assemble
options and run the shared scheduler on the running event loop."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pyarallel._async_driver import execute_async, execute_ordered, start_async_run
from pyarallel._async_stream import AsyncResultStream
from pyarallel._options import ProgressCallback
from pyarallel._plan import ASYNC_MAP, ASYNC_STREAM, RunOptions, RunPlan, make_plan

if TYPE_CHECKING:
    from pyarallel._options import (
        CheckpointOption,
        KeyFunction,
        ProgressOption,
        RateLimitOption,
        ResultCallback,
        RetryOption,
    )
    from pyarallel._stopping import StopToken
from pyarallel._result import ParallelResult, ResultCollector

__all__ = [
    "async_collect",
    "async_parallel_iter",
    "async_parallel_map",
    "async_parallel_starmap",
]

R = TypeVar("R")
AsyncItems = Iterable[Any] | AsyncIterable[Any]


async def async_parallel_map(
    fn: Callable[[Any], Awaitable[R]],
    items: AsyncItems,
    *,
    concurrency: int = 4,
    rate_limit: RateLimitOption = None,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    retry: RetryOption = None,
    task_timeout: float | None = None,
    max_errors: int | None = None,
    stop: StopToken | None = None,
    checkpoint: CheckpointOption = None,
    checkpoint_key: KeyFunction | None = None,
    on_result: ResultCallback | None = None,
    progress: ProgressOption = False,
) -> ParallelResult[R]:
    """Await ``fn(item)`` for every item, at most ``concurrency`` at once, and return the
    results in input order.

    ``items`` may be a sync or an async iterable; it is read lazily, as slots free up, and
    never drained into a list first (so for an unsized input ``on_progress`` receives the
    number of items seen so far as its total). ``timeout`` is total wall clock, pulls
    from the input included: items not finished by then fail with ``ItemTimeoutError``
    and the result's ``status`` is ``RunStatus.TIMED_OUT``. ``task_timeout`` bounds each attempt:
    its coroutine is cancelled and the attempt fails with ``TaskTimeoutError`` (retried
    like any failure). Other options mean what they mean for ``parallel_map``; the rate
    limiter waits without blocking the event loop.

    When the calling task is cancelled, every coroutine started is cancelled and awaited
    before ``CancelledError`` propagates. Invalid options, and an ``fn`` that is not an
    async function, raise before any work starts.
    """
    options = RunOptions.for_call(ASYNC_MAP, locals())
    plan = make_plan(fn, items, options, star=False, materialize_unsized=False, asynchronous=True)
    return await async_collect(plan)


async def async_parallel_starmap(
    fn: Callable[..., Awaitable[R]],
    items: Iterable[Iterable[Any]] | AsyncIterable[Iterable[Any]],
    *,
    concurrency: int = 4,
    rate_limit: RateLimitOption = None,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    retry: RetryOption = None,
    task_timeout: float | None = None,
    max_errors: int | None = None,
    stop: StopToken | None = None,
    checkpoint: CheckpointOption = None,
    checkpoint_key: KeyFunction | None = None,
    on_result: ResultCallback | None = None,
    progress: ProgressOption = False,
) -> ParallelResult[R]:
    """Like :func:`async_parallel_map`, but awaits ``fn(*item)`` for every item."""
    options = RunOptions.for_call(ASYNC_MAP, locals())
    plan = make_plan(fn, items, options, star=True, materialize_unsized=False, asynchronous=True)
    return await async_collect(plan)


def async_parallel_iter(
    fn: Callable[[Any], Awaitable[R]],
    items: AsyncItems,
    *,
    concurrency: int = 4,
    rate_limit: RateLimitOption = None,
    batch_size: int | None = None,
    retry: RetryOption = None,
    task_timeout: float | None = None,
    max_errors: int | None = None,
    stop: StopToken | None = None,
    checkpoint: CheckpointOption = None,
    checkpoint_key: KeyFunction | None = None,
    on_result: ResultCallback | None = None,
    ordered: bool = False,
    progress: ProgressOption = False,
) -> AsyncResultStream[R]:
    """An async stream of ``ItemResult`` in completion order; nothing is accumulated.

    Use it as ``async with async_parallel_iter(...) as results: async for item in
    results: ...``: leaving the block (or ``aclose()``) cancels and awaits every coroutine
    in flight, and the input is not pulled again (see ``AsyncResultStream``). Options are
    validated when this is called, before iteration starts.
    """
    options = RunOptions.for_call(ASYNC_STREAM, locals())
    plan = make_plan(fn, items, options, star=False, materialize_unsized=False, asynchronous=True)
    return AsyncResultStream(execute_ordered(plan) if plan.options.ordered else execute_async(plan))


async def async_collect(plan: RunPlan) -> ParallelResult[Any]:
    """Run ``plan`` on the running loop and gather its results in input order, with how
    the run ended."""
    collector: ResultCollector[Any] = ResultCollector(plan.total)
    run = start_async_run(plan)
    results = execute_async(plan, run)
    try:
        async for result in results:
            collector.add(result)
    finally:
        await results.aclose()
    return run.result(collector)
