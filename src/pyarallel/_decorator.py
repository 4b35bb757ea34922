"""``@parallel``: a function that still works as itself and gains ``.map``, ``.starmap``
and ``.stream``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterable
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

from pyarallel._decorated_pickling import reduce_decorated
from pyarallel._options import ProgressCallback, check_sync_function
from pyarallel._plan import (
    MAP,
    STREAM,
    RunOptionOverrides,
    RunOptions,
    StreamOptionOverrides,
    make_plan,
    validate_options,
)
from pyarallel._result import ItemResult, ParallelResult
from pyarallel._sync_driver import collect, execute

if TYPE_CHECKING:
    from pyarallel._options import (
        CheckpointOption,
        ExecutorOption,
        KeyFunction,
        ProgressOption,
        RateLimitOption,
        ResultCallback,
        RetryOption,
    )
    from pyarallel._stopping import StopToken

__all__ = ["ParallelClassMethod", "ParallelFunction", "bind", "parallel"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
T = TypeVar("T")


def bind(fn: Any, instance: object | None, owner: type | None) -> Any | None:
    """``fn`` bound as an attribute of ``instance``/``owner``, or None when it stays as is
    (a plain function looked up on its class)."""
    binder = getattr(fn, "__get__", None)
    if binder is None:
        return None
    if instance is None and not isinstance(fn, staticmethod | classmethod):
        return None
    return binder(instance, owner)


class ParallelFunction(Generic[P, R]):
    """A function decorated with ``@parallel``.

    Calling it calls the original function. ``.map(items)``, ``.starmap(items)`` and
    ``.stream(items)`` fan it out like ``parallel_map``, ``parallel_starmap`` and
    ``parallel_iter``, with the decorator's options as defaults that every call may
    override by keyword. It binds like the function it wraps, so it works on instance
    methods and under ``@staticmethod``; for class methods apply it on top of
    ``@classmethod``.
    """

    # Copied from the function by functools.update_wrapper.
    __wrapped__: Callable[P, R]
    __name__: str
    __qualname__: str
    __doc__: str | None

    def __init__(self, fn: Callable[P, R], defaults: RunOptions) -> None:
        self._fn = fn
        self._defaults = defaults
        functools.update_wrapper(self, fn)
        self._looked_up_on: object | None = None  # the class or instance it was bound by
        self._attribute: str = getattr(fn, "__name__", "")

    def __set_name__(self, owner: type, name: str) -> None:
        self._attribute = name

    def __reduce__(self) -> str | tuple[object, ...]:
        return reduce_decorated(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._fn(*args, **kwargs)

    def map(self, items: Iterable[Any], /, **overrides: Unpack[RunOptionOverrides]) -> ParallelResult[R]:
        """``parallel_map`` of this function, with the decorator's options as defaults."""
        options = self._defaults.with_overrides(overrides, MAP)
        return collect(
            make_plan(self._fn, items, options, star=False, materialize_unsized=True, portable=self)
        )

    def starmap(
        self, items: Iterable[Iterable[Any]], /, **overrides: Unpack[RunOptionOverrides]
    ) -> ParallelResult[R]:
        """``parallel_starmap`` of this function, with the decorator's options as defaults."""
        options = self._defaults.with_overrides(overrides, MAP)
        return collect(
            make_plan(self._fn, items, options, star=True, materialize_unsized=True, portable=self)
        )

    def stream(
        self, items: Iterable[Any], /, **overrides: Unpack[StreamOptionOverrides]
    ) -> Generator[ItemResult[R], None, None]:
        """``parallel_iter`` of this function, with the decorator's options as defaults.

        A stream has no total ``timeout`` and no ``on_progress``: the decorator's defaults
        for those do not apply, and passing them here raises ``TypeError``.
        """
        options = self._defaults.with_overrides(overrides, STREAM)
        options = options.replace(timeout=None, on_progress=None)
        return execute(
            make_plan(self._fn, items, options, star=False, materialize_unsized=False, portable=self)
        )

    # For type checkers: on an instance, the first parameter (self) is bound.
    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self: ParallelFunction[Concatenate[T, P2], R], instance: T, owner: type | None = None
    ) -> ParallelFunction[P2, R]: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        bound = bind(self._fn, instance, owner)
        if bound is None:
            return self
        method = ParallelFunction(bound, self._defaults)
        method._looked_up_on, method._attribute = owner if instance is None else instance, self._attribute
        return method

    def __repr__(self) -> str:
        return f"<parallel function {getattr(self._fn, '__qualname__', self._fn)!r}>"


class ParallelClassMethod(ParallelFunction[Concatenate[type[T], P], R], Generic[T, P, R]):
    """``@parallel`` on top of ``@classmethod``: a ``ParallelFunction`` whose class is
    bound whether it is looked up on the class or on an instance (``Cls.method(x)``,
    ``Cls.method.map(items)``). It differs from ``ParallelFunction`` only for type
    checkers."""

    def __get__(self, instance: object | None, owner: type | None = None) -> ParallelFunction[P, R]:  # type: ignore[override]
        bound: Any = super().__get__(instance, owner)
        return bound  # type: ignore[no-any-return]


class _Decorator(Protocol):
    """What ``parallel(...)`` with options returns: it decorates like bare ``@parallel``."""

    @overload
    def __call__(self, fn: Callable[Concatenate[type[T], P], R], /) -> ParallelClassMethod[T, P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> ParallelFunction[P, R]: ...


# Type checkers see the function under ``@classmethod`` as a plain function whose first
# parameter is ``type[T]``: that overload comes first (a module-level function whose first
# parameter is a class is also typed as a class method; called directly it works the same).
@overload
def parallel(fn: Callable[Concatenate[type[T], P], R], /) -> ParallelClassMethod[T, P, R]: ...
@overload
def parallel(fn: Callable[P, R], /) -> ParallelFunction[P, R]: ...
@overload
def parallel(
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
) -> _Decorator: ...
def parallel(
    fn: Callable[P, R] | None = None,
    /,
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
) -> Any:
    """Decorate a function so that it keeps working as itself and gains ``.map``,
    ``.starmap`` and ``.stream``; the options given here are their defaults.

    Usable bare (``@parallel``) or with options (``@parallel(workers=8)``). Options are
    validated when the decorator is applied.
    """
    defaults = validate_options(RunOptions.for_call(MAP, locals()))

    def decorate(function: Callable[P, R]) -> ParallelFunction[P, R]:
        target = function.__func__ if isinstance(function, staticmethod | classmethod) else function
        check_sync_function("@parallel's function", target, "@parallel")
        if isinstance(function, classmethod):
            return ParallelClassMethod(function, defaults)
        return ParallelFunction(function, defaults)

    return decorate if fn is None else decorate(fn)
