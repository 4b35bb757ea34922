"""The plugin contracts a third party builds on: typed backend capabilities checked when a
backend is built, the state a retry policy is given and the answers it may return (a
delay, give up, a pause: of the run's starts, or under a rate limit of the limiter the
attempt drew from), limiter and policy objects and plugin specs passed straight to
``rate_limit=``/``retry=``, and the bound on lost tasks."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from pyarallel import (
    Limiter,
    RateLimit,
    Retry,
    WorkerCrashedError,
    async_parallel_map,
    hookimpl,
    parallel,
    parallel_map,
)
from pyarallel._scheduling.events import RetryEvent
from pyarallel.contracts import (
    MAX_TASK_LOSSES,
    NO_CAPABILITIES,
    Backend,
    Capabilities,
    FailedAttempt,
    RateLimiter,
    RateLimitSpec,
    RetryDecision,
    RetryPolicy,
    RetrySpec,
)
from support import PoolBackend, SimpleLimiter
from test_schedule import Driver, FakeClock, ScriptedLimiter, ScriptedRetry, lost, make

# -- capabilities ------------------------------------------------------------------------


def test_capabilities_are_keyword_only_so_a_misspelling_is_an_error() -> None:
    with pytest.raises(TypeError, match="task_second"):
        Capabilities(task_second=0.1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Capabilities(0.1)  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_capabilities_refuse_a_task_duration_that_is_not_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="task_seconds"):
        Capabilities(task_seconds=bad)


def test_capabilities_flags_must_be_booleans() -> None:
    with pytest.raises(TypeError, match="queue_ahead must be True or False; got 1"):
        Capabilities(queue_ahead=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="in_caller_process"):
        Capabilities(in_caller_process="yes")  # type: ignore[arg-type]


def test_capabilities_are_frozen_values() -> None:
    caps = Capabilities(task_seconds=0.5, queue_ahead=True)
    assert caps == Capabilities(task_seconds=0.5, queue_ahead=True)
    assert caps != NO_CAPABILITIES
    assert NO_CAPABILITIES == Capabilities()
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.queue_ahead = False  # type: ignore[misc]
    assert repr(caps) == (
        "Capabilities(task_seconds=0.5, queue_ahead=True, in_caller_process=False, "
        "reports_idle_workers=False, kills_overdue_tasks=False, recycles_workers=False, "
        "synchronous=False)"
    )


class _Plugin:
    """Serves ``backend`` for executor="contract-test"."""

    def __init__(self, backend: object) -> None:
        self.backend = backend

    @hookimpl
    def pyarallel_executor_names(self) -> tuple[str, ...]:
        return ("contract-test",)

    @hookimpl
    def pyarallel_executor(self, executor: object) -> object:
        return self.backend if executor == "contract-test" else None


class _WithoutReadiness:
    """A backend of the old contract: no capabilities, no until_ready."""

    name = "old"
    capacity = 1

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        raise AssertionError("never submitted to")

    def close(self, *, abort: bool) -> None:
        pass


def test_a_backend_lacking_contract_members_is_refused_by_name(register: Callable[..., str]) -> None:
    register(_Plugin(_WithoutReadiness()))
    with pytest.raises(TypeError) as caught:
        parallel_map(abs, [1], executor="contract-test")
    message = str(caught.value)
    assert "executor='contract-test'" in message
    assert "_WithoutReadiness" in message
    assert "lacks capabilities, until_ready" in message


def test_a_backend_whose_capabilities_are_not_capabilities_is_refused(register: Callable[..., str]) -> None:
    backend = PoolBackend("contract-test", 1, "contract")
    backend.capabilities = {"task_seconds": 0.1}  # type: ignore[assignment]
    register(_Plugin(backend))
    with pytest.raises(
        TypeError, match=r"has capabilities=\{'task_seconds': 0.1\}, not a pyarallel.contracts"
    ):
        parallel_map(abs, [1], executor="contract-test")


class _InProcessButSaysRemote(PoolBackend):
    """Runs tasks in threads of this process while declaring they run elsewhere."""

    capabilities = NO_CAPABILITIES


def test_failures_arrive_as_exceptions_whatever_the_backend_declares(register: Callable[..., str]) -> None:
    register(_Plugin(_InProcessButSaysRemote("contract-test", 2, "says-remote")))

    def fail(x: int) -> int:
        raise KeyError(x)

    result = parallel_map(fail, [1, 2], executor="contract-test")
    errors = [error for _, error in result.failures()]
    assert [type(error) for error in errors] == [KeyError, KeyError]
    assert [error.args for error in errors] == [(1,), (2,)]
    # Treated as remote, the traceback travelled as text too.
    assert all("Traceback in worker process" in getattr(error, "remote_traceback", "") for error in errors)


def test_a_backend_in_the_callers_process_returns_failures_untouched(register: Callable[..., str]) -> None:
    register(_Plugin(PoolBackend("contract-test", 2, "in-process")))
    marker = ValueError("the very object")

    def fail(x: int) -> int:
        raise marker

    ((_, error),) = parallel_map(fail, [1], executor="contract-test").failures()
    assert error is marker
    assert not hasattr(marker, "remote_traceback")


def test_built_in_backends_fulfil_the_protocol() -> None:
    from pyarallel._plan import start_backend

    for name in ("thread", "process"):
        backend = start_backend(name, 1)
        try:
            assert isinstance(backend, Backend)
            assert isinstance(backend.capabilities, Capabilities)
        finally:
            backend.close(abort=False)
    assert start_backend("thread", 1).capabilities.in_caller_process
    assert not start_backend("process", 1).capabilities.in_caller_process


# -- what a retry policy is told, and what it may answer --------------------------------------


def test_the_policy_is_told_index_attempt_error_and_times() -> None:
    clock = FakeClock()
    retry = ScriptedRetry([2.0, 3.0], default=None)
    driver = Driver(make(range(2), retry=retry, capacity=2, clock=clock))
    first_tasks = driver.start(now=10.0)
    assert len(first_tasks) == 2
    failing = next(task for task in first_tasks if task.payloads == [1])
    driver.finish(failing, ([ValueError("one")], [0], None), now=10.5)
    for task in list(driver.running):
        driver.succeed(task, now=10.5)
    assert driver.start(now=11.0) == []  # waiting out the 2 s delay
    (again,) = driver.start(now=12.5)
    driver.finish(again, ([ValueError("two")], [0], None), now=13.0)
    (third,) = driver.start(now=16.0)
    driver.finish(third, ([ValueError("three")], [0], None), now=16.25)
    assert [(f.index, f.attempt, str(f.error)) for f in retry.failures] == [
        (1, 1, "one"),
        (1, 2, "two"),
        (1, 3, "three"),
    ]
    assert [f.first_started for f in retry.failures] == [10.0, 10.0, 10.0]
    assert [f.elapsed for f in retry.failures] == [0.5, 3.0, 6.25]
    # the run's attempts so far (items 0 and 1, then each retry of item 1) and the retries
    # decided before this failure
    assert [(f.run_calls, f.run_retries) for f in retry.failures] == [(2, 0), (3, 1), (4, 2)]
    assert str(driver.results[1].error) == "three"  # the last attempt's error


@pytest.mark.parametrize(("seconds", "first_started"), [(0.5, 6.5), (None, 5.0), (9.0, 5.0)])
def test_a_first_attempt_starts_when_its_task_began_to_run_not_when_it_was_queued(
    seconds: float | None, first_started: float
) -> None:
    # Submitted at 5.0, finished at 7.0 having run 0.5 s: it waited 1.5 s in the backend's
    # queue, which is no part of the attempt. Without a duration, submission time counts;
    # a duration longer than the task was out (clocks apart) changes nothing.
    retry = ScriptedRetry(default=None)
    driver = Driver(make(range(50), retry=retry, task_seconds=0.01, capacity=1))
    (block,) = driver.start(now=5.0)
    driver.finish(block, ([ValueError("x")] * len(block), list(range(len(block))), seconds), now=7.0)
    assert retry.failures
    assert {f.first_started for f in retry.failures} == {first_started}
    assert {f.elapsed for f in retry.failures} == {7.0 - first_started}


def test_a_retried_items_first_start_stays_its_first_attempts() -> None:
    retry = ScriptedRetry([0.0], default=None)
    driver = Driver(make(range(1), retry=retry, capacity=1))
    (task,) = driver.start(now=1.0)
    driver.finish(task, ([ValueError("a")], [0], 0.25), now=2.0)
    (again,) = driver.start(now=3.0)
    driver.finish(again, ([ValueError("b")], [0], 0.25), now=4.0)
    assert [(f.first_started, f.elapsed) for f in retry.failures] == [(1.75, 0.25), (1.75, 2.25)]


class PauseOnce:
    """Answers an item's first failure with ``RetryDecision(5.0, ...)`` (pausing, by
    default), then gives up."""

    def __init__(self, *, pause: bool = True, throttled: bool = False) -> None:
        self.pause = pause
        self.throttled = throttled

    def decide(self, failed: FailedAttempt) -> RetryDecision | None:
        if failed.attempt == 1:
            return RetryDecision(5.0, pause=self.pause, throttled=self.throttled)
        return None


def test_a_retry_decision_with_pause_holds_every_start_back() -> None:
    driver = Driver(make(range(4), retry=PauseOnce(), capacity=1))
    (first,) = driver.start(now=0.0)
    events = driver.finish(first, ([ValueError("429")], [0], None), now=1.0)
    assert [type(event) for event in events] == [RetryEvent]
    assert driver.start(now=1.0) == []  # item 1 is ready, but the run is paused
    assert driver.start(now=5.9) == []
    assert driver.schedule.wake_at() == 6.0
    started = driver.start(now=6.0)
    assert started  # the pause is over
    driver.run_to_end(now=6.0)
    assert sorted(driver.results) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("decision", "told"),
    [
        ({"pause": True}, [5.0]),  # the service asked for 5 s: the limiter is paused that long
        ({"pause": False, "throttled": True}, [None]),  # throttled, no wait asked
        ({"pause": False}, []),  # a plain delay says nothing about the service
    ],
)
def test_under_a_rate_limit_a_pause_goes_to_the_limiter_not_the_run(
    decision: dict[str, bool], told: list[float | None]
) -> None:
    # The limiter the attempt drew from holds what shares its budget; the run itself does
    # not stop asking it (a keyed limiter pauses only that key).
    limiter = ScriptedLimiter()
    driver = Driver(make(range(4), retry=PauseOnce(**decision), capacity=1, limiter=limiter))
    (first,) = driver.start(now=0.0)
    events = driver.finish(first, ([ValueError("429")], [0], None), now=1.0)
    assert [type(event) for event in events] == [RetryEvent]
    assert limiter.throttles == told
    assert [result.index for result in limiter.finished] == [0]  # told before throttled
    (second,) = driver.start(now=1.0)  # the limiter grants it: the run is not paused
    assert second.payloads == [1]
    driver.run_to_end(now=1.0)
    assert sorted(driver.results) == [0, 1, 2, 3]


def test_a_plain_delay_pauses_only_its_item() -> None:
    driver = Driver(make(range(3), retry=ScriptedRetry([5.0]), capacity=1))
    (first,) = driver.start(now=0.0)
    driver.finish(first, ([ValueError("x")], [0], None), now=1.0)
    (next_item,) = driver.start(now=1.0)
    assert next_item.payloads == [1]


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        ("soon", TypeError, "decide\\(\\) must return None, a number of seconds >= 0 or a RetryDecision"),
        (True, TypeError, "answered True"),
        (-1.0, ValueError, "a delay of -1.0"),
        (float("nan"), ValueError, "a delay of nan"),
    ],
)
def test_a_policy_answer_that_is_no_delay_ends_the_run_naming_the_policy(
    answer: object, error: type[Exception], match: str
) -> None:
    class Broken:
        def decide(self, failed: FailedAttempt) -> object:
            return answer

        def __repr__(self) -> str:
            return "<Broken policy>"

    def fail(x: int) -> int:
        raise ValueError(x)

    with pytest.raises(error, match=match) as caught:
        parallel_map(fail, [1, 2], retry=Broken())  # type: ignore[arg-type]
    assert "<Broken policy>" in str(caught.value)


def test_retry_decision_validates_its_fields() -> None:
    assert RetryDecision(0) == RetryDecision(0.0, pause=False)
    assert RetryDecision(0) == RetryDecision(0.0, pause=False, throttled=False)
    assert RetryDecision(1.0, pause=True) == RetryDecision(1.0, pause=True, throttled=True)
    assert RetryDecision(1.0, pause=True).throttled  # a pause counts as a throttle
    assert not RetryDecision(1.0, throttled=True).pause
    with pytest.raises(ValueError, match="RetryDecision delay"):
        RetryDecision(-0.5)
    with pytest.raises(TypeError, match="pause must be True or False"):
        RetryDecision(1.0, pause=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="throttled must be True or False"):
        RetryDecision(1.0, throttled="yes")  # type: ignore[arg-type]


# -- objects passed straight through ---------------------------------------------------------


class ElapsedBudget:
    """A retry policy of a user's own: retry every failure while the item's first attempt
    started less than ``seconds`` ago; records what it was told."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.told: list[FailedAttempt] = []
        self._lock = threading.Lock()

    def decide(self, failed: FailedAttempt) -> float | None:
        with self._lock:
            self.told.append(failed)
        return 0.01 if failed.elapsed < self.seconds else None


def _fails_for_the_first_two(x: int) -> int:
    if x < 2:
        raise ConnectionError(x)
    return x


@pytest.fixture(params=["thread", "process", "ThreadPoolExecutor", "ProcessPoolExecutor"])
def any_executor(request: pytest.FixtureRequest) -> Iterator[object]:
    """Each kind of executor a policy may serve: the built-ins and a caller's pools."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if request.param in ("thread", "process"):
        yield request.param
        return
    if request.param == "ThreadPoolExecutor":
        with ThreadPoolExecutor(2) as threads:
            yield threads
        return
    import multiprocessing

    # spawn: forking a process that runs threads may deadlock the child.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as processes:
        yield processes


@pytest.mark.timeout(60)
def test_a_retry_policy_object_is_used_as_it_is(any_executor: object) -> None:
    # Two failing items among 300 tiny ones: the first attempts travel grouped, the
    # retries alone; the policy is told the same state wherever the items run.
    policy = ElapsedBudget(0.2)
    started = time.monotonic()
    result = parallel_map(
        _fails_for_the_first_two, range(300), retry=policy, workers=2, executor=any_executor
    )
    assert [(index, type(error)) for index, error in result.failures()] == [
        (0, ConnectionError),
        (1, ConnectionError),
    ]
    assert [value for _, value in result.successes()] == list(range(2, 300))
    by_item = {index: [f for f in policy.told if f.index == index] for index in (0, 1)}
    assert {f.index for f in policy.told} == {0, 1}
    for told in by_item.values():
        assert len(told) >= 2  # retried until the budget ran out
        assert [f.attempt for f in told] == list(range(1, len(told) + 1))
        assert told[-1].elapsed >= 0.2 > told[-2].elapsed
        assert len({f.first_started for f in told}) == 1
        assert started <= told[0].first_started <= told[-1].first_started + told[-1].elapsed
    # The run's counts as the policy saw them, in the order it was asked: the retries it had
    # decided (it retries while elapsed < 0.2 s), and the attempts started so far, never
    # more than every first attempt plus every retry decided.
    for k, failed in enumerate(policy.told):
        assert failed.run_retries == sum(earlier.elapsed < 0.2 for earlier in policy.told[:k])
        assert failed.run_retries < failed.run_calls <= 300 + failed.run_retries
    calls = [failed.run_calls for failed in policy.told]
    assert calls == sorted(calls)


def test_the_same_policy_object_serves_the_async_api() -> None:
    import asyncio

    policy = ElapsedBudget(0.05)

    async def always_fails(x: int) -> int:
        raise ConnectionError(x)

    result = asyncio.run(async_parallel_map(always_fails, [7], retry=policy))
    assert not result.ok
    assert len(policy.told) >= 2
    assert {f.index for f in policy.told} == {0}


class OneAtATime(SimpleLimiter):
    """A rate limiter of a user's own: grants a call only every ``interval`` seconds,
    across every call it is given to."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.granted: list[float] = []
        self._lock = threading.Lock()
        self._next = 0.0

    def try_acquire(self) -> float:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                return self._next - now
            self._next = now + self.interval
            self.granted.append(now)
            return 0.0


def test_a_rate_limiter_object_is_shared_by_every_call_given_it() -> None:
    limiter = OneAtATime(0.02)
    results: list[list[int]] = []

    def run() -> None:
        results.append(parallel_map(abs, range(10), rate_limit=limiter, workers=4).values())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [list(range(10))] * 2
    assert len(limiter.granted) == 20  # one budget for both calls
    assert len(limiter.requested) == 20  # one reservation per attempt, none cancelled
    assert limiter.cancelled == []
    gaps = [b - a for a, b in zip(limiter.granted, limiter.granted[1:], strict=False)]
    assert min(gaps) >= 0.02 * 0.9


@dataclasses.dataclass(frozen=True)
class GiveUpAfter:
    """A plugin-style retry spec: builds a fresh policy for each call."""

    attempts: int

    def as_retry_policy(self) -> RetryPolicy:
        return _CountingPolicy(self.attempts)


class _CountingPolicy:
    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def decide(self, failed: FailedAttempt) -> float | None:
        return 0.0 if failed.attempt < self.attempts else None


@dataclasses.dataclass(frozen=True)
class Interval:
    """A plugin-style rate-limit spec."""

    seconds: float

    def as_rate_limiter(self) -> RateLimiter:
        return OneAtATime(self.seconds)


def test_plugin_specs_build_their_limiter_and_policy_per_call() -> None:
    assert isinstance(GiveUpAfter(2), RetrySpec)
    assert isinstance(Interval(0.01), RateLimitSpec)
    calls: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(x: int) -> int:
        with lock:
            calls[x] = calls.get(x, 0) + 1
            count = calls[x]
        if count < 3:
            raise OSError(x)
        return x

    result = parallel_map(flaky, [1, 2], retry=GiveUpAfter(3), rate_limit=Interval(0.01))
    assert result.values() == [1, 2]
    assert calls == {1: 3, 2: 3}
    failing = parallel_map(lambda x: 1 // 0, [1], retry=GiveUpAfter(2))
    assert isinstance(failing.failures()[0][1], ZeroDivisionError)


def test_a_decorator_accepts_policy_and_limiter_objects_as_defaults() -> None:
    policy = ElapsedBudget(0.0)  # gives up at once
    limiter = OneAtATime(0.001)

    @parallel(retry=policy, rate_limit=limiter)
    def square(x: int) -> int:
        return x * x

    assert square.map([1, 2, 3]).values() == [1, 4, 9]
    assert len(limiter.granted) == 3


def test_a_spec_whose_product_breaks_the_contract_is_refused() -> None:
    class BadSpec:
        def as_retry_policy(self) -> object:
            return "not a policy"

    with pytest.raises(TypeError, match=r"not fulfil pyarallel\.contracts\.RetryPolicy: it has no decide"):
        parallel_map(abs, [1], retry=BadSpec())  # type: ignore[arg-type]


class _OldContractLimiter:
    """A limiter of the contract before reservations: ``try_acquire()``, no ``request()``."""

    def try_acquire(self) -> float:
        return 0.0


def test_a_limiter_without_request_is_refused() -> None:
    class OldSpec:
        def as_rate_limiter(self) -> object:
            return _OldContractLimiter()

    assert not isinstance(_OldContractLimiter(), RateLimiter)
    with pytest.raises(TypeError, match="rate_limit must be a RateLimit"):
        parallel_map(abs, [1], rate_limit=_OldContractLimiter())  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"not fulfil pyarallel\.contracts\.RateLimiter: it has no request\(\)"
    ):
        parallel_map(abs, [1], rate_limit=OldSpec())  # type: ignore[arg-type]


def test_the_built_in_limiter_fulfils_the_protocol_and_serves_rate_limit() -> None:
    from pyarallel._plan import _resolve_rate_limiter

    shared = Limiter(RateLimit(10))
    assert isinstance(shared, RateLimiter)
    assert _resolve_rate_limiter(shared) is shared  # an object passes through: its budget is shared
    own = _resolve_rate_limiter(RateLimit(10))
    assert isinstance(own, Limiter)  # a RateLimit gets a private one per call
    assert own is not _resolve_rate_limiter(RateLimit(10))
    reservation = own.request("item")
    assert reservation.lane is None  # no keys
    assert reservation.try_acquire() == 0.0


def test_retry_still_takes_the_built_in_spec() -> None:
    assert parallel_map(abs, [-1], retry=Retry(attempts=2)).values() == [1]


# -- lost tasks --------------------------------------------------------------------------------


def test_an_item_lost_again_and_again_without_a_verdict_fails_after_the_bound() -> None:
    # The backend keeps reporting the task lost while its worker was alive (crashed=False):
    # no verdict, so the item runs again, uncounted, up to MAX_TASK_LOSSES times.
    retry = ScriptedRetry(default=None)
    driver = Driver(make(range(2), capacity=1, retry=retry))
    (first,) = driver.start()
    driver.finish(first, lost(started=1))  # a suspect: it was running
    losses = 1
    for _ in range(20):
        tasks = driver.start()
        if not tasks or tasks[0].payloads != [0]:
            break
        driver.finish(tasks[0], lost(started=1, crashed=False))
        losses += 1
        if 0 in driver.results:
            break
    assert 0 in driver.results
    error = driver.results[0].error
    assert isinstance(error, WorkerCrashedError)
    assert f"lost with its worker {MAX_TASK_LOSSES + 1} times" in str(error)
    assert losses == MAX_TASK_LOSSES + 1
    driver.run_to_end()
    assert sorted(driver.results) == [0, 1]
    assert driver.results[1].ok


def test_items_of_a_pool_taken_down_by_another_item_are_never_failed_for_it() -> None:
    # crashed=False: their worker was alive; however often it happens, they run again.
    driver = Driver(make(range(1), capacity=1))
    for _ in range(3 * MAX_TASK_LOSSES):
        (task,) = driver.start()
        driver.finish(task, lost(started=0))  # lost before it started
        driver.schedule._quarantine.progress()  # other items of the run finish meanwhile
    driver.run_to_end()
    assert driver.results[0].ok


# -- a backend whose readiness tells an idle worker from a busy one ----------------------------


@pytest.mark.parametrize(("paced_queue_ahead", "in_flight"), [(False, 2), (True, 4)])
def test_under_a_rate_limit_only_a_backend_reporting_idle_workers_gets_tasks_queued_ahead(
    paced_queue_ahead: bool, in_flight: int
) -> None:
    from pyarallel._scheduling import Schedule

    class Unlimited(SimpleLimiter):
        def try_acquire(self) -> float:
            return 0.0

    schedule = Schedule(
        iter(range(20)),
        total=20,
        window=None,
        capacity=2,
        limiter=Unlimited(),
        retry=None,
        queue_ahead=True,
        paced_queue_ahead=paced_queue_ahead,
    )
    started = []
    while tasks := schedule.next_tasks(0.0):
        started.extend(tasks)
    assert len(started) == in_flight


def test_capabilities_reports_idle_workers_is_a_flag() -> None:
    assert not NO_CAPABILITIES.reports_idle_workers
    assert Capabilities(queue_ahead=True, reports_idle_workers=True).reports_idle_workers
    with pytest.raises(TypeError, match="reports_idle_workers must be True or False"):
        Capabilities(reports_idle_workers=None)  # type: ignore[arg-type]


class PauseOnFirstFailure:
    """Answers the first failure of the run with a pause of the whole run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.paused_at: float | None = None

    def decide(self, failed: FailedAttempt) -> RetryDecision | None:
        if self.paused_at is None:
            self.paused_at = time.monotonic()
            return RetryDecision(self.seconds, pause=True)
        return None


def _pausing_run_items() -> tuple[Callable[[int], int], list[tuple[int, float]], threading.Lock]:
    starts: list[tuple[int, float]] = []
    lock = threading.Lock()
    failed_once = threading.Event()

    def work(x: int) -> int:
        with lock:
            starts.append((x, time.monotonic()))
        if x == 0 and not failed_once.is_set():
            failed_once.set()
            raise ConnectionError("429: slow down")
        return x

    return work, starts, lock


@pytest.mark.timeout(60)
def test_a_pause_decision_holds_every_start_of_a_real_run_back() -> None:
    policy = PauseOnFirstFailure(0.3)
    work, starts, _ = _pausing_run_items()
    result = parallel_map(work, range(6), workers=1, retry=policy)
    assert result.values() == list(range(6))
    assert policy.paused_at is not None
    # After item 0's failed attempt, only the task already queued in the pool (one per
    # worker ahead: item 1) may start during the pause; nothing is submitted during it.
    during = [x for x, at in starts[1:] if at < policy.paused_at + 0.3 * 0.95]
    assert during in ([], [1])
    assert len(starts) == 7


@pytest.mark.timeout(60)
def test_a_pause_decision_holds_the_async_run_back_too() -> None:
    import asyncio

    policy = PauseOnFirstFailure(0.3)
    work, starts, _ = _pausing_run_items()

    async def awork(x: int) -> int:
        return work(x)

    result = asyncio.run(async_parallel_map(awork, range(6), concurrency=1, retry=policy))
    assert result.values() == list(range(6))
    assert policy.paused_at is not None
    assert min(at for _, at in starts[1:]) >= policy.paused_at + 0.3 * 0.95


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shared", [False, True], ids=["RateLimit", "Limiter"])
def test_under_a_rate_limit_a_pause_decision_holds_the_limiters_starts_back(shared: bool) -> None:
    # The pause goes to the limiter (``reservation.throttled``), which grants nothing before
    # it is over: the run's later starts wait, whether the limiter is the call's own or a
    # shared ``Limiter``.
    policy = PauseOnFirstFailure(0.3)
    work, starts, _ = _pausing_run_items()
    rate_limit: RateLimit | Limiter = Limiter(RateLimit(1000)) if shared else RateLimit(1000)
    result = parallel_map(work, range(6), workers=1, retry=policy, rate_limit=rate_limit)
    assert result.values() == list(range(6))
    assert policy.paused_at is not None
    # Only an attempt granted before the failure (one queued for the worker: item 1) may
    # start during the pause.
    during = [x for x, at in starts[1:] if at < policy.paused_at + 0.3 * 0.95]
    assert during in ([], [1])
    assert len(starts) == 7
