"""The built-in retry policy that ``Retry`` configures (``ExponentialBackoff``): HTTP statuses and
``Retry-After`` (``Retry.for_http()``), ``wait_from=``, the run's retry ``budget=``, and the
validation, equality and pickling of the new ``Retry`` fields.

The HTTP errors are real ``urllib.error.HTTPError`` objects, built without a network.
"""

from __future__ import annotations

import email.message
import math
import pickle
import time
import urllib.error
from email.utils import formatdate
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyarallel import Retry
from pyarallel._builtin.exponential_retry import ExponentialBackoff, pyarallel_retry_policy
from pyarallel._options import HTTP_RETRY_STATUSES, RETRY_BUDGET_FLOOR
from pyarallel.contracts import FailedAttempt, RetryDecision

NAN = float("nan")
INF = float("inf")

# -- helpers ------------------------------------------------------------------------------------


def http_error(code: int, retry_after: str | None = None) -> urllib.error.HTTPError:
    """A real urllib HTTP error with that status (and ``Retry-After`` header, if given)."""
    headers = email.message.Message()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return urllib.error.HTTPError("https://api.example.com/v1", code, "status", headers, None)


def failed(
    error: BaseException, attempt: int = 1, *, run_calls: int = 1, run_retries: int = 0
) -> FailedAttempt:
    return FailedAttempt(0, attempt, error, 0.0, 0.0, run_calls=run_calls, run_retries=run_retries)


def decide(retry: Retry, error: BaseException, attempt: int = 1, **run: int) -> RetryDecision | float | None:
    return ExponentialBackoff(retry).decide(failed(error, attempt, **run))


def delay_of(decision: RetryDecision | float | None) -> float:
    assert decision is not None
    return decision.delay if isinstance(decision, RetryDecision) else decision


def chained(cause: BaseException) -> RuntimeError:
    """A library's own error raised from ``cause``."""
    try:
        raise RuntimeError("the API client failed") from cause
    except RuntimeError as error:
        return error


# -- Retry.for_http(): which failures are retried -----------------------------------------------


def test_for_http_retries_the_overload_statuses() -> None:
    assert frozenset({429, 502, 503, 504}) == HTTP_RETRY_STATUSES
    assert Retry.for_http().statuses == HTTP_RETRY_STATUSES


@pytest.mark.parametrize("code", [429, 502, 503, 504])
@pytest.mark.parametrize("retry_after", [None, "3"])
def test_for_http_retries_429_502_503_504(code: int, retry_after: str | None) -> None:
    assert decide(Retry.for_http(), http_error(code, retry_after)) is not None


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 500, 501, 505, 301])
@pytest.mark.parametrize("retry_after", [None, "3"])
def test_for_http_does_not_retry_other_statuses(code: int, retry_after: str | None) -> None:
    assert decide(Retry.for_http(), http_error(code, retry_after)) is None


@pytest.mark.parametrize(
    "error", [ValueError("bad"), ConnectionError("reset"), TimeoutError(), OSError(), KeyError("k")]
)
def test_for_http_does_not_retry_exceptions_without_a_status(error: Exception) -> None:
    assert decide(Retry.for_http(), error) is None


def test_for_http_on_adds_exception_types() -> None:
    retry = Retry.for_http(on=ConnectionError)
    assert retry.on == (ConnectionError,)
    decision = decide(retry, ConnectionResetError("reset"))
    assert isinstance(decision, float)  # a plain backoff: no throttle, no pause
    assert decide(retry, http_error(503)) is not None  # the statuses still count
    assert decide(retry, http_error(404)) is None
    assert decide(retry, TimeoutError()) is None


def test_for_http_on_a_tuple_of_types() -> None:
    retry = Retry.for_http(on=(ConnectionError, TimeoutError))
    assert decide(retry, TimeoutError()) is not None
    assert decide(retry, ConnectionError()) is not None
    assert decide(retry, ValueError()) is None


def test_for_http_reads_the_status_through_a_chained_exception() -> None:
    assert decide(Retry.for_http(), chained(http_error(503))) is not None
    assert decide(Retry.for_http(), chained(http_error(404))) is None
    decision = decide(Retry.for_http(), chained(http_error(429, "4")))
    assert decision == RetryDecision(4.0, pause=True, throttled=True)


def test_for_http_reads_a_status_code_attribute() -> None:
    class ApiError(Exception):
        status_code = 503

    assert decide(Retry.for_http(), ApiError()) is not None


def test_for_http_stops_after_the_attempts() -> None:
    retry = Retry.for_http(attempts=3)
    assert decide(retry, http_error(503), attempt=2) is not None
    assert decide(retry, http_error(503), attempt=3) is None
    assert decide(retry, http_error(429, "1"), attempt=3) is None  # even when asked to wait


# -- Retry.for_http(): how long, and pausing --------------------------------------------------


@pytest.mark.parametrize("code", [429, 503])
@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("120", 120.0), (" 2.5 ", 2.5)])
def test_retry_after_seconds_pauses_for_that_long(code: int, header: str, seconds: float) -> None:
    decision = decide(Retry.for_http(), http_error(code, header))
    assert decision == RetryDecision(seconds, pause=True, throttled=True)
    assert isinstance(decision, RetryDecision)
    assert decision.pause
    assert decision.throttled


def test_retry_after_is_neither_jittered_nor_capped() -> None:
    retry = Retry.for_http(backoff=0.1, max_delay=5.0, jitter=True)
    for _ in range(20):
        assert delay_of(decide(retry, http_error(429, "300"))) == 300.0


def test_retry_after_an_http_date_waits_until_then() -> None:
    date = formatdate(time.time() + 30, usegmt=True)  # whole seconds: up to 1 s sooner
    decision = decide(Retry.for_http(), http_error(503, date))
    assert isinstance(decision, RetryDecision)
    assert decision.pause
    assert decision.throttled
    assert 28.0 <= decision.delay <= 30.0


def test_retry_after_a_date_in_the_past_retries_at_once() -> None:
    decision = decide(Retry.for_http(), http_error(429, "Sun, 06 Nov 1994 08:49:37 GMT"))
    assert decision == RetryDecision(0.0, pause=True, throttled=True)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_a_429_without_retry_after_is_a_throttled_backoff(attempt: int) -> None:
    decision = decide(Retry.for_http(backoff=1.0, jitter=False), http_error(429), attempt=attempt)
    assert decision == RetryDecision(2.0 ** (attempt - 1), throttled=True)
    assert isinstance(decision, RetryDecision)
    assert not decision.pause


def test_a_429_without_retry_after_is_jittered() -> None:
    delays = set()
    for _ in range(50):
        decision = decide(Retry.for_http(backoff=1.0), http_error(429), attempt=3)
        assert isinstance(decision, RetryDecision)
        assert decision.throttled
        assert not decision.pause
        assert 2.0 <= decision.delay <= 4.0
        delays.add(decision.delay)
    assert len(delays) > 1


@pytest.mark.parametrize("code", [502, 503, 504])
def test_an_overload_status_without_retry_after_is_a_plain_delay(code: int) -> None:
    decision = decide(Retry.for_http(backoff=0.5, jitter=False), http_error(code), attempt=2)
    assert type(decision) is float
    assert decision == 1.0


def test_an_unreadable_retry_after_falls_back_to_the_backoff() -> None:
    retry = Retry.for_http(backoff=2.0, jitter=False)
    assert decide(retry, http_error(503, "soon")) == 2.0
    assert decide(retry, http_error(429, "-5")) == RetryDecision(2.0, throttled=True)


def test_the_backoff_is_capped_by_max_delay() -> None:
    retry = Retry.for_http(backoff=1.0, max_delay=10.0, attempts=100, jitter=False)
    assert decide(retry, http_error(503), attempt=50) == 10.0
    jittered = Retry.for_http(backoff=1.0, max_delay=10.0, attempts=100)
    assert 5.0 <= delay_of(decide(jittered, http_error(503), attempt=50)) <= 10.0


# -- wait_from= ---------------------------------------------------------------------------------


def test_wait_from_replaces_the_backoff_and_pauses() -> None:
    retry = Retry(backoff=1.0, max_delay=5.0, jitter=True, wait_from=lambda error: 42)
    for _ in range(10):
        assert decide(retry, ValueError()) == RetryDecision(42.0, pause=True, throttled=True)


def test_wait_from_is_told_the_exception() -> None:
    seen: list[BaseException] = []
    error = ValueError("x")

    def wait_from(exception: BaseException) -> float:
        seen.append(exception)
        return 1.5

    assert decide(Retry(wait_from=wait_from), error) == RetryDecision(1.5, pause=True, throttled=True)
    assert seen == [error]


def test_wait_from_none_uses_the_backoff() -> None:
    retry = Retry(backoff=3.0, jitter=False, wait_from=lambda error: None)
    assert decide(retry, ValueError(), attempt=2) == 6.0


def test_wait_from_is_not_asked_when_the_error_is_not_retried() -> None:
    def wait_from(error: BaseException) -> float:
        raise AssertionError("asked")

    retry = Retry(attempts=2, on=KeyError, wait_from=wait_from)
    assert decide(retry, ValueError()) is None
    assert decide(retry, KeyError(), attempt=2) is None


@pytest.mark.parametrize("value", ["5", -1, -0.001, NAN, True, [1], object()])
def test_wait_from_returning_a_bad_value_names_wait_from(value: object) -> None:
    retry = Retry(wait_from=lambda error: value)
    with pytest.raises(TypeError, match="wait_from") as caught:
        decide(retry, ValueError())
    assert repr(value) in str(caught.value)


def test_wait_from_returning_a_huge_int() -> None:
    """Either refused like any bad value, or an endless wait as ``inf`` would be."""
    try:
        decision = decide(Retry(wait_from=lambda error: 10**400), ValueError())
    except TypeError as error:
        message = str(error)
        decision = None
    else:
        message = "wait_from"
    assert "wait_from" in message
    assert decision in (None, RetryDecision(INF, pause=True, throttled=True))


@settings(max_examples=100, deadline=None)
@given(seconds=st.floats(min_value=0, max_value=1e9) | st.integers(min_value=0, max_value=10**9))
def test_any_wait_from_number_is_the_delay(seconds: float) -> None:
    decision = decide(Retry(max_delay=0.0, wait_from=lambda error: seconds), ValueError())
    assert decision == RetryDecision(float(seconds), pause=True, throttled=True)


@settings(max_examples=100, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=60),
    backoff=st.floats(min_value=0, max_value=100),
    max_delay=st.floats(min_value=0, max_value=1000),
)
def test_a_backoff_never_exceeds_max_delay(attempt: int, backoff: float, max_delay: float) -> None:
    for jitter in (False, True):
        retry = Retry(attempts=100, backoff=backoff, max_delay=max_delay, jitter=jitter)
        delay = decide(retry, ValueError(), attempt=attempt)
        assert isinstance(delay, float)
        assert 0.0 <= delay <= max_delay
        assert delay <= backoff * 2.0 ** (attempt - 1)
        if not jitter:
            assert delay == min(backoff * 2.0 ** (attempt - 1), max_delay)


# -- budget= ------------------------------------------------------------------------------------


def test_the_budget_allows_retries_up_to_that_fraction_of_the_calls() -> None:
    retry = Retry(budget=0.1)
    assert decide(retry, ValueError(), run_calls=1000, run_retries=99) is not None
    assert decide(retry, ValueError(), run_calls=1000, run_retries=100) is None
    assert decide(retry, ValueError(), run_calls=1000, run_retries=5000) is None


def test_the_budget_always_allows_the_floor() -> None:
    assert RETRY_BUDGET_FLOOR == 10
    retry = Retry(budget=0.1)
    assert decide(retry, ValueError(), run_calls=5, run_retries=9) is not None
    assert decide(retry, ValueError(), run_calls=5, run_retries=10) is None
    assert decide(retry, ValueError(), run_calls=1, run_retries=0) is not None


def test_without_a_budget_retries_are_not_counted() -> None:
    assert decide(Retry(), ValueError(), run_calls=1, run_retries=10**6) is not None


def test_the_budget_applies_to_asked_waits_too() -> None:
    retry = Retry.for_http(budget=0.5)
    assert decide(retry, http_error(429, "2"), run_calls=100, run_retries=49) is not None
    assert decide(retry, http_error(429, "2"), run_calls=100, run_retries=50) is None


@settings(max_examples=200, deadline=None)
@given(
    budget=st.floats(min_value=0.001, max_value=5.0),
    run_calls=st.integers(min_value=1, max_value=100_000),
    run_retries=st.integers(min_value=0, max_value=100_000),
)
def test_the_budget_rule(budget: float, run_calls: int, run_retries: int) -> None:
    decision = decide(Retry(budget=budget), ValueError(), run_calls=run_calls, run_retries=run_retries)
    allowed = run_retries < max(RETRY_BUDGET_FLOOR, budget * run_calls)
    assert (decision is not None) == allowed


# -- statuses= on Retry itself ------------------------------------------------------------------


def test_statuses_only_retries_those_statuses() -> None:
    retry = Retry(statuses=[500], jitter=False)
    assert decide(retry, http_error(500)) == 1.0
    assert decide(retry, http_error(503)) is None
    assert decide(retry, ValueError()) is None  # no longer every Exception


def test_statuses_with_on_retries_both() -> None:
    retry = Retry(statuses=(503,), on=KeyError)
    assert decide(retry, http_error(503)) is not None
    assert decide(retry, KeyError()) is not None
    assert decide(retry, ValueError()) is None


def test_a_429_in_statuses_is_a_throttle_without_for_http() -> None:
    decision = decide(Retry(statuses={429}, jitter=False), http_error(429, "9"))
    assert decision == RetryDecision(1.0, throttled=True)  # no wait_from: Retry-After is not read


def test_statuses_are_kept_as_a_frozenset() -> None:
    assert Retry(statuses=[503, 503, 429]).statuses == frozenset({429, 503})
    assert Retry(statuses=range(500, 505)).statuses == frozenset(range(500, 505))
    assert Retry(statuses=(code for code in [502])).statuses == frozenset({502})
    assert Retry().statuses is None


@pytest.mark.parametrize("statuses", [5, 3.5, object(), "429", b"429"])
def test_statuses_must_be_an_iterable_of_codes(statuses: object) -> None:
    with pytest.raises(TypeError, match="Retry statuses"):
        Retry(statuses=statuses)  # type: ignore[arg-type]


@pytest.mark.parametrize("statuses", [[99], [600], [0], [-1], [True], [429, 600], ["429"], [429.0]])
def test_statuses_must_be_http_status_codes(statuses: list[object]) -> None:
    with pytest.raises((TypeError, ValueError), match="Retry statuses"):
        Retry(statuses=statuses)  # type: ignore[arg-type]


def test_unhashable_statuses_name_retry_statuses() -> None:
    with pytest.raises((TypeError, ValueError), match="Retry statuses"):
        Retry(statuses=[[429]])  # type: ignore[list-item]


# -- budget= and wait_from= validation ----------------------------------------------------------


@pytest.mark.parametrize(("budget", "error"), [(0, ValueError), (-1, ValueError), (NAN, ValueError)])
def test_budget_must_be_a_positive_fraction(budget: float, error: type[Exception]) -> None:
    with pytest.raises(error, match="Retry budget"):
        Retry(budget=budget)


@pytest.mark.parametrize("budget", ["0.1", True, [0.1]])
def test_budget_must_be_a_number(budget: object) -> None:
    with pytest.raises(TypeError, match="Retry budget"):
        Retry(budget=budget)  # type: ignore[arg-type]


def test_budget_of_for_http_is_validated() -> None:
    with pytest.raises(ValueError, match="Retry budget"):
        Retry.for_http(budget=0)


@pytest.mark.parametrize("wait_from", [3, "retry_after", [len]])
def test_wait_from_must_be_callable(wait_from: object) -> None:
    with pytest.raises(TypeError, match="Retry wait_from"):
        Retry(wait_from=wait_from)  # type: ignore[arg-type]


# -- equality, hashing, pickling ----------------------------------------------------------------


def test_for_http_twice_is_equal() -> None:
    assert Retry.for_http() == Retry.for_http()
    assert hash(Retry.for_http()) == hash(Retry.for_http())
    assert Retry.for_http(on=ConnectionError, budget=0.2) == Retry.for_http(on=ConnectionError, budget=0.2)


def test_for_http_differs_from_other_retries() -> None:
    assert Retry.for_http() != Retry.for_http(attempts=4)
    assert Retry.for_http() != Retry.for_http(budget=0.1)
    assert Retry.for_http() != Retry(attempts=5)
    assert Retry.for_http() != Retry(attempts=5, statuses=HTTP_RETRY_STATUSES)


@pytest.mark.parametrize(
    "retry",
    [
        Retry.for_http(),
        Retry.for_http(attempts=7, backoff=0.25, max_delay=9.0, jitter=False, on=ConnectionError, budget=0.1),
        Retry(statuses=[500, 503], budget=1.5),
    ],
)
def test_retries_pickle(retry: Retry) -> None:
    # From protocol 3: protocol 2 maps ConnectionError to Python 2's OSError (_compat_pickle).
    for protocol in range(3, pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(retry, protocol))
        assert copy == retry
        assert hash(copy) == hash(retry)
    copy = pickle.loads(pickle.dumps(retry))
    error = http_error(429, "3")
    assert decide(copy, error) == decide(retry, error)


def test_the_new_fields_are_in_the_repr_and_match_args() -> None:
    retry = Retry.for_http(budget=0.5)
    assert "statuses=" in repr(retry)
    assert "budget=0.5" in repr(retry)
    assert Retry.__match_args__[-3:] == ("statuses", "wait_from", "budget")
    match retry:
        case Retry(attempts=5, statuses=statuses, budget=budget):
            assert statuses == HTTP_RETRY_STATUSES
            assert budget == 0.5
        case _:  # pragma: no cover
            pytest.fail("Retry did not match")


# -- the plugin hook ----------------------------------------------------------------------------


def test_the_hook_builds_the_policy_for_a_retry_only() -> None:
    policy = pyarallel_retry_policy(Retry.for_http())
    assert isinstance(policy, ExponentialBackoff)
    assert pyarallel_retry_policy(3) is None
    assert pyarallel_retry_policy(None) is None


def test_decisions_are_valid_retry_decisions() -> None:
    """Every answer is None, a float >= 0 or a RetryDecision the scheduler accepts."""
    retry = Retry.for_http(jitter=True)
    errors: list[Any] = [http_error(code, header) for code in (429, 503, 404) for header in (None, "1")]
    errors += [ValueError(), ConnectionError()]
    for error in errors:
        for attempt in range(1, 7):
            decision = decide(retry, error, attempt=attempt)
            if decision is None:
                continue
            delay = delay_of(decision)
            assert math.isfinite(delay)
            assert delay >= 0
