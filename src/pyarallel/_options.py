"""Immutable option objects (``RateLimit``, ``Retry``) and the validation of every option.

Every check here runs before any work starts, and every error names the parameter, the
bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, NoReturn

__all__ = ["Per", "RateLimit", "Retry"]

Per = Literal["second", "minute", "hour"]

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


def check_positive_number(parameter: str, value: object) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number above 0."""
    if not _is_number(value):
        _refuse(parameter, value, "a number greater than 0", TypeError)
    number = _as_float(value)
    if math.isnan(number) or number <= 0 or math.isinf(number):
        _refuse(parameter, value, "a finite number greater than 0")
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


@dataclass(frozen=True, slots=True)
class RateLimit:
    """An immutable rate: at most ``count`` calls per ``per`` ("second", "minute", "hour").

    Calls are paced smoothly (one every ``1 / per_second`` seconds, no initial burst),
    and every attempt of every item, retries included, counts.

    >>> RateLimit(100, "minute").per_second
    1.6666666666666667
    """

    count: float
    per: Per = "second"

    def __post_init__(self) -> None:
        check_positive_number("RateLimit count", self.count)
        if self.per not in _SECONDS_PER:
            _refuse("RateLimit per", self.per, "one of 'second', 'minute', 'hour'")

    @property
    def per_second(self) -> float:
        """The rate in calls per second."""
        return float(self.count) / _SECONDS_PER[self.per]


@dataclass(frozen=True, slots=True)
class Retry:
    """Immutable per-item retry configuration with exponential backoff.

    ``attempts`` counts every try (1 means no retry). After failed attempt number ``n``
    (1-based) the item waits ``min(backoff * 2 ** (n - 1), max_delay)`` seconds before the
    next one; with ``jitter`` that delay is multiplied by a random factor in [0.5, 1.0], so
    it never exceeds ``max_delay``. ``on`` restricts retries to those exception types
    (``None`` retries every ``Exception``). The final error of an item is the exception
    of its last attempt. A retry waiting out its delay does not occupy a worker.
    """

    attempts: int = 3
    backoff: float = 1.0
    max_delay: float = 60.0
    jitter: bool = True
    on: tuple[type[BaseException], ...] | None = field(default=None)

    def __post_init__(self) -> None:
        check_count("Retry attempts", self.attempts, optional=False)
        check_non_negative_number("Retry backoff", self.backoff)
        check_non_negative_number("Retry max_delay", self.max_delay)
        if not isinstance(self.jitter, bool):
            _refuse("Retry jitter", self.jitter, "True or False", TypeError)
        if self.on is not None:
            on = self.on
            if isinstance(on, type):
                on = (on,)
                object.__setattr__(self, "on", on)
            if not isinstance(on, tuple) or not all(
                isinstance(kind, type) and issubclass(kind, BaseException) for kind in on
            ):
                _refuse("Retry on", self.on, "a tuple of exception types or None", TypeError)

    def delay(self, failed_attempt: int) -> float:
        """The delay before the attempt after ``failed_attempt`` (1-based), without jitter."""
        exponent = min(failed_attempt - 1, 1000)  # 2.0 ** 1024 overflows a float
        return min(_as_float(self.backoff) * 2.0**exponent, _as_float(self.max_delay))


ProgressCallback = Callable[[int, int], None]
