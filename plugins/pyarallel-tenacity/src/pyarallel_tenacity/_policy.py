"""tenacity's strategies as a pyarallel retry policy.

pyarallel's scheduler asks :meth:`TenacityPolicy.decide` after every failed attempt of an
item. The policy builds a ``tenacity.RetryCallState`` for that item from the
``FailedAttempt`` and runs the tenacity object's strategies on it in tenacity's own order:

1. ``retry``: should this failure be retried at all? If not, give up (an explicit
   ``tenacity.TryAgain`` skips this check, as in tenacity);
2. ``after``, if one is set;
3. ``wait``: how long to wait before the next attempt (computed before ``stop``, because
   ``stop_before_delay`` reads it as ``upcoming_sleep``);
4. ``stop``: if it says stop, give up;
5. ``before_sleep``, if one is set; the answer is the ``wait`` delay.

Giving up answers ``None``: the item fails with its last attempt's exception. The
scheduler waits out a delay without holding a worker, and the next attempt draws a
rate-limit token like every other attempt.
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Callable, Iterator
from typing import Any

import tenacity

from pyarallel.contracts import FailedAttempt, RetryPolicy

__all__ = [
    "RetryStrategy",
    "StateCallback",
    "StopStrategy",
    "TenacityPolicy",
    "TenacityRetry",
    "WaitStrategy",
    "from_tenacity",
]

StopStrategy = Callable[[tenacity.RetryCallState], bool]
"""A tenacity ``stop``: ``stop_after_attempt(3)``, ``stop_after_delay(10) | ...``, or a function."""
WaitStrategy = Callable[[tenacity.RetryCallState], float]
"""A tenacity ``wait``: ``wait_fixed(1)``, ``wait_exponential(...) + wait_random(0, 1)``..."""
RetryStrategy = Callable[[tenacity.RetryCallState], bool]
"""A tenacity ``retry``: ``retry_if_exception_type(OSError)``, ``retry_any(...)``..."""
StateCallback = Callable[[tenacity.RetryCallState], None]
"""A tenacity ``before_sleep`` or ``after`` callback, e.g. ``before_sleep_log(logger, level)``."""


class TenacityRetry:
    """tenacity's strategies as pyarallel's ``retry=``, typed: a
    :class:`pyarallel.contracts.RetrySpec`.

    ``TenacityRetry(stop=..., wait=..., retry=...)`` takes the same strategies as
    ``tenacity.Retrying``, and the callbacks pyarallel can honour (``before_sleep`` and
    ``after``, called in the thread driving the run); an argument left out, or ``None``, keeps
    tenacity's default: ``stop_never``, ``wait_none()``, and ``retry_if_exception_type()``
    (every ``Exception``). :func:`from_tenacity` wraps an existing ``Retrying``.

    Each call of ``parallel_map`` & co. gets a policy of its own (:meth:`as_retry_policy`),
    so one ``TenacityRetry`` may serve any number of calls, at the same time too.
    Unsupported strategies are refused here, with ``ValueError``.
    """

    __slots__ = ("_retrying",)

    def __init__(
        self,
        *,
        stop: StopStrategy | None = None,
        wait: WaitStrategy | None = None,
        retry: RetryStrategy | None = None,
        before_sleep: StateCallback | None = None,
        after: StateCallback | None = None,
    ) -> None:
        given: dict[str, Any] = {
            "stop": stop,
            "wait": wait,
            "retry": retry,
            "before_sleep": before_sleep,
            "after": after,
        }
        for parameter, value in given.items():
            if value is not None and not callable(value):
                raise TypeError(
                    f"TenacityRetry {parameter} must be a tenacity strategy, or None; got {value!r}"
                )
        kwargs = {parameter: value for parameter, value in given.items() if value is not None}
        self._retrying = _checked(tenacity.Retrying(**kwargs), "TenacityRetry")

    @classmethod
    def _of(cls, retrying: tenacity.BaseRetrying) -> TenacityRetry:
        spec = cls.__new__(cls)
        spec._retrying = _checked(retrying, _name(retrying))
        return spec

    @property
    def retrying(self) -> tenacity.BaseRetrying:
        """The tenacity object whose strategies are applied (each policy reads them once,
        when it is built)."""
        return self._retrying

    def as_retry_policy(self) -> RetryPolicy:
        """A new policy for one call of ``parallel_map`` & co."""
        return TenacityPolicy(self._retrying)

    def __repr__(self) -> str:
        r = self._retrying
        return f"TenacityRetry(stop={r.stop!r}, wait={r.wait!r}, retry={r.retry!r})"


def from_tenacity(retrying: tenacity.BaseRetrying) -> TenacityRetry:
    """Wrap a ``tenacity.Retrying`` (or ``tenacity.AsyncRetrying``) for a typed ``retry=``.

    Equivalent to passing the object itself as ``retry=``, which works at run time but is
    not a type pyarallel's signature declares. Raises ``ValueError`` naming any feature
    pyarallel cannot honour (see the README), ``TypeError`` for anything but a tenacity
    retrying object.
    """
    if not isinstance(retrying, tenacity.BaseRetrying):
        raise TypeError(
            f"from_tenacity() takes a tenacity.Retrying or tenacity.AsyncRetrying; got {retrying!r}"
        )
    return TenacityRetry._of(retrying)


class TenacityPolicy:
    """The :class:`pyarallel.contracts.RetryPolicy` for one call: applies a tenacity
    object's ``retry``, ``wait`` and ``stop`` strategies (read once, when the policy is
    built), calling its ``after`` and ``before_sleep`` callbacks, to every failed attempt.

    Each decision sees a fresh ``tenacity.RetryCallState``: ``attempt_number`` is the
    failed attempt's number, ``outcome`` a future holding its exception, ``start_time``
    when the item's first attempt started and ``outcome_timestamp`` when this one failed
    (``time.monotonic()``, tenacity's clock), ``retry_object`` the tenacity object;
    ``fn`` is ``None`` and ``args``/``kwargs`` are empty (a policy sees neither the
    function nor the item).

    ``idle_for`` (the delays the item was given so far) is tracked only when something of
    yours could read it: a ``stop``, ``wait``, ``retry``, ``after`` or ``before_sleep``
    callable that is not one of tenacity's own (tenacity's never read it). Otherwise it
    is always 0.0 and the policy keeps no state at all. When tracked, an item's entry (an
    index and a float) is dropped as soon as it gives up; the entry of an item that
    succeeded after a retry stays until the call ends and the policy is dropped, because
    pyarallel does not tell a policy about successes.

    Called only from the thread driving the run. A policy is built for each call (from a
    ``tenacity.Retrying`` or a :class:`TenacityRetry`), so it is never shared; pass those,
    not a policy, to several calls (a shared policy would mix their items' ``idle_for``).
    """

    __slots__ = ("_after", "_before_sleep", "_enabled", "_idle_for", "_retry", "_retrying", "_stop", "_wait")

    def __init__(self, retrying: tenacity.BaseRetrying) -> None:
        _checked(retrying, _name(retrying))
        self._retrying = retrying
        self._enabled: bool = getattr(retrying, "enabled", True)  # tenacity >= 8.4
        self._stop: StopStrategy = retrying.stop
        self._wait: WaitStrategy = retrying.wait
        self._retry: RetryStrategy = retrying.retry
        self._after = _callback(retrying.after, tenacity.after_nothing)
        self._before_sleep = _callback(retrying.before_sleep, tenacity.before_sleep_nothing)
        callables = [*_parts(self._stop), *_parts(self._wait), *_parts(self._retry)]
        callables += [c for c in (self._after, self._before_sleep) if c is not None]
        self._idle_for: dict[int, float] | None = (
            {} if any(not _is_tenacity_own(c) for c in callables) else None
        )

    def decide(self, failed: FailedAttempt) -> float | None:
        """The delay before ``failed``'s item is tried again, or ``None`` to give up."""
        if not self._enabled:
            return None
        state = self._state(failed)
        explicit = isinstance(failed.error, tenacity.TryAgain)  # retried whatever retry= says
        if not explicit and not _answer(self._retry(state), "retry", self._retry):
            return self._give_up(failed.index)
        if self._after is not None:
            _answer(self._after(state), "after", self._after)
        sleep = _delay(_answer(self._wait(state), "wait", self._wait), self._wait)
        state.upcoming_sleep = sleep
        if _answer(self._stop(state), "stop", self._stop):
            return self._give_up(failed.index)
        state.next_action = tenacity.RetryAction(sleep)
        state.idle_for += sleep
        if self._idle_for is not None:
            self._idle_for[failed.index] = state.idle_for
        if self._before_sleep is not None:
            _answer(self._before_sleep(state), "before_sleep", self._before_sleep)
        return sleep

    def _state(self, failed: FailedAttempt) -> tenacity.RetryCallState:
        state = tenacity.RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        state.start_time = failed.first_started
        state.attempt_number = failed.attempt
        outcome = tenacity.Future(failed.attempt)
        outcome.set_exception(failed.error)
        state.outcome = outcome
        state.outcome_timestamp = failed.first_started + failed.elapsed
        if self._idle_for is not None:
            state.idle_for = self._idle_for.get(failed.index, 0.0)
        return state

    def _give_up(self, index: int) -> float | None:
        if self._idle_for is not None:
            self._idle_for.pop(index, None)
        return None

    def __repr__(self) -> str:
        return f"TenacityPolicy(stop={self._stop!r}, wait={self._wait!r}, retry={self._retry!r})"


# -- what is refused ----------------------------------------------------------------------

_RESULT_STRATEGIES: tuple[tuple[type[object], str], ...] = (
    (
        tenacity.retry_if_result,
        "retries on a call's result, but pyarallel retries failures only: a result is a "
        "success, and final. Raise an exception for the results you want retried and "
        "retry on its type (retry_if_exception_type)",
    ),
    (
        tenacity.retry_if_not_result,
        "retries on a call's result, but pyarallel retries failures only: a result is a "
        "success, and final. Raise an exception for the results you want retried and "
        "retry on its type (retry_if_exception_type)",
    ),
    (
        tenacity.retry_unless_exception_type,
        "retries successful calls until one raises, but pyarallel never retries a "
        "success. To retry every failure except those types, use "
        "retry_if_not_exception_type(...)",
    ),
    (
        tenacity.retry_if_not_exception_message,
        "retries successful calls until one raises, but pyarallel never retries a "
        "success. To retry the failures whose message does not match, use "
        "retry_if_exception(lambda error: ...)",
    ),
)


def _checked(retrying: tenacity.BaseRetrying, where: str) -> tenacity.BaseRetrying:
    """``retrying`` if pyarallel can honour everything it asks for, else ``ValueError``
    naming the first feature it cannot."""

    def refuse(feature: str, why: str) -> ValueError:
        return ValueError(f"pyarallel cannot use {where}({feature}): {why}")

    if retrying.sleep is not _default(type(retrying), "sleep", tenacity.sleep):
        raise refuse(
            "sleep=...",
            "pyarallel waits out every delay itself, without holding a worker and before "
            "the next attempt draws its rate-limit token; remove sleep=",
        )
    if retrying.before not in (None, tenacity.before_nothing):
        raise refuse(
            "before=...",
            "attempts start in pyarallel's workers and a retry policy is only asked after "
            "an attempt failed, so nothing could call it before each attempt; call it at "
            "the start of your function instead, or use before_sleep= or after=, which are "
            "honoured",
        )
    if retrying.retry_error_callback is not None:
        raise refuse(
            "retry_error_callback=...",
            "an item that gives up fails with its last attempt's exception (see "
            "ParallelResult.failures()); a retry policy cannot turn a failure into a value. "
            "Remove it and handle the failed items from the result",
        )
    if retrying.retry_error_cls is not tenacity.RetryError:
        raise refuse(
            "retry_error_cls=...",
            "pyarallel never wraps an item's final error in a RetryError: an item that "
            "gives up fails with its last attempt's own exception; remove retry_error_cls=",
        )
    for parameter in ("stop", "wait", "retry"):
        for part in _parts(getattr(retrying, parameter)):
            if _is_async(part):
                raise refuse(f"{parameter}={_name(part)}", _ASYNC)
            for kind, why in _RESULT_STRATEGIES:
                if isinstance(part, kind):
                    raise refuse(f"{parameter}={_name(part)}", why)
    for parameter in ("after", "before_sleep"):
        callback = getattr(retrying, parameter)
        if callback is not None and _is_async(callback):
            raise refuse(f"{parameter}={_name(callback)}", _ASYNC)
    return retrying


_ASYNC = (
    "it is a coroutine function, and pyarallel asks its retry policy synchronously (in "
    "the thread or event loop driving the run), so nothing would await it; use a "
    "synchronous strategy or callback (tenacity's own stop_*, wait_*, retry_* and *_log "
    "are; tenacity.asyncio's retry_* are not)"
)


def _default(cls: type, parameter: str, fallback: object) -> object:
    """The default value of ``parameter`` in ``cls``'s constructor (tenacity's default
    ``sleep`` differs between ``Retrying`` and ``AsyncRetrying``)."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        found = inspect.signature(init).parameters.get(parameter)
        if found is not None and found.default is not inspect.Parameter.empty:
            return found.default
    return fallback


def _parts(strategy: object) -> Iterator[object]:
    """``strategy`` and, for tenacity's combinations, every strategy inside it."""
    yield strategy
    children: tuple[object, ...] = ()
    if isinstance(strategy, tenacity.retry_any | tenacity.retry_all):
        children = strategy.retries
    elif isinstance(strategy, tenacity.stop_any | tenacity.stop_all):
        children = strategy.stops
    elif isinstance(strategy, tenacity.wait_combine):
        children = strategy.wait_funcs
    elif isinstance(strategy, tenacity.wait_chain):
        children = strategy.strategies
    for child in children:
        yield from _parts(child)


def _callback(callback: StateCallback | None, nothing: StateCallback) -> StateCallback | None:
    return None if callback is None or callback is nothing else callback


def _is_async(candidate: object) -> bool:
    """Whether calling ``candidate`` makes a coroutine: an ``async def`` function (or a
    ``functools.partial`` of one), or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(candidate):
        return True
    if isinstance(candidate, types.FunctionType):
        return False
    return inspect.iscoroutinefunction(inspect.getattr_static(type(candidate), "__call__", None))


def _is_tenacity_own(candidate: object) -> bool:
    """Whether ``candidate`` is one of tenacity's strategies or callbacks (none of which
    reads ``idle_for``), not a callable of the user's."""
    module = candidate.__module__ if isinstance(candidate, types.FunctionType) else type(candidate).__module__
    return module == "tenacity" or module.startswith("tenacity.")


def _name(strategy: object) -> str:
    """``strategy``'s class (or function) by the name users know it by: ``tenacity.X``
    when tenacity exports it so, else its module's name."""
    kind = strategy if isinstance(strategy, types.FunctionType) else type(strategy)
    if getattr(tenacity, kind.__name__, None) is kind:
        return f"tenacity.{kind.__qualname__}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _answer(value: Any, role: str, strategy: object) -> Any:
    """A strategy's answer, or ``TypeError`` if it is awaitable (an asynchronous callable
    that the checks could not see as one: a coroutine is truthy, and would retry for ever)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()  # never awaited: no "coroutine was never awaited" warning
        raise TypeError(
            f"the tenacity {role} {strategy!r} returned an awaitable ({value!r}), which nothing "
            f"would await: pyarallel asks its retry policy synchronously; use a synchronous {role}"
        )
    return value


def _delay(value: Any, wait: object) -> float:
    delay = float(value)
    if not delay >= 0 or math.isinf(delay):
        raise ValueError(
            f"the tenacity wait {wait!r} answered {value!r}; a delay must be a finite number >= 0"
        )
    return delay
