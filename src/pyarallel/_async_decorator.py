"""``@async_parallel``: an ``async def`` function that still works as itself and gains
``.map``, ``.starmap`` and ``.stream``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    Unpack,
    overload,
)

from pyarallel._async_api import async_collect
from pyarallel._async_driver import execute_async, execute_ordered
from pyarallel._async_stream import AsyncResultStream
from pyarallel._decorated_pickling import reduce_decorated
from pyarallel._decorator import bind
from pyarallel._options import ProgressCallback, check_coroutine_function
from pyarallel._plan import (
    ASYNC_MAP,
    ASYNC_STREAM,
    AsyncRunOptionOverrides,
    AsyncStreamOptionOverrides,
    RunOptions,
    RunPlan,
    make_plan,
    validate_options,
)
from pyarallel._result import ParallelResult

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

__all__ = ["AsyncParallelClassMethod", "AsyncParallelFunction", "async_parallel"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
T = TypeVar("T")


class AsyncParallelFunction(Generic[P, R]):
    """An ``async def`` function decorated with ``@async_parallel``.

    Calling it returns the original coroutine. ``await .map(items)``, ``await
    .starmap(items)`` and ``async for ... in .stream(items)`` fan it out like
    ``async_parallel_map``, ``async_parallel_starmap`` and ``async_parallel_iter``, with the
    decorator's options as defaults that every call may override by keyword. Binds on
    instances, under ``@staticmethod``, and on top of ``@classmethod`` like ``@parallel``.
    """

    _pyarallel_async = True  # lets async_parallel_map accept it as an async function

    # Copied from the function by functools.update_wrapper.
    __wrapped__: Callable[P, Coroutine[Any, Any, R]]
    __name__: str
    __qualname__: str
    __doc__: str | None

    def __init__(self, fn: Callable[P, Coroutine[Any, Any, R]], defaults: RunOptions) -> None:
        self._fn = fn
        self._defaults = defaults
        functools.update_wrapper(self, fn)
        if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
            inspect.markcoroutinefunction(self)
        self._looked_up_on: object | None = None  # the class or instance it was bound by
        self._attribute: str = getattr(fn, "__name__", "")

    def __set_name__(self, owner: type, name: str) -> None:
        self._attribute = name

    def __reduce__(self) -> str | tuple[object, ...]:
        return reduce_decorated(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self._fn(*args, **kwargs)

    async def map(
        self, items: Iterable[Any] | AsyncIterable[Any], /, **overrides: Unpack[AsyncRunOptionOverrides]
    ) -> ParallelResult[R]:
        """``async_parallel_map`` of this function, with the decorator's options as defaults."""
        options = self._defaults.with_overrides(overrides, ASYNC_MAP)
        return await async_collect(self._plan(items, options, star=False))

    async def starmap(
        self,
        items: Iterable[Iterable[Any]] | AsyncIterable[Iterable[Any]],
        /,
        **overrides: Unpack[AsyncRunOptionOverrides],
    ) -> ParallelResult[R]:
        """``async_parallel_starmap`` of this function, with the decorator's options as defaults."""
        options = self._defaults.with_overrides(overrides, ASYNC_MAP)
        return await async_collect(self._plan(items, options, star=True))

    def stream(
        self, items: Iterable[Any] | AsyncIterable[Any], /, **overrides: Unpack[AsyncStreamOptionOverrides]
    ) -> AsyncResultStream[R]:
        """``async_parallel_iter`` of this function, with the decorator's options as defaults
        (an ``AsyncResultStream``: use it with ``async with``).

        A stream has no total ``timeout`` and no ``on_progress``: the decorator's defaults
        for those do not apply, and passing them here raises ``TypeError``.
        """
        options = self._defaults.with_overrides(overrides, ASYNC_STREAM)
        options = options.replace(timeout=None, on_progress=None)
        plan = self._plan(items, options, star=False)
        return AsyncResultStream(execute_ordered(plan) if plan.options.ordered else execute_async(plan))

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
        if bound is None:
            return self
        method = AsyncParallelFunction(bound, self._defaults)
        method._looked_up_on, method._attribute = owner if instance is None else instance, self._attribute
        return method

    def __repr__(self) -> str:
        return f"<async parallel function {getattr(self._fn, '__qualname__', self._fn)!r}>"


class AsyncParallelClassMethod(AsyncParallelFunction[Concatenate[type[T], P], R], Generic[T, P, R]):
    """``@async_parallel`` on top of ``@classmethod`` (see ``ParallelClassMethod``)."""

    def __get__(  # type: ignore[override]
        self, instance: object | None, owner: type | None = None
    ) -> AsyncParallelFunction[P, R]:
        bound: Any = super().__get__(instance, owner)
        return bound  # type: ignore[no-any-return]


class _AsyncDecorator(Protocol):
    """What ``async_parallel(...)`` with options returns."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[type[T], P], Coroutine[Any, Any, R]], /
    ) -> AsyncParallelClassMethod[T, P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncParallelFunction[P, R]: ...


# The class-method overload comes first, as for ``parallel``.
@overload
def async_parallel(
    fn: Callable[Concatenate[type[T], P], Coroutine[Any, Any, R]], /
) -> AsyncParallelClassMethod[T, P, R]: ...
@overload
def async_parallel(fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncParallelFunction[P, R]: ...
@overload
def async_parallel(
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
) -> _AsyncDecorator: ...
def async_parallel(
    fn: Callable[P, Coroutine[Any, Any, R]] | None = None,
    /,
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
) -> Any:
    """Decorate an ``async def`` function so that it keeps working as itself and gains
    ``.map``, ``.starmap`` (both awaitable) and ``.stream`` (an async iterator); the options
    given here are their defaults.

    Usable bare or with options. Options are validated when the decorator is applied, and
    decorating a function that is not ``async def`` raises ``TypeError``.
    """
    defaults = validate_options(RunOptions.for_call(ASYNC_MAP, locals()), asynchronous=True)

    def decorate(function: Callable[P, Coroutine[Any, Any, R]]) -> AsyncParallelFunction[P, R]:
        target = function.__func__ if isinstance(function, staticmethod | classmethod) else function
        check_coroutine_function("@async_parallel's function", target)
        if isinstance(function, classmethod):
            return AsyncParallelClassMethod(function, defaults)
        return AsyncParallelFunction(function, defaults)

    return decorate if fn is None else decorate(fn)
