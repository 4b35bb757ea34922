"""What pyarallel cannot honour is refused, naming the feature, when the policy is built:
before any item runs, never silently ignored."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
import tenacity
from pyarallel_tenacity import TenacityRetry, from_tenacity
from tenacity import (
    retry_all,
    retry_any,
    retry_if_exception_type,
    retry_if_not_exception_message,
    retry_if_not_result,
    retry_if_result,
    retry_unless_exception_type,
    stop_after_attempt,
    wait_fixed,
)

import pyarallel

pytestmark = pytest.mark.timeout(30)


class MyRetryError(tenacity.RetryError):
    pass


async def async_stop(state: tenacity.RetryCallState) -> bool:
    return False


async def async_callback(state: tenacity.RetryCallState) -> None:
    return None


class AsyncWait:
    async def __call__(self, state: tenacity.RetryCallState) -> float:
        return 0.0


async def async_predicate(error: BaseException) -> bool:
    return True


# (tenacity.Retrying keyword arguments, the feature the error names)
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"sleep": lambda seconds: None}, "sleep="),
    ({"sleep": tenacity.sleep_using_event(threading.Event())}, "sleep="),
    ({"before": tenacity.before_log(logging.getLogger(), logging.INFO)}, "before="),
    ({"retry_error_callback": lambda state: None}, "retry_error_callback="),
    ({"retry_error_cls": MyRetryError}, "retry_error_cls="),
    ({"retry": retry_if_result(lambda value: value is None)}, "retry=tenacity.retry_if_result"),
    ({"retry": retry_if_not_result(bool)}, "retry=tenacity.retry_if_not_result"),
    ({"retry": retry_unless_exception_type(KeyError)}, "retry=tenacity.retry_unless_exception_type"),
    (
        {"retry": retry_if_not_exception_message(message="fatal")},
        "retry=tenacity.retry_if_not_exception_message",
    ),
    (  # inside a combination
        {"retry": retry_if_exception_type(OSError) | retry_if_result(lambda value: value is None)},
        "retry=tenacity.retry_if_result",
    ),
    (
        {"retry": retry_any(retry_if_exception_type(), retry_all(retry_if_not_result(bool)))},
        "retry=tenacity.retry_if_not_result",
    ),
    ({"stop": async_stop}, "stop=test_refusals.async_stop"),
    ({"stop": stop_after_attempt(3) | async_stop}, "stop=test_refusals.async_stop"),
    ({"wait": AsyncWait()}, "wait=test_refusals.AsyncWait"),
    ({"wait": wait_fixed(1) + AsyncWait()}, "wait=test_refusals.AsyncWait"),
    ({"retry": async_stop}, "retry=test_refusals.async_stop"),
    ({"before_sleep": async_callback}, "before_sleep=test_refusals.async_callback"),
    ({"after": async_callback}, "after=test_refusals.async_callback"),
]
IDS = [feature for _, feature in REFUSED]


@pytest.mark.parametrize(("options", "feature"), REFUSED, ids=IDS)
def test_from_tenacity_refuses_naming_the_feature(options: dict[str, Any], feature: str) -> None:
    with pytest.raises(ValueError, match=r"pyarallel cannot use tenacity\.Retrying") as refused:
        from_tenacity(tenacity.Retrying(**options))
    assert f"({feature}" in str(refused.value)


@pytest.mark.parametrize(("options", "feature"), REFUSED, ids=IDS)
def test_a_run_is_refused_before_any_item_starts(options: dict[str, Any], feature: str) -> None:
    called: list[object] = []
    with pytest.raises(ValueError, match=r"pyarallel cannot use tenacity\.Retrying") as refused:
        pyarallel.parallel_map(called.append, range(3), retry=tenacity.Retrying(**options))
    assert f"({feature}" in str(refused.value)
    assert called == []


@pytest.mark.parametrize(
    ("options", "feature"),
    [
        (options, feature)
        for options, feature in REFUSED
        if set(options) <= {"stop", "wait", "retry", "before_sleep", "after"}
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_the_typed_spec_refuses_the_same(options: dict[str, Any], feature: str) -> None:
    with pytest.raises(ValueError, match=r"pyarallel cannot use TenacityRetry\(") as refused:
        TenacityRetry(**options)
    assert f"({feature}" in str(refused.value)


def test_the_reason_and_the_alternative_are_given() -> None:
    with pytest.raises(ValueError, match="a result is a success") as refused:
        from_tenacity(tenacity.Retrying(retry=retry_if_result(bool)))
    assert "retry_if_exception_type" in str(refused.value)
    with pytest.raises(ValueError, match="retry_if_not_exception_type"):
        from_tenacity(tenacity.Retrying(retry=retry_unless_exception_type(KeyError)))
    with pytest.raises(ValueError, match="before_sleep= or after=, which are honoured"):
        from_tenacity(tenacity.Retrying(before=tenacity.before_log(logging.getLogger(), logging.INFO)))
    with pytest.raises(ValueError, match="without holding a worker"):
        from_tenacity(tenacity.Retrying(sleep=lambda seconds: None))


ASYNC_REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"sleep": lambda seconds: None}, "sleep="),
    ({"before_sleep": async_callback}, "before_sleep=test_refusals.async_callback"),
]
if hasattr(tenacity, "asyncio"):  # tenacity >= 8.3: coroutine retry strategies
    ASYNC_REFUSED += [
        (
            {"retry": tenacity.asyncio.retry_if_exception(async_predicate)},
            "retry=tenacity.asyncio.retry.retry_if_exception",
        ),
        (
            {"retry": tenacity.asyncio.retry_any(retry_if_exception_type())},
            "retry=tenacity.asyncio.retry.retry_any",
        ),
    ]


@pytest.mark.parametrize(("options", "feature"), ASYNC_REFUSED, ids=[feature for _, feature in ASYNC_REFUSED])
def test_async_retrying_refuses_what_cannot_be_awaited(options: dict[str, Any], feature: str) -> None:
    called: list[object] = []

    async def work(item: object) -> None:
        called.append(item)

    with pytest.raises(ValueError, match=r"pyarallel cannot use tenacity\.AsyncRetrying") as refused:
        asyncio.run(pyarallel.async_parallel_map(work, range(3), retry=tenacity.AsyncRetrying(**options)))
    assert f"({feature}" in str(refused.value)
    assert called == []


@pytest.mark.parametrize(
    "retrying",
    [
        tenacity.Retrying(),
        tenacity.Retrying(reraise=True),  # what pyarallel does anyway: the last attempt's own error
        tenacity.Retrying(reraise=False),
        tenacity.Retrying(retry=tenacity.retry_always | tenacity.retry_never),
        tenacity.Retrying(stop=tenacity.stop_when_event_set(threading.Event())),
        tenacity.Retrying(before_sleep=tenacity.before_sleep_nothing, after=tenacity.after_nothing),
        tenacity.Retrying(wait=tenacity.wait_exponential_jitter() + tenacity.wait_random()),
        tenacity.AsyncRetrying(),
        tenacity.AsyncRetrying(stop=stop_after_attempt(2), before_sleep=lambda state: None),
    ],
    ids=repr,
)
def test_what_can_be_honoured_is_accepted(retrying: tenacity.BaseRetrying) -> None:
    assert from_tenacity(retrying).as_retry_policy() is not None


def test_non_tenacity_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="from_tenacity"):
        from_tenacity(pyarallel.Retry())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TenacityRetry stop must be a tenacity strategy"):
        TenacityRetry(stop=3)  # type: ignore[arg-type]
