"""The policy's answers, one ``FailedAttempt`` at a time, for each supported tenacity
strategy, and the ``RetryCallState`` its strategies and callbacks are given."""

from __future__ import annotations

import inspect
import logging
import random

import pytest
import tenacity
from pyarallel_tenacity import TenacityPolicy, TenacityRetry, from_tenacity
from pyarallel_tenacity._plugin import pyarallel_retry_policy
from tenacity import (
    retry_all,
    retry_any,
    retry_if_exception,
    retry_if_exception_cause_type,
    retry_if_exception_message,
    retry_if_exception_type,
    retry_if_not_exception_type,
    retry_never,
    stop_after_attempt,
    stop_after_delay,
    stop_all,
    stop_any,
    stop_never,
    wait_chain,
    wait_combine,
    wait_exponential,
    wait_fixed,
    wait_incrementing,
    wait_none,
    wait_random,
    wait_random_exponential,
)

import pyarallel
from pyarallel.contracts import FailedAttempt, RetryPolicy, RetrySpec

pytestmark = pytest.mark.timeout(30)

T0 = 1000.0  # an item's first start, on the monotonic clock


def failed(
    attempt: int, error: BaseException | None = None, *, elapsed: float = 0.0, index: int = 0
) -> FailedAttempt:
    return FailedAttempt(index, attempt, error if error is not None else ValueError("boom"), T0, elapsed)


def policy(**options: object) -> RetryPolicy:
    return from_tenacity(tenacity.Retrying(**options)).as_retry_policy()  # type: ignore[arg-type]


def answers(retry: RetryPolicy, attempts: range, error: BaseException | None = None) -> list[object]:
    return [retry.decide(failed(attempt, error)) for attempt in attempts]


# -- stop ---------------------------------------------------------------------------------


def test_stop_after_attempt_gives_up_on_the_last_attempt() -> None:
    retry = policy(stop=stop_after_attempt(3), wait=wait_fixed(0.5))
    assert answers(retry, range(1, 5)) == [0.5, 0.5, None, None]


def test_stop_after_delay_counts_elapsed_seconds_since_the_first_start() -> None:
    retry = policy(stop=stop_after_delay(5))
    decisions = [
        retry.decide(failed(attempt, elapsed=elapsed)) for attempt, elapsed in enumerate((0, 4.99, 5, 9), 1)
    ]
    assert decisions == [0.0, 0.0, None, None]


@pytest.mark.skipif(not hasattr(tenacity, "stop_before_delay"), reason="tenacity >= 8.3")
def test_stop_before_delay_sees_the_upcoming_wait() -> None:
    # tenacity computes wait before stop (stop_before_delay reads upcoming_sleep): so does the policy
    retry = policy(stop=tenacity.stop_before_delay(5), wait=wait_fixed(1))
    assert retry.decide(failed(2, elapsed=3.9)) == 1.0
    assert retry.decide(failed(3, elapsed=4.0)) is None


@pytest.mark.parametrize(
    "stop",
    [stop_any(stop_after_attempt(5), stop_after_delay(2)), stop_after_attempt(5) | stop_after_delay(2)],
    ids=["stop_any", "or"],
)
def test_stop_any_stops_when_either_does(stop: tenacity.stop.stop_base) -> None:
    retry = policy(stop=stop)
    assert retry.decide(failed(2, elapsed=1)) == 0.0
    assert retry.decide(failed(2, elapsed=2.5)) is None
    assert retry.decide(failed(5, elapsed=0)) is None


@pytest.mark.parametrize(
    "stop",
    [stop_all(stop_after_attempt(5), stop_after_delay(2)), stop_after_attempt(5) & stop_after_delay(2)],
    ids=["stop_all", "and"],
)
def test_stop_all_stops_when_both_do(stop: tenacity.stop.stop_base) -> None:
    retry = policy(stop=stop)
    assert retry.decide(failed(2, elapsed=2.5)) == 0.0
    assert retry.decide(failed(5, elapsed=1)) == 0.0
    assert retry.decide(failed(5, elapsed=2.5)) is None


def test_tenacity_defaults_retry_every_exception_for_ever() -> None:
    # Retrying(): stop_never, wait_none(), retry_if_exception_type() (every Exception)
    retry = policy()
    assert retry.decide(failed(1)) == 0.0
    assert retry.decide(failed(10_000, elapsed=1e6)) == 0.0
    assert retry.decide(failed(1, KeyboardInterrupt())) is None  # not an Exception
    assert TenacityRetry().as_retry_policy().decide(failed(10_000)) == 0.0


# -- wait ---------------------------------------------------------------------------------


def test_wait_fixed() -> None:
    assert answers(policy(wait=wait_fixed(2)), range(1, 4)) == [2.0, 2.0, 2.0]


def test_wait_exponential_doubles_between_its_bounds() -> None:
    retry = policy(wait=wait_exponential(multiplier=1, min=1.5, max=10))
    assert answers(retry, range(1, 8)) == [1.5, 2, 4, 8, 10, 10, 10]


def test_wait_random_exponential_stays_in_its_window() -> None:
    random.seed(1)
    retry = policy(wait=wait_random_exponential(multiplier=1, max=8))
    for attempt in range(1, 7):
        delays = [retry.decide(failed(attempt)) for _ in range(200)]
        high = min(2 ** (attempt - 1), 8)
        assert all(0 <= delay <= high for delay in delays), (attempt, delays)  # type: ignore[operator]
        assert len(set(delays)) > 100  # random, not fixed


def test_wait_chain_uses_one_strategy_per_attempt_then_the_last() -> None:
    retry = policy(wait=wait_chain(wait_fixed(1), wait_fixed(1), wait_fixed(5)))
    assert answers(retry, range(1, 6)) == [1.0, 1.0, 5.0, 5.0, 5.0]


def test_wait_combinations_add_up() -> None:
    assert answers(policy(wait=wait_fixed(1) + wait_fixed(2)), range(1, 3)) == [3.0, 3.0]
    assert answers(policy(wait=sum([wait_fixed(1), wait_incrementing(0, 2)])), range(1, 4)) == [1.0, 3.0, 5.0]
    jittered = policy(wait=wait_combine(wait_exponential(max=4), wait_random(0, 0.5)))
    for attempt, base in [(1, 1), (2, 2), (3, 4), (6, 4)]:
        delay = jittered.decide(failed(attempt))
        assert isinstance(delay, float)
        assert base <= delay <= base + 0.5


def test_a_negative_wait_ends_the_run_with_a_clear_error() -> None:
    retry = policy(wait=lambda state: -1.0)
    with pytest.raises(ValueError, match=r"answered -1\.0; a delay must be a finite number >= 0"):
        retry.decide(failed(1))


# -- retry --------------------------------------------------------------------------------


def test_retry_if_exception_type() -> None:
    retry = policy(retry=retry_if_exception_type(OSError))
    assert retry.decide(failed(1, ConnectionError())) == 0.0
    assert retry.decide(failed(1, ValueError())) is None


def test_retry_if_exception_message_equals_or_matches() -> None:
    exact = policy(retry=retry_if_exception_message(message="busy"))
    assert exact.decide(failed(1, ValueError("busy"))) == 0.0
    assert exact.decide(failed(1, ValueError("busy!"))) is None
    pattern = policy(retry=retry_if_exception_message(match=r"bu.y"))
    assert pattern.decide(failed(1, ValueError("busy, come back later"))) == 0.0
    assert pattern.decide(failed(1, ValueError("fatal"))) is None


def test_retry_if_not_exception_type() -> None:
    retry = policy(retry=retry_if_not_exception_type((KeyError, TypeError)))
    assert retry.decide(failed(1, ValueError())) == 0.0
    assert retry.decide(failed(1, KeyError())) is None
    assert retry.decide(failed(1, TypeError())) is None


def test_retry_if_exception_and_its_cause_type() -> None:
    by_predicate = policy(retry=retry_if_exception(lambda error: "transient" in str(error)))
    assert by_predicate.decide(failed(1, ValueError("transient"))) == 0.0
    assert by_predicate.decide(failed(1, ValueError("final"))) is None
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = TimeoutError()
    by_cause = policy(retry=retry_if_exception_cause_type(TimeoutError))
    assert by_cause.decide(failed(1, wrapped)) == 0.0
    assert by_cause.decide(failed(1, RuntimeError())) is None


@pytest.mark.parametrize(
    "retry",
    [
        retry_any(retry_if_exception_type(KeyError), retry_if_exception_message(match="tmp")),
        retry_if_exception_type(KeyError) | retry_if_exception_message(match="tmp"),
    ],
    ids=["retry_any", "or"],
)
def test_retry_any(retry: tenacity.retry_base) -> None:
    decide = policy(retry=retry).decide
    assert decide(failed(1, KeyError("x"))) == 0.0
    assert decide(failed(1, ValueError("tmp failure"))) == 0.0
    assert decide(failed(1, ValueError("x"))) is None


@pytest.mark.parametrize(
    "retry",
    [
        retry_all(retry_if_exception_type(ValueError), retry_if_exception_message(match="tmp")),
        retry_if_exception_type(ValueError) & retry_if_exception_message(match="tmp"),
    ],
    ids=["retry_all", "and"],
)
def test_retry_all(retry: tenacity.retry_base) -> None:
    decide = policy(retry=retry).decide
    assert decide(failed(1, ValueError("tmp failure"))) == 0.0
    assert decide(failed(1, ValueError("x"))) is None
    assert decide(failed(1, OSError("tmp failure"))) is None


def test_retry_is_asked_before_stop_and_wait() -> None:
    asked: list[str] = []

    def retry(state: tenacity.RetryCallState) -> bool:
        asked.append("retry")
        return isinstance(state.outcome.exception(), OSError)  # type: ignore[union-attr]

    def wait(state: tenacity.RetryCallState) -> float:
        asked.append("wait")
        return 0.25

    def stop(state: tenacity.RetryCallState) -> bool:
        asked.append("stop")
        return state.attempt_number >= 2

    decide = policy(retry=retry, wait=wait, stop=stop).decide
    assert decide(failed(1, ValueError())) is None  # not retried: stop and wait not asked
    assert asked == ["retry"]
    asked.clear()
    assert decide(failed(1, OSError())) == 0.25
    assert asked == ["retry", "wait", "stop"]  # tenacity's order
    asked.clear()
    assert decide(failed(2, OSError())) is None  # stopped
    assert asked == ["retry", "wait", "stop"]


def test_try_again_is_retried_whatever_retry_says_but_stop_still_applies() -> None:
    retry = policy(retry=retry_never, stop=stop_after_attempt(2), wait=wait_fixed(0.1))
    assert retry.decide(failed(1, ValueError())) is None
    assert retry.decide(failed(1, tenacity.TryAgain())) == 0.1
    assert retry.decide(failed(2, tenacity.TryAgain())) is None


@pytest.mark.skipif("enabled" not in tenacity.Retrying().__dict__, reason="tenacity >= 8.4")
def test_a_disabled_retrying_never_retries() -> None:
    retry = policy(enabled=False)
    assert retry.decide(failed(1)) is None


# -- the state strategies see -------------------------------------------------------------


def test_strategies_see_the_failed_attempt_as_a_retry_call_state() -> None:
    states: list[tenacity.RetryCallState] = []
    values: list[dict[str, object]] = []

    def stop(state: tenacity.RetryCallState) -> bool:
        states.append(state)
        assert state.outcome is not None
        values.append(
            {
                "attempt": state.attempt_number,
                "failed": state.outcome.failed,
                "error": state.outcome.exception(),
                "start": state.start_time,
                "at": state.outcome_timestamp,
                "since": state.seconds_since_start,
                "idle": state.idle_for,
                "upcoming": state.upcoming_sleep,
            }
        )
        return False

    retrying = tenacity.Retrying(stop=stop, wait=wait_incrementing(0.5, 0.25))
    retry = from_tenacity(retrying).as_retry_policy()
    errors = [ValueError(n) for n in range(3)]
    for attempt, (error, elapsed) in enumerate(zip(errors, (0.1, 0.7, 1.6), strict=True), 1):
        retry.decide(FailedAttempt(7, attempt, error, T0, elapsed))
    expected = [  # (attempt, error, seconds since start, idle_for, upcoming_sleep)
        (1, errors[0], 0.1, 0.0, 0.5),
        (2, errors[1], 0.7, 0.5, 0.75),
        (3, errors[2], 1.6, 1.25, 1.0),
    ]
    assert values == [
        {
            "attempt": attempt,
            "failed": True,
            "error": error,
            "start": T0,
            "at": T0 + since,
            "since": pytest.approx(since),
            "idle": idle,
            "upcoming": upcoming,
        }
        for attempt, error, since, idle, upcoming in expected
    ]
    assert all(state.retry_object is retrying and state.fn is None for state in states)
    assert all(state.args == () and state.kwargs == {} for state in states)
    assert len({id(state) for state in states}) == 3  # a fresh state for every decision


def test_idle_for_is_kept_per_item_and_dropped_when_the_item_gives_up() -> None:
    seen: dict[int, list[float]] = {0: [], 1: []}

    def stop(state: tenacity.RetryCallState) -> bool:
        error = state.outcome.exception()  # type: ignore[union-attr]
        seen[error.args[0]].append(state.idle_for)  # type: ignore[union-attr]
        return state.attempt_number >= 3

    retry = from_tenacity(tenacity.Retrying(stop=stop, wait=wait_fixed(0.5))).as_retry_policy()
    assert isinstance(retry, TenacityPolicy)
    for attempt in (1, 2):
        for index in (0, 1):
            assert retry.decide(failed(attempt, ValueError(index), index=index)) == 0.5
    assert retry._idle_for == {0: 1.0, 1: 1.0}
    assert retry.decide(failed(3, ValueError(0), index=0)) is None
    assert retry._idle_for == {1: 1.0}  # item 0 gave up: its entry is gone
    assert seen == {0: [0.0, 0.5, 1.0], 1: [0.0, 0.5]}


def test_no_state_is_kept_when_only_tenacity_strategies_are_used() -> None:
    retry = from_tenacity(
        tenacity.Retrying(
            stop=stop_after_attempt(3) | stop_after_delay(60),
            wait=wait_exponential(max=2) + wait_random(0, 0.1),
            retry=retry_if_exception_type(OSError) | retry_if_exception_message(match="busy"),
            before_sleep=tenacity.before_sleep_log(logging.getLogger("test"), logging.DEBUG),
            after=tenacity.after_log(logging.getLogger("test"), logging.DEBUG),
        )
    ).as_retry_policy()
    assert isinstance(retry, TenacityPolicy)
    for index in range(50_000):
        assert retry.decide(failed(1, OSError(), index=index)) is not None
    assert retry._idle_for is None  # nothing reads idle_for: nothing is kept for 50k retrying items


def test_state_for_50k_items_is_released_as_they_give_up() -> None:
    retry = policy(stop=lambda state: state.attempt_number >= 2)  # a callable of ours: idle_for is tracked
    assert isinstance(retry, TenacityPolicy)
    for index in range(50_000):
        assert retry.decide(failed(1, index=index)) == 0.0
    assert retry._idle_for is not None
    assert len(retry._idle_for) == 50_000
    for index in range(50_000):
        assert retry.decide(failed(2, index=index)) is None
    assert retry._idle_for == {}


# -- callbacks ----------------------------------------------------------------------------


def test_before_sleep_is_called_for_each_retry_with_the_next_action() -> None:
    calls: list[tuple[int, float, float]] = []

    def before_sleep(state: tenacity.RetryCallState) -> None:
        assert state.next_action is not None
        calls.append((state.attempt_number, state.next_action.sleep, state.idle_for))

    retry = policy(stop=stop_after_attempt(3), wait=wait_incrementing(1, 1), before_sleep=before_sleep)
    assert answers(retry, range(1, 4)) == [1.0, 2.0, None]
    assert calls == [(1, 1.0, 1.0), (2, 2.0, 3.0)]  # not called when the item gives up


def test_before_sleep_log_logs_each_retry(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("pyarallel_tenacity.tests")
    retry = TenacityRetry(
        stop=stop_after_attempt(2),
        wait=wait_fixed(0.25),
        before_sleep=tenacity.before_sleep_log(logger, logging.WARNING),
    ).as_retry_policy()
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert retry.decide(failed(1, ConnectionError("reset"))) == 0.25
        assert retry.decide(failed(2, ConnectionError("reset"))) is None
    assert [record.getMessage() for record in caplog.records] == [
        "Retrying <unknown> in 0.25 seconds as it raised ConnectionError: reset."
    ]


@pytest.mark.skipif("name" not in inspect.signature(tenacity.Retrying).parameters, reason="newer tenacity")
def test_the_retrying_name_is_what_callbacks_report(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("pyarallel_tenacity.tests.name")
    before_sleep = tenacity.before_sleep_log(logger, logging.WARNING)
    retry = policy(name="fetch", wait=wait_fixed(1), before_sleep=before_sleep)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert retry.decide(failed(1, ConnectionError("reset"))) == 1.0
    assert (
        caplog.records[0].getMessage() == "Retrying fetch in 1 seconds as it raised ConnectionError: reset."
    )


def test_after_is_called_for_failures_that_retry_accepts_even_the_last() -> None:
    calls: list[int] = []
    retry = policy(
        retry=retry_if_exception_type(OSError),
        stop=stop_after_attempt(2),
        after=lambda state: calls.append(state.attempt_number),
    )
    assert retry.decide(failed(1, ValueError())) is None
    assert calls == []  # as in tenacity: after is not called for a failure that is not retried
    assert retry.decide(failed(1, OSError())) == 0.0
    assert retry.decide(failed(2, OSError())) is None
    assert calls == [1, 2]


def test_an_awaitable_answer_is_refused_rather_than_taken_for_true() -> None:
    async def never_awaited() -> bool:
        return False

    retry = policy(retry=lambda state: never_awaited())
    with pytest.raises(TypeError, match="returned an awaitable"):
        retry.decide(failed(1))


# -- the forms ----------------------------------------------------------------------------


def test_async_retrying_decides_the_same() -> None:
    retry = from_tenacity(
        tenacity.AsyncRetrying(
            stop=stop_after_attempt(3), wait=wait_exponential(), retry=retry_if_exception_type(OSError)
        )
    ).as_retry_policy()
    assert answers(retry, range(1, 4), error=OSError()) == [1, 2, None]
    assert retry.decide(failed(1, ValueError())) is None


def test_typed_spec_builds_a_fresh_policy_per_call() -> None:
    spec = TenacityRetry(
        stop=stop_after_attempt(2), wait=wait_fixed(1), retry=retry_if_exception_type(OSError)
    )
    assert isinstance(spec, RetrySpec)
    first, second = spec.as_retry_policy(), spec.as_retry_policy()
    assert first is not second
    assert isinstance(first, RetryPolicy)
    assert answers(first, range(1, 3), error=OSError()) == [1.0, None]
    assert isinstance(spec.retrying, tenacity.Retrying)
    assert "stop_after_attempt" in repr(spec)
    assert "stop_after_attempt" in repr(first)


def test_typed_spec_defaults_are_tenacitys() -> None:
    retrying = TenacityRetry().retrying
    assert retrying.stop is stop_never
    assert isinstance(retrying.wait, wait_none)
    assert isinstance(retrying.retry, retry_if_exception_type)
    assert retrying.retry.exception_types is Exception


def test_from_tenacity_keeps_the_object() -> None:
    retrying = tenacity.Retrying(stop=stop_after_attempt(2))
    assert from_tenacity(retrying).retrying is retrying


def test_the_hook_answers_for_tenacity_objects_only() -> None:
    assert isinstance(pyarallel_retry_policy(retry=tenacity.Retrying()), TenacityPolicy)
    assert isinstance(pyarallel_retry_policy(retry=tenacity.AsyncRetrying()), TenacityPolicy)
    assert pyarallel_retry_policy(retry=pyarallel.Retry()) is None
    assert pyarallel_retry_policy(retry=3) is None
    assert pyarallel_retry_policy(retry=TenacityRetry()) is None  # a RetrySpec: pyarallel builds it itself
