"""``@parallel``: a function that still works as itself and gains ``.map``, ``.starmap``
and ``.stream``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, Unpack, overload

from pyarallel._api import collect, stream
from pyarallel._options import ProgressCallback, RateLimit, Retry
from pyarallel._plan import RunOptionOverrides, RunOptions, make_plan, validate_options
from pyarallel._result import ItemResult, ParallelResult

__all__ = ["ParallelFunction", "parallel"]

P = ParamSpec("P")
R = TypeVar("R")

_STREAM_REFUSES = ("timeout", "on_progress")


class ParallelFunction(Generic[P, R]):
    """A function decorated with ``@parallel``.

    Calling it calls the original function. ``.map(items)``, ``.starmap(items)`` and
    ``.stream(items)`` fan it out like ``parallel_map``, ``parallel_starmap`` and
    ``parallel_iter``, with the decorator's options as defaults that every call may
    override by keyword. It binds like the function it wraps, so it works on instance
    methods, and under ``@staticmethod``; for class methods apply it on top of
    ``@classmethod``.
    """

    def __init__(self, fn: Callable[P, R], defaults: RunOptions) -> None:
        self._fn = fn
        self._defaults = defaults
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._fn(*args, **kwargs)

    def map(self, items: Iterable[Any], /, **overrides: Unpack[RunOptionOverrides]) -> ParallelResult[R]:
        """``parallel_map(self, items, ...)`` with the decorator's options as defaults."""
        options = self._defaults.with_overrides(overrides)
        return collect(make_plan(self._fn, items, options, star=False, materialize_unsized=True))

    def starmap(
        self, items: Iterable[Iterable[Any]], /, **overrides: Unpack[RunOptionOverrides]
    ) -> ParallelResult[R]:
        """``parallel_starmap(self, items, ...)`` with the decorator's options as defaults."""
        options = self._defaults.with_overrides(overrides)
        return collect(make_plan(self._fn, items, options, star=True, materialize_unsized=True))

    def stream(
        self, items: Iterable[Any], /, **overrides: Unpack[RunOptionOverrides]
    ) -> Iterator[ItemResult[R]]:
        """``parallel_iter(self, items, ...)`` with the decorator's options as defaults.

        A stream has no total ``timeout`` and no ``on_progress``: the decorator's defaults
        for those are not applied, and passing them here raises ``TypeError``.
        """
        refused = [name for name in _STREAM_REFUSES if name in overrides]
        if refused:
            raise TypeError(f"stream() does not accept {', '.join(refused)}; results stream as they complete")
        options = self._defaults.with_overrides(overrides).with_overrides(
            {"timeout": None, "on_progress": None}
        )
        return stream(make_plan(self._fn, items, options, star=False, materialize_unsized=False))

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> ParallelFunction[P, R]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> ParallelFunction[..., R]: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> ParallelFunction[..., R]:
        binder = getattr(self._fn, "__get__", None)
        if binder is None:
            return self
        if instance is None and not isinstance(self._fn, staticmethod | classmethod):
            return self  # accessed on the class: the plain function
        bound = binder(instance, owner)
        return ParallelFunction(bound, self._defaults)

    def __repr__(self) -> str:
        return f"<parallel function {getattr(self._fn, '__qualname__', self._fn)!r}>"


@overload
def parallel(fn: Callable[P, R], /) -> ParallelFunction[P, R]: ...
@overload
def parallel(
    *,
    workers: int | None = None,
    executor: Any = "thread",
    rate_limit: RateLimit | float | None = None,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    retry: Retry | None = None,
) -> Callable[[Callable[P, R]], ParallelFunction[P, R]]: ...
def parallel(
    fn: Callable[P, R] | None = None,
    /,
    *,
    workers: int | None = None,
    executor: Any = "thread",
    rate_limit: RateLimit | float | None = None,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    retry: Retry | None = None,
) -> ParallelFunction[P, R] | Callable[[Callable[P, R]], ParallelFunction[P, R]]:
    """Decorate a function so that it keeps working as itself and gains ``.map``,
    ``.starmap`` and ``.stream``; the options given here are their defaults.

    Usable bare (``@parallel``) or with options (``@parallel(workers=8)``). Options are
    validated when the decorator is applied.
    """
    defaults = validate_options(
        RunOptions(workers, executor, rate_limit, timeout, on_progress, batch_size, retry)
    )

    def decorate(function: Callable[P, R]) -> ParallelFunction[P, R]:
        if not callable(function) and not isinstance(function, staticmethod | classmethod):
            raise TypeError(f"@parallel must decorate a callable; got {function!r}")
        return ParallelFunction(function, defaults)

    if fn is not None:
        return decorate(fn)
    return decorate
