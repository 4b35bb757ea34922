"""RateLimit and Retry (the immutable option objects) and the built-in retry policy plugin."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyarallel import RateLimit, Retry, parallel_map
from pyarallel._builtin.exponential_retry import ExponentialBackoff, pyarallel_retry_policy
from pyarallel.contracts import FailedAttempt

NAN = float("nan")
INF = float("inf")

# -- RateLimit ----------------------------------------------------------------------------------


def test_rate_limit_defaults_to_per_second() -> None:
    rate = RateLimit(10)
    assert rate.count == 10
    assert rate.per == "second"
    assert rate.per_second == 10.0
    assert isinstance(rate.per_second, float)


@pytest.mark.parametrize(
    ("count", "per", "expected"),
    [
        (10, "second", 10.0),
        (100, "minute", 100 / 60),
        (1000, "hour", 1000 / 3600),
        (2.5, "second", 2.5),
        (90, "minute", 1.5),
        (7200, "hour", 2.0),
        (0.5, "hour", 0.5 / 3600),
    ],
)
def test_rate_limit_per_second_conversion(count: float, per: str, expected: float) -> None:
    rate = RateLimit(count, per)  # type: ignore[arg-type]
    assert rate.per_second == pytest.approx(expected, rel=1e-12)
    assert isinstance(rate.per_second, float)


@given(
    count=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
    per=st.sampled_from([("second", 1.0), ("minute", 60.0), ("hour", 3600.0)]),
)
def test_rate_limit_per_second_is_count_over_interval(count: float, per: tuple[str, float]) -> None:
    name, seconds = per
    rate = RateLimit(count, name)  # type: ignore[arg-type]
    assert rate.per_second == pytest.approx(count / seconds, rel=1e-12)
    assert rate.per_second > 0


def test_rate_limit_per_is_keyword_or_positional() -> None:
    assert RateLimit(100, "minute") == RateLimit(100, per="minute")
    assert RateLimit(count=5, per="hour").per_second == pytest.approx(5 / 3600)


@pytest.mark.parametrize("name", ["count", "per"])
def test_rate_limit_is_frozen(name: str) -> None:
    rate = RateLimit(100, "minute")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(rate, name, 1 if name == "count" else "second")
    assert (rate.count, rate.per) == (100, "minute")
    assert rate.per_second == pytest.approx(100 / 60)


def test_rate_limit_is_a_hashable_value() -> None:
    assert RateLimit(10) == RateLimit(10, "second")
    assert RateLimit(10) != RateLimit(10, "minute")
    assert len({RateLimit(10), RateLimit(10, "second"), RateLimit(10, "hour")}) == 2


@pytest.mark.parametrize("count", [0, 0.0, -1, -0.5, -INF], ids=repr)
def test_rate_limit_refuses_a_count_that_is_not_above_zero(count: float) -> None:
    with pytest.raises(ValueError, match="count") as excinfo:
        RateLimit(count)
    assert repr(count) in str(excinfo.value)


@pytest.mark.parametrize("count", [NAN, INF], ids=repr)
def test_rate_limit_refuses_nan_and_infinity(count: float) -> None:
    with pytest.raises(ValueError, match="count") as excinfo:
        RateLimit(count)
    assert repr(count) in str(excinfo.value)


@pytest.mark.parametrize("count", ["10", None, True, [10], 10j], ids=repr)
def test_rate_limit_refuses_a_count_that_is_not_a_number(count: object) -> None:
    with pytest.raises(TypeError, match="count") as excinfo:
        RateLimit(count)  # type: ignore[arg-type]
    assert repr(count) in str(excinfo.value)


@pytest.mark.parametrize("per", ["day", "Second", "seconds", "", "min", None, 60], ids=repr)
def test_rate_limit_refuses_an_unknown_per(per: object) -> None:
    with pytest.raises(ValueError, match="per") as excinfo:
        RateLimit(10, per)  # type: ignore[arg-type]
    message = str(excinfo.value)
    assert repr(per) in message
    for allowed in ("second", "minute", "hour"):
        assert allowed in message


# -- Retry --------------------------------------------------------------------------------------


def test_retry_defaults() -> None:
    retry = Retry()
    assert retry.attempts == 3
    assert retry.backoff == 1.0
    assert retry.max_delay == 60.0
    assert retry.jitter is True
    assert retry.on is None


def test_retry_with_seed_arguments_equals_the_defaults() -> None:
    assert Retry(attempts=3, backoff=1.0) == Retry()


def test_retry_keeps_what_it_is_given() -> None:
    retry = Retry(attempts=5, backoff=0.5, max_delay=5.0, jitter=False, on=(ConnectionError, TimeoutError))
    assert retry.attempts == 5
    assert retry.backoff == 0.5
    assert retry.max_delay == 5.0
    assert retry.jitter is False
    assert retry.on == (ConnectionError, TimeoutError)


@pytest.mark.parametrize(
    ("name", "value"),
    [("attempts", 9), ("backoff", 0.1), ("max_delay", 1.0), ("jitter", False), ("on", (KeyError,))],
)
def test_retry_is_frozen(name: str, value: object) -> None:
    retry = Retry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(retry, name, value)
    assert retry == Retry()


def test_retry_is_a_hashable_value() -> None:
    assert hash(Retry()) == hash(Retry(attempts=3, backoff=1.0))
    assert len({Retry(), Retry(attempts=3), Retry(attempts=4)}) == 2


def test_retry_delay_with_the_default_backoff() -> None:
    retry = Retry()
    assert retry.delay(1) == 1.0  # before attempt 2
    assert retry.delay(2) == 2.0  # before attempt 3
    assert retry.delay(3) == 4.0
    assert retry.delay(6) == 32.0
    assert retry.delay(7) == 60.0  # 64 capped at max_delay


def test_retry_delay_with_custom_caps() -> None:
    retry = Retry(attempts=5, backoff=0.5, max_delay=5.0, jitter=False)
    assert [retry.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_retry_delay_with_zero_backoff_or_zero_cap_is_zero() -> None:
    assert [Retry(backoff=0.0).delay(n) for n in (1, 2, 10)] == [0.0, 0.0, 0.0]
    assert [Retry(max_delay=0.0).delay(n) for n in (1, 2, 10)] == [0.0, 0.0, 0.0]


@given(
    backoff=st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e4)),
    max_delay=st.floats(min_value=0.0, max_value=1e5),
    failed_attempt=st.integers(min_value=1, max_value=200),
)
def test_retry_delay_follows_the_formula(backoff: float, max_delay: float, failed_attempt: int) -> None:
    retry = Retry(backoff=backoff, max_delay=max_delay)
    expected = min(backoff * 2 ** (failed_attempt - 1), max_delay)
    assert retry.delay(failed_attempt) == pytest.approx(expected, rel=1e-12)
    assert retry.delay(failed_attempt) <= max_delay


@given(
    backoff=st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e4)),
    failed_attempt=st.integers(min_value=1, max_value=100),
)
def test_retry_delay_never_shrinks_as_attempts_grow(backoff: float, failed_attempt: int) -> None:
    retry = Retry(backoff=backoff, max_delay=1e6)
    assert retry.delay(failed_attempt + 1) >= retry.delay(failed_attempt)


@pytest.mark.parametrize("failed_attempt", [1024, 1025, 10**6, 10**18, 2**200])
def test_retry_delay_for_huge_attempt_numbers_is_capped_without_overflow(failed_attempt: int) -> None:
    assert Retry().delay(failed_attempt) == 60.0
    assert Retry(backoff=0.5, max_delay=5.0).delay(failed_attempt) == 5.0
    uncapped = Retry(max_delay=INF).delay(failed_attempt)
    assert uncapped > 1e300  # still enormous, and no OverflowError on the way


def test_retry_accepts_the_boundary_values() -> None:
    assert Retry(attempts=1).attempts == 1
    assert Retry(backoff=0).backoff == 0
    assert Retry(max_delay=0).max_delay == 0
    assert Retry(on=()).on == ()


@pytest.mark.parametrize("attempts", [0, -1, -100])
def test_retry_refuses_attempts_below_one(attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts") as excinfo:
        Retry(attempts=attempts)
    assert repr(attempts) in str(excinfo.value)


@pytest.mark.parametrize("attempts", [1.5, 3.0, "3", None, True], ids=repr)
def test_retry_refuses_attempts_that_are_not_an_int(attempts: object) -> None:
    with pytest.raises(TypeError, match="attempts") as excinfo:
        Retry(attempts=attempts)  # type: ignore[arg-type]
    assert repr(attempts) in str(excinfo.value)


@pytest.mark.parametrize("name", ["backoff", "max_delay"])
@pytest.mark.parametrize("value", [-0.001, -1, -INF, NAN], ids=repr)
def test_retry_refuses_negative_or_nan_delays(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name) as excinfo:
        Retry(**{name: value})  # type: ignore[arg-type]
    assert repr(value) in str(excinfo.value)


@pytest.mark.parametrize("name", ["backoff", "max_delay"])
@pytest.mark.parametrize("value", ["1", None, True], ids=repr)
def test_retry_refuses_delays_that_are_not_numbers(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=name) as excinfo:
        Retry(**{name: value})  # type: ignore[arg-type]
    assert repr(value) in str(excinfo.value)


@pytest.mark.parametrize(
    "on",
    [
        "ValueError",
        [ValueError],
        (ValueError, "KeyError"),
        (int,),
        (ValueError(),),
        {ConnectionError},
        42,
    ],
    ids=repr,
)
def test_retry_refuses_a_bad_on(on: object) -> None:
    with pytest.raises(TypeError, match="on") as excinfo:
        Retry(on=on)  # type: ignore[arg-type]
    assert repr(on) in str(excinfo.value)


def test_retry_refuses_a_jitter_that_is_not_a_bool() -> None:
    with pytest.raises(TypeError, match="jitter"):
        Retry(jitter="yes")  # type: ignore[arg-type]


# -- the built-in retry policy plugin -----------------------------------------------------------


def ask(policy: ExponentialBackoff, attempt: int, error: BaseException) -> float | None:
    """The policy's delay after failed attempt ``attempt`` (None: give up)."""
    answer = policy.decide(FailedAttempt(0, attempt, error, first_started=0.0, elapsed=0.0))
    assert answer is None or isinstance(answer, float)
    return answer


def test_the_plugin_serves_retry_objects_only() -> None:
    retry = Retry(attempts=4)
    policy = pyarallel_retry_policy(retry=retry)
    assert isinstance(policy, ExponentialBackoff)
    assert policy.retry is retry
    assert pyarallel_retry_policy(retry="not a Retry") is None
    assert pyarallel_retry_policy(retry={"attempts": 3}) is None


def test_policy_without_jitter_waits_the_deterministic_delays_then_gives_up() -> None:
    policy = ExponentialBackoff(Retry(attempts=3, backoff=1.0, jitter=False))
    error = ValueError("flaky")
    assert ask(policy, 1, error) == 1.0
    assert ask(policy, 2, error) == 2.0
    assert ask(policy, 3, error) is None
    assert ask(policy, 4, error) is None


@pytest.mark.parametrize("attempts", [1, 2, 5, 10])
def test_policy_gives_up_after_attempts(attempts: int) -> None:
    policy = ExponentialBackoff(Retry(attempts=attempts, backoff=0.01))
    error = RuntimeError("x")
    for failed in range(1, attempts):
        assert ask(policy, failed, error) is not None
    assert ask(policy, attempts, error) is None


def test_policy_with_attempts_one_never_retries() -> None:
    policy = ExponentialBackoff(Retry(attempts=1))
    assert ask(policy, 1, ConnectionError()) is None


def test_policy_respects_on() -> None:
    policy = ExponentialBackoff(Retry(on=(ConnectionError, TimeoutError), jitter=False))
    assert ask(policy, 1, ConnectionError()) == 1.0
    assert ask(policy, 1, ConnectionRefusedError()) == 1.0  # subclasses count
    assert ask(policy, 1, TimeoutError()) == 1.0
    assert ask(policy, 1, ValueError()) is None
    assert ask(policy, 1, OSError()) is None  # a base class does not


def test_policy_with_empty_on_retries_nothing() -> None:
    policy = ExponentialBackoff(Retry(on=()))
    assert ask(policy, 1, ValueError()) is None


@pytest.mark.parametrize("error", [ValueError(), KeyError(), OSError(), ZeroDivisionError(), Exception()])
def test_policy_with_on_none_retries_every_exception(error: Exception) -> None:
    policy = ExponentialBackoff(Retry(jitter=False))
    assert ask(policy, 1, error) == 1.0


@given(
    backoff=st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e4)),
    max_delay=st.floats(min_value=0.0, max_value=1e5),
    failed_attempt=st.integers(min_value=1, max_value=2000),
)
def test_jitter_keeps_delays_between_half_and_all_of_the_deterministic_delay(
    backoff: float, max_delay: float, failed_attempt: int
) -> None:
    retry = Retry(attempts=failed_attempt + 1, backoff=backoff, max_delay=max_delay, jitter=True)
    deterministic = retry.delay(failed_attempt)
    delay = ask(ExponentialBackoff(retry), failed_attempt, ValueError())
    assert delay is not None
    assert math.isfinite(delay)
    assert 0.5 * deterministic <= delay <= deterministic
    assert delay <= max_delay


@given(
    backoff=st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e4)),
    max_delay=st.floats(min_value=0.0, max_value=1e5),
    failed_attempt=st.integers(min_value=1, max_value=2000),
)
def test_without_jitter_the_policy_delay_is_the_deterministic_delay(
    backoff: float, max_delay: float, failed_attempt: int
) -> None:
    retry = Retry(attempts=failed_attempt + 1, backoff=backoff, max_delay=max_delay, jitter=False)
    assert ask(ExponentialBackoff(retry), failed_attempt, ValueError()) == retry.delay(failed_attempt)


def test_jitter_actually_varies_the_delay() -> None:
    policy = ExponentialBackoff(Retry(attempts=10, backoff=1.0))
    delays = {ask(policy, 3, ValueError()) for _ in range(50)}
    assert len(delays) > 1
    assert all(d is not None and 2.0 <= d <= 4.0 for d in delays)


@pytest.mark.parametrize("jitter", [True, False])
@pytest.mark.parametrize("failed_attempt", [1100, 10**6, 10**18])
def test_policy_handles_huge_attempt_numbers(jitter: bool, failed_attempt: int) -> None:
    policy = ExponentialBackoff(Retry(attempts=10**19, backoff=1.0, max_delay=60.0, jitter=jitter))
    delay = ask(policy, failed_attempt, ValueError())
    assert delay is not None
    assert 30.0 <= delay <= 60.0
    if not jitter:
        assert delay == 60.0


# -- the options at work ------------------------------------------------------------------------


def test_retry_runs_an_always_failing_item_attempts_times_and_keeps_the_last_error() -> None:
    calls: list[int] = []

    def always_fails(x: int) -> int:
        calls.append(x)
        raise ValueError(f"attempt {len(calls)}")

    result = parallel_map(always_fails, [7], retry=Retry(attempts=3, backoff=0.0))
    assert calls == [7, 7, 7]
    [(index, error)] = result.failures()
    assert index == 0
    assert str(error) == "attempt 3"


def test_retry_on_does_not_retry_other_exceptions() -> None:
    calls: list[int] = []

    def fails(x: int) -> int:
        calls.append(x)
        raise ValueError("not transient")

    result = parallel_map(fails, [1], retry=Retry(attempts=5, backoff=0.0, on=(ConnectionError,)))
    assert calls == [1]
    assert isinstance(result.failures()[0][1], ValueError)


def test_retry_recovers_a_flaky_item() -> None:
    failures_left = {0: 2}

    def flaky(x: int) -> int:
        if failures_left.get(x, 0) > 0:
            failures_left[x] -= 1
            raise ConnectionError("transient")
        return x + 100

    result = parallel_map(flaky, [0, 1], retry=Retry(attempts=3, backoff=0.0, on=(ConnectionError,)))
    assert result == [100, 101]
    assert failures_left == {0: 0}


def test_rate_limit_shorthand_and_object_are_equivalent_in_a_run() -> None:
    assert parallel_map(abs, [-1, -2], rate_limit=1000) == parallel_map(
        abs, [-1, -2], rate_limit=RateLimit(1000)
    )


HUGE = 10**400  # an int too large for a float: effectively infinite


def test_rate_limit_refuses_an_int_too_large_for_a_float_like_infinity() -> None:
    with pytest.raises(ValueError, match="count"):
        RateLimit(HUGE)


def test_retry_max_delay_too_large_for_a_float_acts_as_no_cap() -> None:
    retry = Retry(max_delay=HUGE)
    assert retry.delay(1) == 1.0
    assert retry.delay(11) == 1024.0


def test_retry_backoff_too_large_for_a_float_is_capped_by_max_delay() -> None:
    retry = Retry(backoff=HUGE, max_delay=0.01)
    assert retry.delay(1) == 0.01
    calls: list[int] = []

    def fails(x: int) -> int:
        calls.append(x)
        raise ValueError(x)

    result = parallel_map(fails, [1], retry=retry)
    assert len(calls) == 3
    assert isinstance(result.failures()[0][1], ValueError)
