"""Immutable option objects (``RateLimit``, ``Retry``) and the validation of every option.

Every check here runs before any work starts, and every error names the parameter, the
bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from pyarallel._values import FrozenValue

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs startup time
if TYPE_CHECKING:
    from typing import Literal, NoReturn

    Per = Literal["second", "minute", "hour"]

__all__ = ["ProgressCallback", "RateLimit", "Retry"]

_SECONDS_PER: dict[str, float] = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def _refuse(parameter: str, value: object, allowed: str, error: type[Exception] = ValueError) -> NoReturn:
    raise error(f"{parameter} must be {allowed}; got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: object) -> float:
    """``float(value)``, with ints too large for a float taken as infinity."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf


def check_positive_number(
    parameter: str, value: object, allowed: str = "a finite number greater than 0"
) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number above 0
    (``allowed`` says what is, in the ``ValueError``)."""
    if not _is_number(value):
        _refuse(parameter, value, "a number greater than 0", TypeError)
    number = _as_float(value)
    if math.isnan(number) or number <= 0 or math.isinf(number):
        _refuse(parameter, value, allowed)
    return number


def check_non_negative_number(parameter: str, value: object) -> float:
    """Return ``value`` as a float, or raise if it is negative, NaN or not a number."""
    if not _is_number(value):
        _refuse(parameter, value, "a number >= 0", TypeError)
    number = _as_float(value)
    if math.isnan(number) or number < 0:
        _refuse(parameter, value, "a number >= 0")
    return number


def check_count(parameter: str, value: object, *, optional: bool = True) -> int | None:
    """Return ``value`` if it is an int >= 1 (or ``None`` when ``optional``), else raise."""
    if value is None and optional:
        return None
    allowed = "an int >= 1 or None" if optional else "an int >= 1"
    if not isinstance(value, int) or isinstance(value, bool):
        _refuse(parameter, value, allowed, TypeError)
    if value < 1:
        _refuse(parameter, value, allowed)
    return value


def check_timeout(parameter: str, value: object) -> float | None:
    """Return a timeout in seconds (``None`` for no timeout), or raise if negative or NaN."""
    if value is None:
        return None
    return check_non_negative_number(parameter, value)


def check_callable(parameter: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is callable."""
    if not callable(value):
        _refuse(parameter, value, "callable", TypeError)


def check_sync_function(parameter: str, value: object, api: str) -> None:
    """Raise ``TypeError`` unless ``value`` is callable and not an ``async def`` function:
    the blocking API (named by ``api``) would call it and never await what it returns."""
    check_callable(parameter, value)
    if is_coroutine_function(value):
        raise TypeError(
            f"{parameter} must be a regular function; got {value!r}, an async function (defined "
            f"with 'async def'): {api} would never await the coroutines it returns. Use the "
            "async API instead: async_parallel_map, async_parallel_starmap, async_parallel_iter "
            "or @async_parallel"
        )


def check_coroutine_function(parameter: str, value: object) -> None:
    """Raise ``TypeError`` unless calling ``value`` returns a coroutine (an ``async def``
    function or method, a partial of one, or an object with an ``async def __call__``)."""
    if is_coroutine_function(value):
        return
    if callable(value):
        _refuse(parameter, value, "an async function (defined with 'async def')", TypeError)
    _refuse(parameter, value, "an async function (defined with 'async def'); it is not callable", TypeError)


def is_coroutine_function(value: object) -> bool:
    """True if calling ``value`` returns a coroutine, as far as can be told without calling it."""
    import inspect

    if inspect.iscoroutinefunction(value) or getattr(value, "_pyarallel_async", False):
        return True
    call = getattr(value, "__call__", None)  # noqa: B004 - a callable object's method, not a test
    return not inspect.isfunction(value) and inspect.iscoroutinefunction(call)


def check_optional_callable(parameter: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is callable or ``None``."""
    if value is not None and not callable(value):
        _refuse(parameter, value, "callable or None", TypeError)


def check_iterable(parameter: str, value: object) -> Iterable[object]:
    """Return ``value`` if it is iterable, else raise ``TypeError``."""
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        _refuse(parameter, value, "an iterable (list, tuple, range, generator, ...)", TypeError)
    return value  # type: ignore[return-value]


_SLOWEST = 1e-300  # calls per second: much below this, the interval between calls overflows


class RateLimit(FrozenValue):
    """An immutable rate: at most ``count`` calls per ``per`` ("second", "minute", "hour").

    Calls are paced smoothly (one every ``1 / per_second`` seconds, no initial burst),
    and every attempt of every item, retries included, counts. ``count`` must be a
    positive finite number, and the rate at least one call in about 10**300 seconds.

    >>> RateLimit(100, "minute").per_second
    1.6666666666666667
    """

    __slots__ = ("count", "per")
    __match_args__ = ("count", "per")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def count(self) -> float: ...
        @property
        def per(self) -> Per: ...

    def __init__(self, count: float, per: Per = "second") -> None:
        number = check_positive_number("RateLimit count", count, f"positive and finite (calls per {per})")
        if not isinstance(per, str) or per not in _SECONDS_PER:
            raise ValueError(f'RateLimit per must be "second", "minute", or "hour"; got {per!r}')
        if number / _SECONDS_PER[per] < _SLOWEST:
            raise ValueError(
                f"RateLimit count is too small to pace: {count!r} calls per {per} is less than one "
                f"call in 10**300 seconds"
            )
        self._set("count", count)
        self._set("per", per)

    @property
    def per_second(self) -> float:
        """The rate in calls per second."""
        return float(self.count) / _SECONDS_PER[self.per]


class Retry(FrozenValue):
    """Immutable per-item retry configuration with exponential backoff.

    ``attempts`` counts every try (1 means no retry). After failed attempt number ``n``
    (1-based) the item waits ``min(backoff * 2 ** (n - 1), max_delay)`` seconds before the
    next one; with ``jitter`` that delay is multiplied by a random factor in [0.5, 1.0], so
    it never exceeds ``max_delay``. ``on`` restricts retries to those exception types: one
    class or a tuple of them, kept as a tuple (``None`` retries every ``Exception``). The
    final error of an item is the exception of its last attempt. A retry waiting out its
    delay does not occupy a worker.
    """

    __slots__ = ("attempts", "backoff", "jitter", "max_delay", "on")
    __match_args__ = ("attempts", "backoff", "max_delay", "jitter", "on")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def attempts(self) -> int: ...
        @property
        def backoff(self) -> float: ...
        @property
        def max_delay(self) -> float: ...
        @property
        def jitter(self) -> bool: ...
        @property
        def on(self) -> tuple[type[BaseException], ...] | None: ...

    def __init__(
        self,
        attempts: int = 3,
        backoff: float = 1.0,
        max_delay: float = 60.0,
        jitter: bool = True,
        on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
    ) -> None:
        check_count("Retry attempts", attempts, optional=False)
        check_non_negative_number("Retry backoff", backoff)
        check_non_negative_number("Retry max_delay", max_delay)
        if not isinstance(jitter, bool):
            _refuse("Retry jitter", jitter, "True or False", TypeError)
        self._set("attempts", attempts)
        self._set("backoff", backoff)
        self._set("max_delay", max_delay)
        self._set("jitter", jitter)
        self._set("on", _exception_types(on))

    def delay(self, failed_attempt: int) -> float:
        """The delay before the attempt after ``failed_attempt`` (1-based), without jitter."""
        exponent = min(failed_attempt - 1, 1000)  # 2.0 ** 1024 overflows a float
        return min(_as_float(self.backoff) * 2.0**exponent, _as_float(self.max_delay))


def _exception_types(on: object) -> tuple[type[BaseException], ...] | None:
    """``Retry(on=...)`` as a tuple of exception classes (or None), else a ``TypeError``
    that shows the value as given."""
    if on is None:
        return None
    kinds = (on,) if isinstance(on, type) else on
    if not isinstance(kinds, tuple) or not all(
        isinstance(kind, type) and issubclass(kind, BaseException) for kind in kinds
    ):
        _refuse("Retry on", on, "an exception class, a tuple of exception classes, or None", TypeError)
    return kinds


ProgressCallback = Callable[[int, int], object]
"""``on_progress(done, total)``; its return value is ignored."""

if TYPE_CHECKING:
    from typing import Any, TypeAlias

    from pyarallel.contracts import RateLimiter, RateLimitSpec, RetryPolicy, RetrySpec

    # What ``rate_limit=`` and ``retry=`` accept, for type checkers: the built-in specs, a
    # limiter or policy object as it is, or a plugin's spec (see ``pyarallel.contracts``).
    # A plugin that accepts other objects through its hook works at run time too.
    ExecutorOption: TypeAlias = Any  # "thread", "process", a plugin's name, or an executor object
    RateLimitOption: TypeAlias = RateLimit | float | RateLimiter | RateLimitSpec | None
    RetryOption: TypeAlias = Retry | RetryPolicy | RetrySpec | None
