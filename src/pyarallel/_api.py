"""The synchronous public functions: thin layers that assemble options and run the scheduler.

The scheduler is imported on the first call, not with this module: ``from pyarallel
import parallel_map`` is the first line of many a script and command-line tool.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs startup time
if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable
    from typing import Any, TypeVar

    from pyarallel._options import (
        CheckpointOption,
        ExecutorOption,
        KeyFunction,
        ProgressCallback,
        ProgressOption,
        RateLimitOption,
        ResultCallback,
        RetryOption,
    )
    from pyarallel._result import ItemResult, ParallelResult
    from pyarallel._stopping import StopToken

    R = TypeVar("R")

__all__ = ["parallel_iter", "parallel_map", "parallel_starmap"]


def parallel_map(
    fn: Callable[[Any], R],
    items: Iterable[Any],
    *,
    workers: int | None = None,
    executor: ExecutorOption = "thread",
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
    sequential: bool = False,
    worker_init: Callable[[], object] | None = None,
    max_tasks_per_worker: int | None = None,
    progress: ProgressOption = False,
) -> ParallelResult[R]:
    """Call ``fn(item)`` for every item in parallel and return the results in input order.

    - ``workers``: how many calls run at once (``None``: the executor's default).
    - ``executor``: ``"thread"``, ``"process"``, another plugin's name, or a
      ``concurrent.futures.Executor`` to use as it is (never shut down by pyarallel).
    - ``rate_limit``: a ``RateLimit`` or calls per second; every attempt counts. A
      ``RateLimiter`` object (shared by every call given it) or a plugin's spec works too.
    - ``timeout``: total wall-clock seconds, reading the input included; items not
      finished by then fail with ``ItemTimeoutError`` (a ``TimeoutError``), no more input
      is read, and the call returns at once with ``status`` ``RunStatus.TIMED_OUT``.
    - ``on_progress(done, total)``: called after each item finishes; with an unsized input
      read lazily (``batch_size`` or ``timeout`` set), ``total`` is the number of items
      taken so far.
    - ``batch_size``: take at most this many items from the input ahead of completion
      (a sliding window); an unsized input is then read lazily instead of into a list.
    - ``retry``: a ``Retry`` (or a ``RetryPolicy`` object, or a plugin's spec such as
      pyarallel-tenacity's); only the failing item is retried.

    Every item ends as exactly one success or one failure: failures never raise here, they
    are in the returned ``ParallelResult``, whose ``status`` says whether the run
    completed. Invalid options raise ``ValueError`` or ``TypeError`` before any work
    starts.
    """
    from pyarallel._plan import MAP, RunOptions, make_plan
    from pyarallel._sync_driver import collect

    options = RunOptions.for_call(MAP, locals())
    return collect(make_plan(fn, items, options, star=False, materialize_unsized=True))


def parallel_starmap(
    fn: Callable[..., R],
    items: Iterable[Iterable[Any]],
    *,
    workers: int | None = None,
    executor: ExecutorOption = "thread",
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
    sequential: bool = False,
    worker_init: Callable[[], object] | None = None,
    max_tasks_per_worker: int | None = None,
    progress: ProgressOption = False,
) -> ParallelResult[R]:
    """Like :func:`parallel_map`, but calls ``fn(*item)`` for every item.

    >>> parallel_starmap(pow, [(2, 3), (3, 2)])
    ParallelResult([8, 9])
    """
    from pyarallel._plan import MAP, RunOptions, make_plan
    from pyarallel._sync_driver import collect

    options = RunOptions.for_call(MAP, locals())
    return collect(make_plan(fn, items, options, star=True, materialize_unsized=True))


def parallel_iter(
    fn: Callable[[Any], R],
    items: Iterable[Any],
    *,
    workers: int | None = None,
    executor: ExecutorOption = "thread",
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
    sequential: bool = False,
    worker_init: Callable[[], object] | None = None,
    max_tasks_per_worker: int | None = None,
    progress: ProgressOption = False,
) -> Generator[ItemResult[R], None, None]:
    """Call ``fn(item)`` for every item in parallel, yielding an ``ItemResult`` for each
    as it completes (completion order, not input order). Nothing is accumulated.

    The input is always read lazily; ``batch_size`` bounds how many items are taken ahead
    of completion. Options are validated when this is called, before iteration starts.
    Stopping early (``break``, or closing the iterator) cancels what is queued and shuts
    the workers down.
    """
    from pyarallel._plan import STREAM, RunOptions, make_plan
    from pyarallel._sync_driver import execute

    options = RunOptions.for_call(STREAM, locals())
    return execute(make_plan(fn, items, options, star=False, materialize_unsized=False))
