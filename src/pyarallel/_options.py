"""Immutable option objects (``RateLimit``, ``Retry``) and the validation of every option.

Every check here runs before any work starts, and every error names the parameter, the
bad value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable

from pyarallel._values import FrozenValue

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs startup time
if TYPE_CHECKING:
    from typing import Any, Literal, NoReturn

    from pyarallel._result import ItemResult

    Per = Literal["second", "minute", "hour"]

__all__ = ["KeyFunction", "ProgressCallback", "RateLimit", "ResultCallback", "Retry"]

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
    """An immutable rate: at most ``count`` units per ``per`` ("second", "minute", "hour").

    By default a unit is one call: every attempt of every item, retries included, counts
    one. Calls are paced smoothly (one every ``1 / per_second`` seconds); ``burst`` is how
    many units may start at once before the steady rate applies (1: no burst, not even at
    the start). ``count`` must be a positive finite number, and the rate at least one unit
    in about 10**300 seconds.

    - ``cost``: a function of the item giving the units one call uses (for example the
      tokens of a prompt), a number >= 0; ``burst`` is counted in the same units and must
      be at least the largest cost, or the item fails at once (``RateLimitCostError``).
    - ``settle``: a function of the item and the attempt's :class:`~pyarallel.ItemResult`
      giving the units the call really used; the difference from ``cost`` is refunded
      or charged when the attempt ends (reserve, then reconcile).
    - ``key``: a function of the item giving a hashable key (a host, an API key, a
      tenant); each key gets a budget of its own, and an item whose key is out of budget
      does not hold up items of other keys.

    Passing a ``RateLimit`` (or a number) as ``rate_limit=`` gives the call a private
    limiter; wrap it in a :class:`~pyarallel.Limiter` to share one budget between calls.

    >>> RateLimit(100, "minute").per_second
    1.6666666666666667
    """

    __slots__ = ("burst", "cost", "count", "key", "per", "settle")
    __match_args__ = ("count", "per", "burst", "cost", "key", "settle")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def count(self) -> float: ...
        @property
        def per(self) -> Per: ...
        @property
        def burst(self) -> float: ...
        @property
        def cost(self) -> Callable[[Any], float] | None: ...
        @property
        def key(self) -> Callable[[Any], Hashable] | None: ...
        @property
        def settle(self) -> Callable[[Any, ItemResult[Any]], float] | None: ...

    def __init__(  # noqa: PLR0917
        self,
        count: float,
        per: Per = "second",
        burst: float = 1,
        cost: Callable[[Any], float] | None = None,
        key: Callable[[Any], Hashable] | None = None,
        settle: Callable[[Any, ItemResult[Any]], float] | None = None,
    ) -> None:
        number = check_positive_number("RateLimit count", count, f"positive and finite (calls per {per})")
        if not isinstance(per, str) or per not in _SECONDS_PER:
            raise ValueError(f'RateLimit per must be "second", "minute", or "hour"; got {per!r}')
        if number / _SECONDS_PER[per] < _SLOWEST:
            raise ValueError(
                f"RateLimit count is too small to pace: {count!r} calls per {per} is less than one "
                f"call in 10**300 seconds"
            )
        check_positive_number("RateLimit burst", burst, "a finite number greater than 0 (units at once)")
        if cost is None and burst < 1:
            _refuse("RateLimit burst", burst, "at least 1 when every call counts one unit (no cost=)")
        for name, function in (("cost", cost), ("key", key), ("settle", settle)):
            if function is not None and not callable(function):
                _refuse(f"RateLimit {name}", function, "a function of the item, or None", TypeError)
        self._set("count", count)
        self._set("per", per)
        self._set("burst", burst)
        self._set("cost", cost)
        self._set("key", key)
        self._set("settle", settle)

    @property
    def per_second(self) -> float:
        """The rate in units (calls, unless ``cost`` is set) per second."""
        return float(self.count) / _SECONDS_PER[self.per]

    # What a limiter asks of its limits (the built-in ``Limiter`` and a plugin's alike, so
    # that every limiter checks the user's functions the same way).

    def cost_of(self, item: object) -> float:
        """The units one call for ``item`` uses: ``cost(item)``, or 1 without ``cost``.

        Raises :class:`~pyarallel.RateLimitCostError` when ``cost`` raises or gives
        something other than a finite number >= 0, or more than ``burst`` (such a call
        could never start)."""
        if self.cost is None:
            return 1.0
        try:
            cost = self.cost(item)
        except Exception as error:
            raise _cost_error(f"the cost function of {self!r} failed on this item: {error!r}") from error
        units = _units(cost, f"the cost function of {self!r}")
        if units > self.burst:
            raise _cost_error(
                f"it costs {units:g} units, more than {self!r} lets start at once "
                f"(burst={self.burst:g}), so it could never start; raise burst to at least the "
                "largest cost"
            )
        return units

    def key_of(self, item: object) -> Hashable:
        """The budget ``item`` draws on: ``key(item)``, or ``None`` without ``key``.

        Raises :class:`~pyarallel.RateLimitCostError` when ``key`` raises or gives an
        unhashable value."""
        if self.key is None:
            return None
        try:
            key = self.key(item)
            hash(key)
        except Exception as error:
            raise _cost_error(f"the key function of {self!r} failed on this item: {error!r}") from error
        return key

    def settled(self, item: object, result: ItemResult[Any]) -> float:
        """The units the call for ``item`` really used, by ``settle(item, result)``
        (``cost_of(item)`` without ``settle``).

        Raises :class:`~pyarallel.RateLimitCostError` when ``settle`` raises or gives
        something other than a finite number >= 0."""
        if self.settle is None:
            return self.cost_of(item)
        try:
            used = self.settle(item, result)
        except Exception as error:
            raise _cost_error(f"the settle function of {self!r} failed: {error!r}") from error
        return _units(used, f"the settle function of {self!r}")


def _cost_error(message: str) -> Exception:
    from pyarallel._errors import RateLimitCostError

    return RateLimitCostError(message)


def _units(value: object, source: str) -> float:
    """``value`` as a number of units >= 0, else a ``RateLimitCostError`` naming ``source``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _cost_error(f"{source} returned {value!r}; it must return a number of units >= 0")
    units = _as_float(value)
    if not math.isfinite(units) or units < 0:
        raise _cost_error(f"{source} returned {value!r}; it must return a finite number >= 0")
    return units


RETRY_BUDGET_FLOOR = 10
"""With ``Retry(budget=...)``, a run may always make this many retries, however few calls
it has made, so a short run can still retry."""

HTTP_RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""The statuses ``Retry.for_http()`` retries: too many requests, and the three a server or
gateway answers while overloaded or restarting."""


class Retry(FrozenValue):
    """Immutable per-item retry configuration with exponential backoff.

    ``attempts`` counts every try (1 means no retry). After failed attempt number ``n``
    (1-based) the item waits ``min(backoff * 2 ** (n - 1), max_delay)`` seconds before the
    next one; with ``jitter`` that delay is multiplied by a random factor in [0.5, 1.0], so
    it never exceeds ``max_delay``. ``on`` restricts retries to those exception types: one
    class or a tuple of them, kept as a tuple (``None`` retries every ``Exception``). The
    final error of an item is the exception of its last attempt. A retry waiting out its
    delay does not occupy a worker.

    - ``statuses``: retry only exceptions carrying one of these HTTP statuses (read from
      the exceptions of requests, httpx, aiohttp and urllib, or any exception with a
      ``status_code`` or ``status``), plus those matching ``on`` when it is given. A 429
      counts as the service throttling the caller (an adaptive limiter slows down).
    - ``wait_from``: a function of the exception giving the seconds the service asked to
      wait (or ``None`` to use the backoff). Such a wait replaces the backoff, is not
      jittered or capped by ``max_delay``, and pauses what shares the quota: the limiter
      the attempt drew from (its key only, for a keyed limit), or the run's own starts
      when it has no rate limit.
    - ``budget``: retries in the whole run are capped at this fraction of the attempts it
      has started so far (never fewer than ``RETRY_BUDGET_FLOOR``), so a failing service
      gets a bounded number of extra calls however many items there are. An item over
      budget fails with its last error.

    :meth:`for_http` builds the usual configuration for HTTP APIs.
    """

    __slots__ = ("attempts", "backoff", "budget", "jitter", "max_delay", "on", "statuses", "wait_from")
    __match_args__ = ("attempts", "backoff", "max_delay", "jitter", "on", "statuses", "wait_from", "budget")
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
        @property
        def statuses(self) -> frozenset[int] | None: ...
        @property
        def wait_from(self) -> Callable[[BaseException], float | None] | None: ...
        @property
        def budget(self) -> float | None: ...

    def __init__(  # noqa: PLR0917
        self,
        attempts: int = 3,
        backoff: float = 1.0,
        max_delay: float = 60.0,
        jitter: bool = True,
        on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        statuses: Iterable[int] | None = None,
        wait_from: Callable[[BaseException], float | None] | None = None,
        budget: float | None = None,
    ) -> None:
        check_count("Retry attempts", attempts, optional=False)
        check_non_negative_number("Retry backoff", backoff)
        check_non_negative_number("Retry max_delay", max_delay)
        if not isinstance(jitter, bool):
            _refuse("Retry jitter", jitter, "True or False", TypeError)
        check_optional_callable("Retry wait_from", wait_from)
        if budget is not None:
            check_positive_number("Retry budget", budget, "a finite fraction > 0 of the calls made, or None")
        self._set("attempts", attempts)
        self._set("backoff", backoff)
        self._set("max_delay", max_delay)
        self._set("jitter", jitter)
        self._set("on", _exception_types(on))
        self._set("statuses", _statuses(statuses))
        self._set("wait_from", wait_from)
        self._set("budget", budget)

    @classmethod
    def for_http(
        cls,
        attempts: int = 5,
        backoff: float = 1.0,
        max_delay: float = 60.0,
        *,
        jitter: bool = True,
        on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        budget: float | None = None,
    ) -> Retry:
        """Retry HTTP 429, 502, 503 and 504 answers, honouring ``Retry-After``.

        The status and header are read from the exception (and the exceptions it was
        raised from) of requests, httpx, aiohttp and urllib, none of which is imported.
        ``Retry-After`` is honoured in both its forms (seconds, or an HTTP date) as the
        wait before the next attempt, pausing what shares the quota (see ``wait_from``);
        without one, the exponential backoff applies. ``on`` adds exception types to
        retry as well (for example ``ConnectionError``).
        """
        from pyarallel._http_errors import retry_after

        return cls(attempts, backoff, max_delay, jitter, on, HTTP_RETRY_STATUSES, retry_after, budget)

    def delay(self, failed_attempt: int) -> float:
        """The delay before the attempt after ``failed_attempt`` (1-based), without jitter."""
        exponent = min(failed_attempt - 1, 1000)  # 2.0 ** 1024 overflows a float
        return min(_as_float(self.backoff) * 2.0**exponent, _as_float(self.max_delay))


def _statuses(statuses: object) -> frozenset[int] | None:
    """``Retry(statuses=...)`` as a frozenset of HTTP statuses (or None), else an error."""
    if statuses is None:
        return None
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Iterable):
        _refuse(
            "Retry statuses", statuses, "an iterable of HTTP status codes (ints 100-599), or None", TypeError
        )
    codes = tuple(statuses)
    for code in codes:
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            _refuse("Retry statuses", statuses, "an iterable of HTTP status codes (ints 100-599), or None")
    return frozenset(codes)


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


def check_progress(progress: object) -> None:
    """Refuse a ``progress=`` value that draws no bar, before any work starts:
    ``TypeError`` for a value of the wrong kind, ``ModuleNotFoundError`` for ``True``
    without tqdm installed."""
    if progress is None or progress is False:
        return
    if progress is True:
        try:
            import tqdm  # noqa: F401
        except ImportError as error:
            raise ModuleNotFoundError(
                "progress=True draws its bar with tqdm, which is not installed: "
                "pip install 'pyarallel[progress]' (or pip install tqdm)",
                name="tqdm",
            ) from error
        return
    if is_progress_bar(progress) or callable(progress):
        return
    raise TypeError(
        "progress must be True, False, a tqdm-compatible bar (with update() and close()) or a "
        f"factory called as factory(total=..., desc=...) that returns one; got {progress!r}"
    )


def is_progress_bar(value: object) -> bool:
    """True for a tqdm-compatible bar: an object with ``update()`` and ``close()``."""
    return callable(getattr(value, "update", None)) and callable(getattr(value, "close", None))


ProgressCallback = Callable[[int, int], object]
"""``on_progress(done, total)``; its return value is ignored."""

ResultCallback = Callable[["ItemResult[Any]"], object]
"""``on_result(result)``: each item's final ``ItemResult``; its return value is ignored."""

KeyFunction = Callable[["Any"], Hashable]
"""``checkpoint_key(item)``: what identifies an item in a checkpoint."""

if TYPE_CHECKING:
    from os import PathLike
    from typing import TypeAlias

    from pyarallel._builtin.progress_bar import ProgressBar
    from pyarallel._checkpoint import Checkpoint
    from pyarallel.contracts import CheckpointStore, RateLimiter, RateLimitSpec, RetryPolicy, RetrySpec

    # What ``rate_limit=`` and ``retry=`` accept, for type checkers: the built-in specs, a
    # limiter or policy object as it is, or a plugin's spec (see ``pyarallel.contracts``).
    # A plugin that accepts other objects through its hook works at run time too.
    ExecutorOption: TypeAlias = Any  # "thread", "process", a plugin's name, or an executor object
    RateLimitOption: TypeAlias = RateLimit | float | RateLimiter | RateLimitSpec | None
    RetryOption: TypeAlias = Retry | RetryPolicy | RetrySpec | None
    # What ``checkpoint=`` accepts: a path, a ``Checkpoint``, or a store object.
    CheckpointOption: TypeAlias = str | PathLike[str] | Checkpoint | CheckpointStore | None
    # What ``progress=`` accepts: True (a tqdm bar), a bar, or a factory (see ``ProgressBar``).
    ProgressOption: TypeAlias = bool | ProgressBar | Callable[..., ProgressBar] | None
