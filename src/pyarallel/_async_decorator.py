"""``@async_parallel``: an ``async def`` function that still works as itself and gains
``.map``, ``.starmap`` and ``.stream``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, Unpack, overload

from pyarallel._async_api import async_collect, async_options
from pyarallel._async_driver import execute_async
from pyarallel._decorator import bind
from pyarallel._options import ProgressCallback, RateLimit, Retry, check_coroutine_function
from pyarallel._plan import AsyncRunOptionOverrides, RunOptions, RunPlan, make_plan, validate_options
from pyarallel._result import ItemResult, ParallelResult

__all__ = ["AsyncParallelFunction", "async_parallel"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
T = TypeVar("T")

_ASYNC_OPTIONS = ("workers", "rate_limit", "timeout", "task_timeout", "on_progress", "batch_size", "retry")
_ASYNC_STREAM_OPTIONS = ("workers", "rate_limit", "task_timeout", "batch_size", "retry")


class AsyncParallelFunction(Generic[P, R]):
    """An ``async def`` function decorated with ``@async_parallel``.

    Calling it returns the original coroutine. ``await .map(items)``, ``await
    .starmap(items)`` and ``async for ... in .stream(items)`` fan it out like
    ``async_parallel_map``, ``async_parallel_starmap`` and ``async_parallel_iter``, with the
    decorator's options as defaults that every call may override by keyword. Binds on
    instances, under ``@staticmethod``, and on top of ``@classmethod`` like ``@parallel``.
    """

    _pyarallel_async = True  # lets async_parallel_map accept it as an async function

    def __init__(self, fn: Callable[P, Awaitable[R]], defaults: RunOptions) -> None:
        self._fn = fn
        self._defaults = defaults
        functools.update_wrapper(self, fn)
        if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
            inspect.markcoroutinefunction(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        return self._fn(*args, **kwargs)

    async def map(
        self, items: Iterable[Any] | AsyncIterable[Any], /, **overrides: Unpack[AsyncRunOptionOverrides]
    ) -> ParallelResult[R]:
        """``async_parallel_map`` of this function, with the decorator's options as defaults."""
        options = self._options(overrides, _ASYNC_OPTIONS)
        return await async_collect(self._plan(items, options, star=False))

    async def starmap(
        self,
        items: Iterable[Iterable[Any]] | AsyncIterable[Iterable[Any]],
        /,
        **overrides: Unpack[AsyncRunOptionOverrides],
    ) -> ParallelResult[R]:
        """``async_parallel_starmap`` of this function, with the decorator's options as defaults."""
        options = self._options(overrides, _ASYNC_OPTIONS)
        return await async_collect(self._plan(items, options, star=True))

    def stream(
        self, items: Iterable[Any] | AsyncIterable[Any], /, **overrides: Unpack[AsyncRunOptionOverrides]
    ) -> AsyncIterator[ItemResult[R]]:
        """``async_parallel_iter`` of this function, with the decorator's options as defaults.

        A stream has no total ``timeout`` and no ``on_progress``: the decorator's defaults
        for those do not apply, and passing them here raises ``TypeError``.
        """
        options = self._options(overrides, _ASYNC_STREAM_OPTIONS)
        options = options.with_overrides({"timeout": None, "on_progress": None}, _ASYNC_OPTIONS)
        return execute_async(self._plan(items, options, star=False))

    def _options(self, overrides: AsyncRunOptionOverrides, allowed: tuple[str, ...]) -> RunOptions:
        renamed: dict[str, Any] = dict(overrides)
        if "concurrency" in renamed:
            renamed["workers"] = renamed.pop("concurrency")
        elif "workers" in renamed:
            raise TypeError("async functions take concurrency=, not workers=")
        return self._defaults.with_overrides(renamed, allowed)

    def _plan(self, items: Any, options: RunOptions, *, star: bool) -> RunPlan:
        return make_plan(self._fn, items, options, star=star, materialize_unsized=False, asynchronous=True)

    # For type checkers: on an instance, the first parameter (self) is bound.
    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: AsyncParallelFunction[Concatenate[T, P2], R], instance: T, owner: type | None = None
    ) -> AsyncParallelFunction[P2, R]: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        bound = bind(self._fn, instance, owner)
        return self if bound is None else AsyncParallelFunction(bound, self._defaults)

    def __repr__(self) -> str:
        return f"<async parallel function {getattr(self._fn, '__qualname__', self._fn)!r}>"


@overload
def async_parallel(fn: Callable[P, Awaitable[R]], /) -> AsyncParallelFunction[P, R]: ...
@overload
def async_parallel(
    *,
    concurrency: int = 4,
    rate_limit: RateLimit | float | None = None,
    timeout: float | None = None,
    task_timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    retry: Retry | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], AsyncParallelFunction[P, R]]: ...
def async_parallel(
    fn: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    concurrency: int = 4,
    rate_limit: RateLimit | float | None = None,
    timeout: float | None = None,
    task_timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    retry: Retry | None = None,
) -> AsyncParallelFunction[P, R] | Callable[[Callable[P, Awaitable[R]]], AsyncParallelFunction[P, R]]:
    """Decorate an ``async def`` function so that it keeps working as itself and gains
    ``.map``, ``.starmap`` (both awaitable) and ``.stream`` (an async iterator); the options
    given here are their defaults.

    Usable bare or with options. Options are validated when the decorator is applied, and
    decorating a function that is not ``async def`` raises ``TypeError``.
    """
    options = async_options(concurrency, rate_limit, timeout, task_timeout, on_progress, batch_size, retry)
    defaults = validate_options(options, asynchronous=True)

    def decorate(function: Callable[P, Awaitable[R]]) -> AsyncParallelFunction[P, R]:
        target = function.__func__ if isinstance(function, staticmethod | classmethod) else function
        check_coroutine_function("@async_parallel's function", target)
        return AsyncParallelFunction(function, defaults)

    return decorate if fn is None else decorate(fn)
