"""The pure scheduler (``pyarallel._scheduling``), driven directly: no pool, no threads, no
sleeps. A scripted driver submits what ``next_tasks`` returns and finishes each task with a
chosen outcome (a ``TaskReport``, a shorter report for a task that stopped early, or an
exception for a whole-task failure); time is a plain float for ``now`` and a fake clock for
the input window's own reads; the rate limiter and the retry policy are scripted fakes that
follow the ``contracts`` protocols.

Payloads are the items' input indices, a successful item's value is ``10 * index`` and a
failed item's exception is an ``ItemFailure`` naming its index, so every result can be
checked against the item it belongs to.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyarallel._errors import ItemTimeoutError, SerializationError, TaskLostError, WorkerCrashedError
from pyarallel._result import ItemResult, Successes, item_results
from pyarallel._scheduling import Event, LostEvent, Notice, RetryEvent, Schedule, Task, WaitEvent
from pyarallel._scheduling.chunk_sizer import ChunkSizer
from pyarallel._scheduling.schedule import MAX_BARREN_ROUNDS
from pyarallel._tasks import ChunkClaim
from pyarallel.contracts import FailedAttempt, RateLimiter, RetryDecision, RetryPolicy
from support import SimpleLimiter

# -- fakes ---------------------------------------------------------------------------------


class FakeClock:
    """A clock the test moves by hand (``now``); every read also advances it by ``step``."""

    def __init__(self, now: float = 0.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        self.reads += 1
        return value


class ScriptedLimiter(SimpleLimiter):
    """Answers each reservation's ``try_acquire`` from a script of waits (0.0 grants), then
    grants forever."""

    def __init__(self, waits: Iterable[float] = ()) -> None:
        super().__init__()
        self._waits = deque(waits)
        self.calls = 0
        self.granted = 0

    def try_acquire(self) -> float:
        self.calls += 1
        wait = self._waits.popleft() if self._waits else 0.0
        if wait <= 0:
            self.granted += 1
            return 0.0
        return wait


class IntervalLimiter(SimpleLimiter):
    """One token every ``interval`` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, interval: float) -> None:
        super().__init__()
        self._clock = clock
        self._interval = interval
        self._next_at = 0.0
        self.granted_at: list[float] = []

    def try_acquire(self) -> float:
        now = self._clock.now
        if now >= self._next_at:
            self._next_at = now + self._interval
            self.granted_at.append(now)
            return 0.0
        return self._next_at - now


class ScriptedRetry:
    """Returns scripted delays (then ``default``) and records every question asked."""

    def __init__(self, delays: Iterable[float | None] = (), default: float | None = None) -> None:
        self._delays = deque(delays)
        self._default = default
        self.asked: list[tuple[int, BaseException]] = []
        self.failures: list[FailedAttempt] = []

    def decide(self, failed: FailedAttempt) -> float | None:
        self.asked.append((failed.attempt, failed.error))
        self.failures.append(failed)
        return self._delays.popleft() if self._delays else self._default

    @property
    def attempts(self) -> list[int]:
        return [attempt for attempt, _ in self.asked]


class RetryUpTo:
    """Retries after ``delay`` until ``max_attempts`` attempts have failed; records questions."""

    def __init__(self, max_attempts: int, delay: float) -> None:
        self._max_attempts = max_attempts
        self._delay = delay
        self.asked: list[tuple[int, BaseException]] = []

    def decide(self, failed: FailedAttempt) -> float | None:
        self.asked.append((failed.attempt, failed.error))
        return self._delay if failed.attempt < self._max_attempts else None


class ItemFailure(Exception):
    """What the fake task function raises for item ``index``."""

    def __init__(self, index: int) -> None:
        super().__init__(f"item {index} failed")
        self.index = index


def test_the_fakes_follow_the_protocols() -> None:
    clock = FakeClock()
    assert isinstance(ScriptedLimiter(), RateLimiter)
    assert isinstance(IntervalLimiter(clock, 1.0), RateLimiter)
    assert isinstance(ScriptedRetry(), RetryPolicy)
    assert isinstance(RetryUpTo(2, 0.0), RetryPolicy)


# -- the scripted driver -------------------------------------------------------------------

Report = tuple[list[Any], list[int], float | None]
Outcome = Report | BaseException


def value_of(payload: int) -> int:
    return 10 * payload


def report(
    task: Task, *, fail: Iterable[int] = (), stop: int | None = None, seconds: float | None = None
) -> Report:
    """What the task function would return for ``task``: items at positions ``fail``
    raise, the rest return ``value_of(payload)``; with ``stop`` only the first ``stop``
    items ran (the task stopped early)."""
    payloads = task.payloads if stop is None else task.payloads[:stop]
    failed = sorted(position for position in set(fail) if position < len(payloads))
    values = [
        ItemFailure(payload) if position in failed else value_of(payload)
        for position, payload in enumerate(payloads)
    ]
    return values, failed, seconds


def lost(started: int | None, *, crashed: bool | None = None, finished: bool = False) -> TaskLostError:
    return TaskLostError("the worker went away", started=started, crashed=crashed, finished=finished)


class Driver:
    """Submits what the schedule asks for and finishes tasks as scripted, recording every
    final result (asserting that no item finishes twice) and every retry."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.running: list[Task] = []
        self.submitted: list[Task] = []
        self.results: dict[int, ItemResult[Any]] = {}
        self.retries: list[RetryEvent] = []
        self.notices: list[Notice] = []  # lost workers and waits, for observers
        self.most_open = 0  # the most items taken and not finished, seen after a start

    def start(self, now: float = 0.0) -> list[Task]:
        _follow(self.schedule, now)
        tasks = self.schedule.next_tasks(now)
        self.most_open = max(self.most_open, self.schedule.seen - self.schedule.done)
        self.running.extend(tasks)
        self.submitted.extend(tasks)
        return tasks

    def finish(self, task: Task, outcome: Outcome, now: float = 0.0) -> list[Event]:
        self.running.remove(task)
        if isinstance(outcome, BaseException):
            events = self.schedule.finish_task(task, outcome, [], now)
        else:
            values, failed, seconds = outcome
            events = self.schedule.finish_task(task, values, failed, now, seconds)
        self.record(events)
        # Notices (lost workers, waits) are in self.notices, not returned.
        return [event for event in events if not isinstance(event, LostEvent | WaitEvent)]

    def succeed(self, task: Task, now: float = 0.0, seconds: float | None = None) -> list[Event]:
        return self.finish(task, report(task, seconds=seconds), now)

    def record(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, RetryEvent):
                self.retries.append(event)
                continue
            if isinstance(event, LostEvent | WaitEvent):
                self.notices.append(event)
                continue
            for result in item_results(event):
                assert result.index not in self.results, f"item {result.index} finished twice"
                self.results[result.index] = result

    def run_to_end(
        self,
        outcome: Callable[[Task], Outcome] = report,
        *,
        now: float = 0.0,
        step: float = 0.0,
        max_steps: int = 10_000,
    ) -> float:
        """Finish the oldest running task with ``outcome(task)`` until the schedule is
        finished; with nothing running, jump to ``wake_at()``. Returns the final time."""
        schedule = self.schedule
        for _ in range(max_steps):
            self.record(schedule.reclaim_stalled(now))
            self.start(now)
            if schedule.finished:
                return now
            if self.running:
                self.finish(self.running[0], outcome(self.running[0]), now)
                now += step
            else:
                wake = schedule.wake_at()
                assert wake is not None, "nothing running, nothing to wait for, and not finished"
                now = max(now, wake)
        raise AssertionError(f"the run did not finish within {max_steps} steps")

    def failed(self) -> list[int]:
        return sorted(index for index, result in self.results.items() if not result.ok)


def make(
    items: Iterable[Any] | Iterator[Any] | None,
    *,
    total: int | None = None,
    window: int | None = None,
    capacity: int = 1,
    limiter: Any = None,
    retry: Any = None,
    task_seconds: float | None = None,
    queue_ahead: bool = False,
    reclaim: bool = False,
    clock: Callable[[], float] | None = None,
    deadline: float | None = None,
) -> Schedule:
    """A ``Schedule`` with this file's defaults: one slot, nothing queued ahead (unlike
    ``Schedule``'s own default), no window, no limit, no retries, no chunking."""
    source = None if items is None else iter(items)
    following = DriverClock()
    schedule = Schedule(
        source,
        total=total,
        window=window,
        capacity=capacity,
        limiter=limiter,
        retry=retry,
        task_seconds=task_seconds,
        queue_ahead=queue_ahead,
        reclaim=reclaim,
        clock=clock or following,
        deadline=deadline,
    )
    if clock is None:
        _DRIVER_CLOCKS[schedule] = following
    return schedule


class DriverClock(FakeClock):
    """The clock of a schedule made without one: it reads the time the test last gave
    ``Driver.start`` (when a limiter answered, for instance)."""


_DRIVER_CLOCKS: weakref.WeakKeyDictionary[Schedule, DriverClock] = weakref.WeakKeyDictionary()


def _follow(schedule: Schedule, now: float) -> None:
    clock = _DRIVER_CLOCKS.get(schedule)
    if clock is not None:
        clock.now = now


def chunked(n: int, *, capacity: int = 1, retry: Any = None, reclaim: bool = False) -> Driver:
    """A chunking schedule over ``range(n)`` (unsized, nothing queued ahead) whose first
    tasks (items ``0 .. capacity - 1``, one each, as chunking always starts) have finished
    with a tiny measured time, so the next task is one block of every item left."""
    schedule = make(range(n), capacity=capacity, retry=retry, task_seconds=0.01, reclaim=reclaim)
    driver = Driver(schedule)
    first = driver.start()
    assert [list(task.indices()) for task in first] == [[i] for i in range(capacity)]
    for task in first:
        driver.succeed(task, seconds=1e-6)
    return driver


def indices(task: Task) -> list[int]:
    return list(task.indices())


# -- 1. admission and the window -----------------------------------------------------------


def test_a_simple_run_finishes_every_item_once_with_its_value() -> None:
    schedule = make(range(7), total=7, capacity=2, queue_ahead=True)
    driver = Driver(schedule)
    driver.run_to_end()
    assert sorted(driver.results) == list(range(7))
    assert all(driver.results[i] == ItemResult.success(i, 10 * i) for i in range(7))
    assert (schedule.seen, schedule.done, schedule.succeeded, schedule.retries) == (7, 7, 7, 0)
    assert schedule.finished


def test_without_a_window_queue_ahead_fills_twice_the_capacity() -> None:
    driver = Driver(make(range(10), capacity=3, queue_ahead=True))
    assert [indices(task) for task in driver.start()] == [[i] for i in range(6)]
    assert driver.start() == []  # full: nothing more until a task finishes


def test_the_window_bounds_the_items_open_at_once() -> None:
    schedule = make(range(20), window=3, capacity=4, queue_ahead=True)
    driver = Driver(schedule)
    assert len(driver.start()) == 3  # the window, not the 8 free slots, is the bound
    assert schedule.seen == 3
    driver.succeed(driver.running[0])
    assert [indices(task) for task in driver.start()] == [[3]]
    assert schedule.seen - schedule.done == 3


def test_the_window_holds_over_a_whole_run_with_failures_and_retries() -> None:
    schedule = make(range(30), window=4, capacity=3, queue_ahead=True, retry=RetryUpTo(3, 0.5))
    driver = Driver(schedule)
    driver.run_to_end(lambda task: report(task, fail=[0] if indices(task)[0] % 3 == 0 else []), step=0.1)
    assert driver.most_open == 4
    assert sorted(driver.results) == list(range(30))
    assert driver.failed() == list(range(0, 30, 3))


def test_finished_only_once_the_input_is_exhausted_and_every_item_is_done() -> None:
    schedule = make(range(2), capacity=3)  # a free slot: the third read finds the end
    driver = Driver(schedule)
    first, second = driver.start()
    assert not schedule.finished  # the input's end has been seen, but two items are open
    driver.succeed(first)
    assert not schedule.finished
    driver.succeed(second)
    assert schedule.finished
    assert (schedule.seen, schedule.done, schedule.succeeded) == (2, 2, 2)


def test_the_end_of_the_input_is_only_known_after_reading_past_it() -> None:
    # One slot: items are read one at a time, so the input's end is seen on the next read.
    schedule = make([5], capacity=1)
    driver = Driver(schedule)
    (task,) = driver.start()
    driver.succeed(task)
    assert not schedule.finished
    assert driver.start() == []
    assert schedule.finished


def test_an_empty_input_is_finished_after_the_first_call() -> None:
    schedule = make([], total=0, capacity=2)
    assert Driver(schedule).start() == []
    assert schedule.finished
    assert (schedule.seen, schedule.done) == (0, 0)


def test_a_driver_fed_schedule_asks_for_input_while_it_has_room() -> None:
    schedule = make(None, window=2, capacity=4)
    driver = Driver(schedule)
    assert driver.start() == []  # nothing admitted yet
    assert schedule.needs_input()
    schedule.admit("a")
    assert not schedule.needs_input()  # an item is ready: start it first
    (a,) = driver.start()
    assert (a.payloads, indices(a)) == (["a"], [0])
    assert schedule.needs_input()
    schedule.admit("b")
    (b,) = driver.start()
    assert indices(b) == [1]
    assert not schedule.needs_input()  # the window (2) is full
    driver.finish(a, (["A"], [], None))
    assert schedule.needs_input()
    schedule.close_input()
    assert not schedule.needs_input()
    assert not schedule.finished  # b is still open
    driver.finish(b, (["B"], [], None))
    assert schedule.finished
    assert driver.results == {0: ItemResult.success(0, "A"), 1: ItemResult.success(1, "B")}
    assert (schedule.seen, schedule.done, schedule.succeeded) == (2, 2, 2)


def test_a_driver_fed_schedule_stops_asking_when_every_slot_is_taken() -> None:
    schedule = make(None, capacity=2)  # no window, two slots, nothing queued ahead
    driver = Driver(schedule)
    for payload in "ab":
        assert schedule.needs_input()
        schedule.admit(payload)
        driver.start()
    assert not schedule.needs_input()
    driver.finish(driver.running[0], (["A"], [], None))
    assert schedule.needs_input()


# -- 2. pacing -----------------------------------------------------------------------------


def test_under_a_limit_nothing_is_queued_ahead() -> None:
    schedule = make(range(10), capacity=2, queue_ahead=True, limiter=ScriptedLimiter())
    assert schedule.paced
    assert schedule._max_in_flight == 2
    assert len(Driver(schedule).start()) == 2
    unlimited = make(range(10), capacity=2, queue_ahead=True)
    assert unlimited._max_in_flight == 4


def test_under_a_limit_every_task_carries_one_item_even_with_chunking() -> None:
    limiter = ScriptedLimiter()
    schedule = make(range(12), capacity=2, limiter=limiter, task_seconds=0.01)
    driver = Driver(schedule)
    driver.run_to_end(lambda task: report(task, seconds=1e-6))
    assert all(len(task) == 1 for task in driver.submitted)
    assert len(driver.submitted) == 12 == limiter.granted
    # one reservation per item, each told how its attempt ended; none given up
    assert limiter.requested == list(range(12))
    assert sorted(result.index for result in limiter.finished) == list(range(12))
    assert limiter.cancelled == []


def test_a_refused_token_says_when_to_ask_again() -> None:
    limiter = ScriptedLimiter([0.0, 0.25, 0.05])
    schedule = make(range(3), capacity=3, limiter=limiter)
    driver = Driver(schedule)
    assert [indices(task) for task in driver.start(1.0)] == [[0]]
    assert schedule.token_due == 1.25
    assert schedule.wake_at() == 1.25
    assert driver.start(1.2) == []  # too early: the limiter is not asked before it said
    assert limiter.calls == 2
    assert schedule.token_due == pytest.approx(1.25)
    assert driver.start(1.25) == []  # asked when it said: 0.05 s more
    assert limiter.calls == 3
    assert schedule.token_due == pytest.approx(1.30)
    assert schedule.wake_at() == pytest.approx(1.30)
    assert [indices(task) for task in driver.start(1.30)] == [[1], [2]]
    assert schedule.token_due is None
    assert schedule.wake_at() is None
    assert limiter.requested == [0, 1, 2]  # one reservation per attempt


def test_a_wait_for_the_rate_limiter_is_reported_once_it_ends_with_its_length() -> None:
    limiter = ScriptedLimiter([0.0, 0.25, 0.05])
    schedule = make(range(3), capacity=3, limiter=limiter)
    driver = Driver(schedule)
    driver.start(1.0)  # item 0 starts; item 1 is refused: a free worker waits from 1.0
    driver.start(1.25)  # refused again: the same wait goes on
    assert schedule.take_events() == []
    driver.start(1.30)
    (event,) = schedule.take_events()
    assert isinstance(event, WaitEvent)
    assert (event.reason, event.seconds) == ("rate_limit", pytest.approx(0.30))


class PausingRetry:
    """Retries every failure after ``delay``, pausing the whole run as long."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def decide(self, failed: FailedAttempt) -> RetryDecision:
        return RetryDecision(self.delay, pause=True)


def test_a_pause_is_reported_for_the_time_it_adds() -> None:
    schedule = make(range(3), capacity=3, retry=PausingRetry(2.0))
    driver = Driver(schedule)
    first, second, _ = driver.start(0.0)
    driver.finish(first, report(first, fail=[0]), now=1.0)  # paused until 3.0
    driver.finish(second, report(second, fail=[0]), now=2.0)  # until 4.0: one more second
    events = schedule.take_events()
    pauses = [(event.reason, event.seconds) for event in events if isinstance(event, WaitEvent)]
    assert pauses == [("pause", 2.0), ("pause", 1.0)]


def test_a_lost_task_is_announced_with_all_its_items_before_what_became_of_them() -> None:
    driver = chunked(9, retry=ScriptedRetry(default=None))
    (block,) = driver.start()  # items 1..8
    loss = lost(started=3, crashed=True)
    driver.finish(block, loss)
    assert [(event.indexes, event.error) for event in driver.notices] == [((1, 2, 3, 4, 5, 6, 7, 8), loss)]


def test_no_token_is_drawn_once_the_input_is_exhausted() -> None:
    limiter = ScriptedLimiter()
    schedule = make(range(2), capacity=4, limiter=limiter)
    driver = Driver(schedule)
    assert len(driver.start()) == 2
    assert limiter.calls == 2
    assert driver.start() == []
    assert limiter.calls == 2


def test_no_token_is_drawn_while_the_window_is_full() -> None:
    limiter = ScriptedLimiter()
    schedule = make(range(10), window=1, capacity=4, limiter=limiter)
    driver = Driver(schedule)
    assert len(driver.start()) == 1
    assert driver.start() == []
    assert limiter.calls == 1


def test_every_attempt_draws_a_token_retries_included() -> None:
    clock = FakeClock()
    limiter = IntervalLimiter(clock, 0.5)
    retry = ScriptedRetry([0.0, 0.0])  # the first two failures are retried at once
    schedule = make(range(4), capacity=2, limiter=limiter, retry=retry)
    driver = Driver(schedule)
    first_attempt: set[int] = set()
    started_when_failed: list[int] = []  # attempts submitted so far, at each failure

    def outcome(task: Task) -> Report:
        (index,) = indices(task)
        if index in (1, 2) and index not in first_attempt:
            first_attempt.add(index)
            started_when_failed.append(len(driver.submitted))
            return report(task, fail=[0])
        return report(task)

    now = 0.0
    for _ in range(100):  # the run_to_end loop, but reading the limiter's clock
        clock.now = now
        driver.start(now)
        if schedule.finished:
            break
        if driver.running:
            driver.finish(driver.running[0], outcome(driver.running[0]), now)
        else:
            wake = schedule.wake_at()
            assert wake is not None
            now = wake
    assert schedule.finished
    assert len(driver.submitted) == 6 == len(limiter.granted_at)  # 4 items + 2 retries
    assert len(limiter.requested) == 6  # a new reservation for every attempt
    assert [result.index for result in limiter.finished if not result.ok] == [1, 2]
    assert limiter.throttles == []  # plain delays: nothing said the service throttled
    gaps = [later - earlier for earlier, later in zip(limiter.granted_at, limiter.granted_at[1:])]
    assert all(gap >= 0.5 for gap in gaps)
    assert [event.index for event in driver.retries] == [1, 2]
    assert driver.failed() == []
    # The policy is told the run's attempts started so far and the retries decided before.
    assert [(f.index, f.run_calls, f.run_retries) for f in retry.failures] == [
        (1, started_when_failed[0], 0),
        (2, started_when_failed[1], 1),
    ]
    assert started_when_failed == [2, 3]  # one token every 0.5 s: items 0 and 1, then item 2


# -- 3. retries and backoff ----------------------------------------------------------------


def test_a_failed_item_waits_out_its_retry_delay() -> None:
    retry = ScriptedRetry([2.0])  # then gives up
    schedule = make(range(1), capacity=1, retry=retry)
    driver = Driver(schedule)
    (task,) = driver.start(0.0)
    values, _failed, _ = outcome = report(task, fail=[0])
    events = driver.finish(task, outcome, 1.0)
    assert events == [RetryEvent(0, 1, values[0], 2.0)]
    assert schedule.retries == 1
    assert schedule.done == 0
    assert schedule.wake_at() == 3.0
    assert driver.start(2.999) == []
    (again,) = driver.start(3.0)
    assert indices(again) == [0]
    (item,) = again.items()
    assert item.attempts == 2
    assert item.last_error is values[0]  # kept while it waits and runs again
    second, _, _ = second_outcome = report(again, fail=[0])
    (result,) = driver.finish(again, second_outcome, 4.0)
    assert result == ItemResult.failure(0, second[0])
    assert retry.attempts == [1, 2]
    assert (schedule.done, schedule.succeeded, schedule.retries) == (1, 0, 1)
    assert schedule.wake_at() is None
    driver.start(4.0)
    assert schedule.finished


def test_items_waiting_out_a_delay_leave_their_slot_to_others() -> None:
    schedule = make(range(3), capacity=1, retry=ScriptedRetry([5.0]))
    driver = Driver(schedule)
    (first,) = driver.start(0.0)
    driver.finish(first, report(first, fail=[0]), 0.0)
    (second,) = driver.start(0.0)
    assert indices(second) == [1]
    driver.succeed(second, 1.0)
    (third,) = driver.start(1.0)
    assert indices(third) == [2]
    driver.succeed(third, 2.0)
    assert driver.start(2.0) == []
    assert schedule.wake_at() == 5.0
    (retried,) = driver.start(5.0)
    assert indices(retried) == [0]


def test_retries_are_released_earliest_first() -> None:
    schedule = make(range(2), capacity=2, retry=ScriptedRetry([3.0, 1.0]))
    driver = Driver(schedule)
    a, b = driver.start(0.0)
    driver.finish(a, report(a, fail=[0]), 0.0)  # item 0 ready at 3.0
    driver.finish(b, report(b, fail=[0]), 0.0)  # item 1 ready at 1.0
    assert driver.start(0.5) == []
    assert schedule.wake_at() == 1.0
    assert [indices(task) for task in driver.start(1.0)] == [[1]]
    assert schedule.wake_at() == 3.0
    assert [indices(task) for task in driver.start(3.0)] == [[0]]


def test_an_item_that_keeps_failing_fails_after_the_policy_gives_up() -> None:
    retry = RetryUpTo(3, 0.1)
    schedule = make(range(1), retry=retry)
    driver = Driver(schedule)
    driver.run_to_end(lambda task: report(task, fail=[0]))
    assert [attempt for attempt, _ in retry.asked] == [1, 2, 3]
    assert [(event.index, event.attempt, event.delay) for event in driver.retries] == [
        (0, 1, 0.1),
        (0, 2, 0.1),
    ]
    result = driver.results[0]
    assert isinstance(result.error, ItemFailure)
    assert result.error is retry.asked[-1][1]
    assert (schedule.done, schedule.succeeded, schedule.retries) == (1, 0, 2)


def test_an_item_that_succeeds_on_a_retry_counts_as_succeeded() -> None:
    retry = RetryUpTo(3, 0.0)
    schedule = make(range(1), retry=retry)
    driver = Driver(schedule)
    fails = iter([True, True, False])  # the first two attempts fail, the third succeeds
    driver.run_to_end(lambda task: report(task, fail=[0] if next(fails) else []))
    assert driver.results == {0: ItemResult.success(0, 0)}
    assert [attempt for attempt, _ in retry.asked] == [1, 2]
    assert (schedule.done, schedule.succeeded, schedule.retries) == (1, 1, 2)


# -- 4. settling blocks --------------------------------------------------------------------


def test_a_block_of_successes_settles_as_one_run() -> None:
    driver = chunked(9)
    (block,) = driver.start()
    assert (block.start, len(block)) == (1, 8)
    assert not block.has_items  # a block makes no Item objects unless it needs them
    (event,) = driver.succeed(block, seconds=1e-5)
    assert isinstance(event, Successes)
    assert (event.start, event.values) == (1, [10 * i for i in range(1, 9)])
    assert (driver.schedule.done, driver.schedule.succeeded) == (9, 9)


def test_failures_split_a_block_into_runs_of_successes_and_single_failures() -> None:
    driver = chunked(11)
    (block,) = driver.start()
    assert indices(block) == list(range(1, 11))
    values, _, _ = outcome = report(block, fail=[0, 2, 3, 9])
    events = driver.finish(block, outcome)
    assert not any(isinstance(event, RetryEvent) for event in events)  # no retry policy
    shapes = [
        ("run", event.start, event.values)
        if isinstance(event, Successes)
        else ("one", event.index, isinstance(event, ItemResult) and event.ok)
        for event in events
    ]
    assert shapes == [
        ("one", 1, False),
        ("run", 2, [20]),
        ("one", 3, False),
        ("one", 4, False),
        ("run", 5, [50, 60, 70, 80, 90]),
        ("one", 10, False),
    ]
    assert [driver.results[i].error for i in (1, 3, 4, 10)] == [values[0], values[2], values[3], values[9]]
    assert (driver.schedule.done, driver.schedule.succeeded) == (11, 7)


@settings(max_examples=100, deadline=None, database=None)
@given(size=st.integers(1, 12), data=st.data())
def test_a_block_settles_as_alternating_runs_and_failures_in_input_order(
    size: int, data: st.DataObject
) -> None:
    driver = chunked(size + 1)
    (block,) = driver.start()
    failing = data.draw(st.sets(st.integers(0, size - 1)), label="failing")
    events = driver.finish(block, report(block, fail=failing))
    settled: list[int] = []
    previous_was_run = False
    for event in events:
        if isinstance(event, Successes):
            assert event.values, "an empty run of successes"
            assert not previous_was_run, "two runs of successes in a row: they are one run"
            settled.extend(range(event.start, event.start + len(event.values)))
            previous_was_run = True
        else:
            assert isinstance(event, ItemResult)
            assert not event.ok
            assert isinstance(event.error, ItemFailure)
            assert event.error.index == event.index
            settled.append(event.index)
            previous_was_run = False
    assert settled == list(range(1, size + 1))  # every item once, in order
    assert driver.failed() == sorted(position + 1 for position in failing)
    assert all(driver.results[i].value == value_of(i) for i in settled if i - 1 not in failing)


def test_a_failure_in_a_block_is_retried_as_an_item_on_its_first_attempt() -> None:
    retry = ScriptedRetry([1.0])
    driver = chunked(5, retry=retry)
    (block,) = driver.start()
    run, retry_event, rest = driver.finish(block, report(block, fail=[2]))
    assert isinstance(run, Successes)
    assert (run.start, run.values) == (1, [10, 20])
    assert isinstance(retry_event, RetryEvent)
    assert (retry_event.index, retry_event.attempt) == (3, 1)
    assert isinstance(rest, Successes)
    assert (rest.start, rest.values) == (4, [40])
    assert sorted(driver.results) == [0, 1, 2, 4]
    (again,) = driver.start(1.0)
    assert indices(again) == [3]
    assert again.start == -1  # not a block: the item has a life of its own
    assert again.items()[0].attempts == 2


# -- 5. splitting a group that failed as a whole -------------------------------------------


def test_a_group_failing_as_a_whole_is_split_in_halves_until_the_culprit_runs_alone() -> None:
    driver = chunked(9)
    culprit = 6

    def outcome(task: Task) -> Outcome:
        return RuntimeError("cannot send") if culprit in indices(task) else report(task)

    sizes = []
    for _ in range(50):
        for task in driver.start():
            sizes.append(indices(task))
            if task.start < 0:  # given back after a whole failure: that attempt was not counted
                assert all(item.attempts == 1 for item in task.items())
        if driver.schedule.finished:
            break
        driver.finish(driver.running[0], outcome(driver.running[0]))
    assert driver.schedule.finished
    assert sizes == [
        [1, 2, 3, 4, 5, 6, 7, 8],
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [5, 6],
        [5],
        [6],
        [7, 8],
    ]
    assert driver.failed() == [culprit]
    assert isinstance(driver.results[culprit].error, RuntimeError)
    assert all(driver.results[i] == ItemResult.success(i, 10 * i) for i in range(9) if i != culprit)


@pytest.mark.parametrize("culprit", [1, 17, 37, 64])
def test_cornering_a_culprit_costs_a_logarithmic_number_of_tasks(culprit: int) -> None:
    n = 64
    driver = chunked(n + 1)  # item 0 warms the sizer; items 1..64 form the block
    errors: dict[int, list[int]] = {}

    def outcome(task: Task) -> Outcome:
        if culprit in indices(task):
            error = RuntimeError("the task could not run")
            errors[id(error)] = indices(task)
            return error
        return report(task)

    driver.run_to_end(outcome)
    tasks_for_block = len(driver.submitted) - 1
    assert tasks_for_block <= 1 + 2 * math.ceil(math.log2(n))
    assert driver.failed() == [culprit]
    error = driver.results[culprit].error
    assert errors[id(error)] == [culprit]  # the failure reported is the one it had alone
    assert sorted(driver.results) == list(range(n + 1))
    assert driver.schedule.succeeded == n


def test_a_lone_items_whole_task_failure_is_its_own_failure() -> None:
    retry = ScriptedRetry([0.5])
    schedule = make(range(1), retry=retry)
    driver = Driver(schedule)
    (task,) = driver.start(0.0)
    first = SerializationError("cannot pickle the argument")
    (event,) = driver.finish(task, first, 0.0)
    assert event == RetryEvent(0, 1, first, 0.5)
    assert first.index == 0  # the scheduler names the item on a pyarallel ItemError
    (again,) = driver.start(0.5)
    second = RuntimeError("executor shut down")
    (result,) = driver.finish(again, second, 0.5)
    assert result == ItemResult.failure(0, second)
    assert retry.attempts == [1, 2]


def test_items_cornered_to_run_alone_are_never_regrouped() -> None:
    driver = chunked(5)
    (block,) = driver.start()  # items 1..4
    driver.finish(block, RuntimeError("whole"))
    (half,) = driver.start()
    assert indices(half) == [1, 2]
    driver.finish(half, RuntimeError("whole"))
    (alone,) = driver.start()
    assert indices(alone) == [1]
    driver.succeed(alone, seconds=1e-6)
    (next_alone,) = driver.start()
    assert indices(next_alone) == [2]  # limit 1: not grouped with 3 and 4 (limit 2)
    driver.succeed(next_alone)
    (rest,) = driver.start()
    assert indices(rest) == [3, 4]


# -- 6. lost tasks -------------------------------------------------------------------------


def test_a_crash_fails_only_the_running_item_and_the_rest_rerun_uncounted() -> None:
    retry = ScriptedRetry(default=None)
    driver = chunked(9, retry=retry)
    (block,) = driver.start()  # items 1..8
    (event,) = driver.finish(block, lost(started=3, crashed=True))
    assert isinstance(event, ItemResult)
    assert event.index == 3
    assert isinstance(event.error, WorkerCrashedError)
    assert event.error.index == 3
    assert retry.attempts == [1]  # the crash is a failed attempt, given to the policy
    (rerun,) = driver.start()
    assert indices(rerun) == [1, 2, 4, 5, 6, 7, 8]
    assert [item.attempts for item in rerun.items()] == [1] * 7
    driver.finish(rerun, report(rerun, fail=range(7)))
    assert retry.attempts == [1] + [1] * 7  # a first failure for each, not a second
    assert driver.failed() == list(range(1, 9))
    assert driver.schedule.finished


@pytest.mark.parametrize(
    "report",
    [
        pytest.param(lost(started=0), id="never-started"),
        # The item was running, but its worker was alive when the pool went down (another
        # worker died): it is no suspect.
        pytest.param(lost(started=2, crashed=False), id="running-but-innocent"),
        # Only its outcome was lost (its worker finished it, then died on another task):
        # no item of it is in question, even the last one started.
        pytest.param(lost(started=4, finished=True), id="finished"),
    ],
)
def test_a_lost_task_with_no_item_in_question_gives_every_item_back(report: TaskLostError) -> None:
    driver = chunked(5)
    (block,) = driver.start()
    assert driver.finish(block, report) == []
    (rerun,) = driver.start()
    assert indices(rerun) == [1, 2, 3, 4]
    assert not rerun.isolated
    assert [item.attempts for item in rerun.items()] == [1, 1, 1, 1]  # the lost attempt uncounted
    driver.run_to_end()
    assert driver.failed() == []


def test_a_crash_reported_for_a_lone_item_with_no_progress_is_its_failure() -> None:
    # started=None on a one-item task: that item was the one running.
    schedule = make(range(1))
    driver = Driver(schedule)
    (task,) = driver.start()
    (event,) = driver.finish(task, lost(started=None, crashed=True))
    assert isinstance(event, ItemResult)
    assert isinstance(event.error, WorkerCrashedError)
    assert event.error.index == 0


def test_the_item_running_when_a_worker_is_lost_reruns_alone_once_all_else_has_finished() -> None:
    schedule = make(range(6), capacity=2, queue_ahead=True)
    driver = Driver(schedule)
    t0, t1, t2, t3 = driver.start()
    assert driver.finish(t1, lost(started=1)) == []  # item 1: a suspect
    assert driver.start() == []  # nothing new while tasks are running
    driver.succeed(t0)
    assert driver.start() == []
    driver.succeed(t2)
    driver.succeed(t3)
    (alone,) = driver.start()
    assert indices(alone) == [1]
    assert alone.isolated
    assert driver.running == [alone]  # nothing else in flight
    assert alone.items()[0].attempts == 1  # the lost attempt was not counted
    assert driver.start() == []  # still nothing beside it
    driver.succeed(alone)
    resumed = driver.start()
    assert [indices(task) for task in resumed] == [[4], [5]]
    assert not any(task.isolated for task in resumed)
    driver.run_to_end()
    assert sorted(driver.results) == list(range(6))
    assert driver.failed() == []


@pytest.mark.parametrize(
    "second_loss",
    [lost(started=1), lost(started=None), lost(started=1, crashed=True)],
    ids=["started-1", "started-unknown", "crashed"],
)
def test_a_suspect_lost_again_while_alone_fails_with_worker_crashed(second_loss: TaskLostError) -> None:
    retry = ScriptedRetry(default=None)
    schedule = make(range(3), capacity=1, retry=retry)
    driver = Driver(schedule)
    (first,) = driver.start()
    driver.finish(first, lost(started=1))
    (alone,) = driver.start()
    assert alone.isolated
    assert indices(alone) == [0]
    (event,) = driver.finish(alone, second_loss)
    assert isinstance(event, ItemResult)
    assert isinstance(event.error, WorkerCrashedError)
    assert event.error.index == 0
    assert retry.attempts == [1]  # one counted attempt: the first loss was uncounted
    driver.run_to_end()
    assert driver.failed() == [0]
    assert sorted(driver.results) == [0, 1, 2]


def test_a_task_lost_with_no_progress_known_makes_every_item_a_suspect() -> None:
    driver = chunked(5)
    (block,) = driver.start()  # items 1..4
    assert driver.finish(block, lost(started=None)) == []
    order = []
    for _ in range(4):
        (alone,) = driver.start()
        assert alone.isolated
        assert driver.start() == []
        order.extend(indices(alone))
        assert alone.items()[0].attempts == 1
        driver.succeed(alone)
    assert order == [1, 2, 3, 4]
    driver.start()
    assert driver.schedule.finished
    assert driver.failed() == []


def test_items_that_finished_before_the_lost_one_are_run_again() -> None:
    # Their results were lost with the worker: they are given back, uncounted.
    driver = chunked(6)
    (block,) = driver.start()  # items 1..5
    driver.finish(block, lost(started=3))  # items 1 and 2 had finished, 3 was running
    (alone,) = driver.start()
    assert alone.isolated
    assert indices(alone) == [3]
    driver.succeed(alone)
    (rest,) = driver.start()
    assert indices(rest) == [1, 2, 4, 5]
    assert [item.attempts for item in rest.items()] == [1, 1, 1, 1]


def test_tasks_lost_before_starting_give_up_after_the_barren_bound() -> None:
    schedule = make(range(3), capacity=1)  # one task in flight at a time
    assert schedule._max_in_flight == 1
    driver = Driver(schedule)
    bound = MAX_BARREN_ROUNDS * schedule._max_in_flight
    for _ in range(bound):
        (task,) = driver.start()
        assert driver.finish(task, lost(started=0)) == []
        assert indices(task) == [0]
    (task,) = driver.start()
    (event,) = driver.finish(task, lost(started=0))
    assert isinstance(event, ItemResult)
    assert event.index == 0
    assert isinstance(event.error, WorkerCrashedError)
    assert event.error.index == 0


def test_a_finished_item_resets_the_barren_count() -> None:
    schedule = make(range(3), capacity=1)
    driver = Driver(schedule)
    bound = MAX_BARREN_ROUNDS * schedule._max_in_flight
    for _ in range(bound):
        (task,) = driver.start()
        driver.finish(task, lost(started=0))
    (task,) = driver.start()
    driver.succeed(task)  # item 0 finishes: the count starts again
    for _ in range(bound):
        (task,) = driver.start()
        assert indices(task) == [1]
        assert driver.finish(task, lost(started=0)) == []
    (task,) = driver.start()
    (event,) = driver.finish(task, lost(started=0))
    assert isinstance(event, ItemResult)
    assert isinstance(event.error, WorkerCrashedError)


def test_workers_that_never_run_anything_end_the_run() -> None:
    schedule = make(range(4), capacity=1, queue_ahead=True)
    driver = Driver(schedule)
    driver.run_to_end(lambda task: lost(started=0), max_steps=1_000)
    assert driver.failed() == [0, 1, 2, 3]
    assert all(isinstance(result.error, WorkerCrashedError) for result in driver.results.values())
    assert all(result.error.index == index for index, result in driver.results.items())  # type: ignore[union-attr]


def test_once_the_barren_bound_is_reached_every_further_lost_task_fails() -> None:
    schedule = make(range(4), capacity=1, queue_ahead=True)  # two tasks in flight
    driver = Driver(schedule)
    losses = 0

    def outcome(task: Task) -> Outcome:
        nonlocal losses
        losses += 1
        return lost(started=0)

    driver.run_to_end(outcome, max_steps=1_000)
    bound = MAX_BARREN_ROUNDS * schedule._max_in_flight
    # Six losses are given back; from the seventh on, each lost task's item fails: 7..10.
    assert losses <= bound + 4  # not 4 * (bound + 1) = 28: a barren failure is no progress


def test_a_suspect_lost_again_before_it_starts_eventually_fails() -> None:
    schedule = make(range(1), capacity=1)
    driver = Driver(schedule)
    (task,) = driver.start()
    driver.finish(task, lost(started=1))  # item 0 is now a suspect
    for _ in range(100):
        tasks = driver.start()
        if not tasks:
            break
        (alone,) = tasks
        assert alone.isolated
        driver.finish(alone, lost(started=0))  # the pool broke again before it started
    assert schedule.finished
    assert isinstance(driver.results[0].error, WorkerCrashedError)


def test_wake_at_is_not_in_the_past_while_a_suspect_waits_for_isolation() -> None:
    limiter = ScriptedLimiter([0.0, 0.0, 0.5])
    schedule = make(range(5), capacity=3, limiter=limiter)
    driver = Driver(schedule)
    first, _second = driver.start(0.0)  # the third draw is refused: due at 0.5
    assert schedule.wake_at() == 0.5
    driver.finish(first, lost(started=1), 0.1)  # item 0 is a suspect; item 1 still runs
    assert driver.start(1.0) == []  # the suspect waits for item 1
    wake = schedule.wake_at()
    assert wake is None or wake > 1.0


# -- 7. tasks that stopped early -----------------------------------------------------------


def test_a_task_that_stopped_early_settles_its_first_items_and_gives_back_the_rest() -> None:
    retry = ScriptedRetry(default=None)
    driver = chunked(9, retry=retry)
    (block,) = driver.start()  # items 1..8
    values, _, _ = outcome = report(block, stop=3, fail=[1])
    events = driver.finish(block, outcome)
    assert sorted(driver.results) == [0, 1, 2, 3]
    assert driver.results[2] == ItemResult.failure(2, values[1])
    assert len(events) == 3
    assert retry.attempts == [1]
    (rest,) = driver.start()
    assert indices(rest) == [4, 5, 6, 7, 8]
    assert [item.attempts for item in rest.items()] == [1] * 5
    driver.run_to_end()
    assert sorted(driver.results) == list(range(9))
    assert driver.failed() == [2]


def test_a_task_that_reports_nothing_gives_every_item_back() -> None:
    driver = chunked(4)
    (block,) = driver.start()
    assert driver.finish(block, report(block, stop=0, seconds=0.2)) == []
    (rerun,) = driver.start()
    assert indices(rerun) == [1, 2, 3]


def test_a_report_with_more_outcomes_than_items_is_refused() -> None:
    schedule = make(range(1))
    (task,) = schedule.next_tasks(0.0)
    with pytest.raises(ValueError, match="reported 2 outcomes"):
        schedule.finish_task(task, [1, 2], [], 0.0)


# -- 8. reclaiming stalled chunks ----------------------------------------------------------


def test_only_chunks_of_several_items_can_be_reclaimed() -> None:
    driver = chunked(5, capacity=2, reclaim=True)
    (block,) = driver.start()
    assert isinstance(driver.schedule.claim(block), ChunkClaim)
    lone = Driver(make(range(3), task_seconds=0.01, reclaim=True))
    (task,) = lone.start()
    assert lone.schedule.claim(task) is None
    plain = chunked(5, capacity=2)  # reclaim off
    (block,) = plain.start()
    assert plain.schedule.claim(block) is None


def test_a_stalled_chunk_settles_what_finished_and_gives_back_what_never_started() -> None:
    driver = chunked(10, capacity=2, reclaim=True)  # items 0, 1 warm up; one block 2..9
    schedule = driver.schedule
    assert schedule.chunk_budget is not None
    (block,) = driver.start(1.0)
    assert indices(block) == list(range(2, 10))
    claim = schedule.claim(block)
    assert claim is not None
    assert schedule.wake_at() == pytest.approx(1.0 + schedule.chunk_budget)
    # The worker runs item 2, fails item 3, and is stuck in item 4.
    assert claim.take() == 0
    claim.values.append(20)
    assert claim.take() == 1
    error = ItemFailure(3)
    claim.failed.append(len(claim.values))
    claim.values.append(error)
    assert claim.take() == 2
    assert schedule.reclaim_stalled(1.0 + schedule.chunk_budget / 2) == []  # not stalled yet
    events = schedule.reclaim_stalled(1.0 + schedule.chunk_budget + 0.01)
    driver.record(events)
    assert events == [ItemResult.success(2, 20), ItemResult.failure(3, error)]
    assert claim.take() is None  # the worker starts nothing more
    (elsewhere,) = driver.start(1.2)  # the unstarted items, on the free slot
    assert indices(elsewhere) == [5, 6, 7, 8, 9]
    assert [item.attempts for item in elsewhere.items()] == [1] * 5
    driver.succeed(elsewhere, 1.3, seconds=1e-4)
    claim.values.append(40)  # item 4 finally finishes
    events = driver.finish(block, (claim.values, claim.failed, 0.5), 1.4)
    assert events == [ItemResult.success(4, 40)]
    driver.start(1.4)
    assert schedule.finished
    assert sorted(driver.results) == list(range(10))
    assert driver.failed() == [3]


@settings(max_examples=60, deadline=None, database=None)
@given(
    size=st.integers(2, 10),
    data=st.data(),
)
def test_reclaiming_at_any_point_finishes_every_item_once(size: int, data: st.DataObject) -> None:
    driver = chunked(size + 2, capacity=2, reclaim=True)
    schedule = driver.schedule
    (block,) = driver.start(1.0)
    assert indices(block) == list(range(2, size + 2))
    claim = schedule.claim(block)
    assert claim is not None
    assert schedule.chunk_budget is not None
    taken = data.draw(st.integers(0, size), label="taken")
    finished = data.draw(st.integers(max(0, taken - 1), taken), label="finished")
    failing = data.draw(st.sets(st.integers(0, size - 1)), label="failing")
    payloads = list(block.payloads)  # the task stands for fewer items once reclaimed

    def run(position: int) -> None:
        index = payloads[position]
        if position in failing:
            claim.failed.append(len(claim.values))
            claim.values.append(ItemFailure(index))
        else:
            claim.values.append(value_of(index))

    for _ in range(taken):
        assert claim.take() is not None
    for position in range(finished):
        run(position)
    driver.record(schedule.reclaim_stalled(1.0 + schedule.chunk_budget + 0.01))
    assert sorted(driver.results) == [0, 1, *range(2, 2 + finished)]
    for position in range(finished, taken):
        run(position)
    driver.finish(block, (claim.values, claim.failed, 0.5), 2.0)
    driver.run_to_end(now=2.0)
    assert sorted(driver.results) == list(range(size + 2))
    for position in range(size):
        index = position + 2
        result = driver.results[index]
        if position in failing and position < taken:
            assert isinstance(result.error, ItemFailure)
            assert result.error.index == index
        else:  # ran by the chunk and succeeded, or given back and succeeded elsewhere
            assert result == ItemResult.success(index, value_of(index))


# -- 9. expiry -----------------------------------------------------------------------------


def test_expiry_fails_every_unfinished_item_wherever_it_is() -> None:
    first_error = ItemFailure(0)
    retry = ScriptedRetry([5.0])
    schedule = make(range(10), total=10, capacity=3, retry=retry)
    driver = Driver(schedule)
    t0, t1, t2 = driver.start(0.0)
    driver.finish(t0, ([first_error], [0], None), 0.0)  # item 0 waits out a backoff
    (_t3,) = driver.start(0.0)
    driver.finish(t1, lost(started=1), 0.0)  # item 1 is a suspect
    driver.finish(t2, ([], [], None), 0.0)  # item 2 stopped before it started: ready
    assert driver.start(0.0) == []  # isolation waits for item 3, still running
    assert (schedule.seen, schedule.done) == (4, 0)
    results = schedule.expire(7.0)
    assert [result.index for result in results] == list(range(10))
    assert all(isinstance(result.error, ItemTimeoutError) for result in results)
    assert all(result.error.index == result.index for result in results)  # type: ignore[union-attr]
    assert all(result.error.timeout == 7.0 for result in results)  # type: ignore[union-attr]
    assert results[0].error.__cause__ is first_error  # type: ignore[union-attr]
    assert all(result.error.__cause__ is None for result in results[1:])  # type: ignore[union-attr]
    assert (schedule.read_at_expiry, schedule.done_at_expiry) == (4, 0)
    assert schedule.expired
    assert schedule.finished
    assert schedule.done == 10
    assert schedule.wake_at() is None
    assert driver.start(100.0) == []


def test_expiry_covers_a_running_block_and_counts_what_finished_before() -> None:
    driver = chunked(6)
    (_block,) = driver.start()  # items 1..5, a block with no Item objects
    results = driver.schedule.expire(1.5)
    assert [result.index for result in results] == [1, 2, 3, 4, 5]
    assert (driver.schedule.read_at_expiry, driver.schedule.done_at_expiry) == (6, 1)
    assert driver.schedule.done == 6


def test_expiry_of_an_unsized_input_covers_only_what_was_read() -> None:
    schedule = make(iter(range(100)), capacity=2)
    driver = Driver(schedule)
    driver.start()
    results = schedule.expire(1.0)
    assert [result.index for result in results] == [0, 1]
    assert schedule.finished


def test_expiry_stops_the_claims_of_chunks_in_flight() -> None:
    driver = chunked(6, capacity=2, reclaim=True)
    (block,) = driver.start()
    claim = driver.schedule.claim(block)
    assert claim is not None
    assert claim.take() == 0
    driver.schedule.expire(1.0)
    assert claim.take() is None


# -- 10. input reading bounded by time -----------------------------------------------------


def counting(n: int, pulled: list[int]) -> Iterator[int]:
    """A generator (a slow iterator for the input window) recording what was pulled."""
    for index in range(n):
        pulled.append(index)
        yield index


def test_no_input_is_taken_once_the_deadline_has_passed() -> None:
    pulled: list[int] = []
    clock = FakeClock(step=1.0)  # every read of the clock moves it on by a second
    schedule = make(counting(100, pulled), capacity=2, queue_ahead=True, clock=clock, deadline=4.5)
    driver = Driver(schedule)
    tasks = driver.start(0.0)
    # Four slots, but the deadline passed while they were being filled.
    assert 1 <= len(tasks) < 4
    assert pulled == [index for task in tasks for index in indices(task)]
    for task in tasks:
        driver.succeed(task)
    taken = list(pulled)
    assert driver.start(10.0) == []
    assert pulled == taken
    assert not schedule.finished  # the input did not end: the run is left to expire


def test_a_block_from_a_slow_iterator_is_read_for_at_most_the_task_time() -> None:
    pulled: list[int] = []
    clock = FakeClock(step=0.004)  # every read of the clock: 4 ms later
    schedule = make(counting(100, pulled), task_seconds=0.01, clock=clock)
    driver = Driver(schedule)
    (first,) = driver.start()  # one item, whose read is measured: slow
    driver.succeed(first, seconds=1e-6)  # the next block may hold 10_000 items
    (block,) = driver.start()
    # Read for 10 ms at 4 ms a look at the clock: a few items, not the 99 left.
    assert 1 <= len(block) <= 3
    assert pulled == list(range(1 + len(block)))
    driver.succeed(block, seconds=1e-6)
    assert not schedule.finished  # a short read is not the end of the input
    driver.run_to_end()
    assert sorted(driver.results) == list(range(100))


def test_a_generator_that_reads_quickly_is_read_in_one_go() -> None:
    # Without a deadline, the clock is looked at only once reads have proved slow.
    pulled: list[int] = []
    clock = FakeClock()
    schedule = make(counting(100, pulled), task_seconds=0.01, clock=clock)
    driver = Driver(schedule)
    (first,) = driver.start()
    driver.succeed(first, seconds=1e-6)
    reads = clock.reads
    (block,) = driver.start()
    assert indices(block) == list(range(1, 100))
    assert clock.reads - reads <= 2  # when the block's read started and ended


def test_a_block_from_a_list_is_read_in_one_go_without_the_clock() -> None:
    clock = FakeClock(step=1.0)
    schedule = make(list(range(100)), task_seconds=0.01, clock=clock)
    driver = Driver(schedule)
    (first,) = driver.start()
    driver.succeed(first, seconds=1e-6)
    reads = clock.reads
    (block,) = driver.start()
    assert indices(block) == list(range(1, 100))
    assert clock.reads == reads
    driver.succeed(block)
    assert schedule.finished  # the short read of a list is its end


def test_the_deadline_also_cuts_a_block_short() -> None:
    pulled: list[int] = []
    clock = FakeClock()
    schedule = make(counting(100, pulled), task_seconds=10.0, clock=clock, deadline=1.0)
    driver = Driver(schedule)
    (first,) = driver.start()
    driver.succeed(first, seconds=1e-3)  # blocks of 10_000 items, read for up to 10 s
    clock.step = 0.25
    (block,) = driver.start()
    # Reads: 0 (before the deadline), 0.25 (stop at min(10.25, 1.0)), 0.5, 0.75, 1.0.
    assert indices(block) == [1, 2, 3]
    driver.succeed(block)
    assert driver.start() == []
    assert pulled == [0, 1, 2, 3]
    assert not schedule.finished


# -- 11. the chunk sizer -------------------------------------------------------------------


def test_the_sizer_measures_one_item_per_task_first() -> None:
    assert ChunkSizer(0.01).size(1000, 4, 2, None) == 1
    assert ChunkSizer(0.01).size(None, 4, 2, 100) == 1


def test_the_preferred_size_fills_the_task_time() -> None:
    sizer = ChunkSizer(1.0)
    sizer.observe(0.5, 2)  # 0.25 s per item
    assert sizer.size(None, 4, 2, None) == 4


def test_the_preferred_size_is_capped() -> None:
    sizer = ChunkSizer(1.0)
    sizer.observe(1e-6, 1)
    assert sizer.size(None, 4, 2, None) == ChunkSizer.MAX_SIZE


def test_an_item_slower_than_the_task_time_travels_alone() -> None:
    sizer = ChunkSizer(0.01)
    sizer.observe(5.0, 1)
    assert sizer.size(1000, 4, 2, None) == 1


def test_the_item_time_is_a_moving_average() -> None:
    sizer = ChunkSizer(1.0)
    sizer.observe(1 / 8, 1)
    sizer.observe(1 / 2, 1)  # 0.7 / 8 + 0.3 / 2 = 0.2375 s per item
    assert sizer.size(None, 1, 1, None) == int(1.0 / (0.7 / 8 + 0.3 / 2)) == 4


def test_a_sized_input_task_takes_at_most_its_share_of_what_is_left() -> None:
    sizer = ChunkSizer(1.0)
    sizer.observe(1 / 64, 1)  # preferred: 64 items
    assert sizer.size(100, 4, 2, None) == 25  # ceil(100 / 4) = 25 >= 64 / 4
    assert sizer.size(97, 4, 2, None) == 25  # ceil(97 / 4)
    assert sizer.size(1000, 4, 2, None) == 64


def test_below_a_quarter_of_a_task_the_rest_is_cut_once_into_one_share_per_worker() -> None:
    sizer = ChunkSizer(1.0)
    sizer.observe(1 / 64, 1)  # preferred 64; a quarter is 16
    assert sizer.size(40, 4, 2, None) == 20  # ceil(40 / 4) = 10 < 16: ceil(40 / 2) = 20
    assert sizer.size(30, 4, 2, None) == 20  # the final share, kept for the rest
    assert sizer.size(3, 4, 2, None) == 20
    assert sizer.size(200, 4, 2, None) == 50  # a big share again (more input): back to shares
    assert sizer.size(39, 4, 2, None) == 20  # and a new final share: ceil(39 / 2)


def test_the_quarter_threshold_is_measured_against_the_capped_preferred_size() -> None:
    # A task of very tiny items would last task_seconds at 1e6 items, but carries at most
    # MAX_SIZE: the final share starts only once a share is under a quarter of that cap,
    # so it stays small (here the share of 5_000 is still the bound, not 80_000 / 8).
    sizer = ChunkSizer(1.0)
    sizer.observe(1e-6, 1)
    assert sizer.size(80_000, 16, 8, None) == 5_000
    assert sizer.size(40_000, 16, 8, None) == 2_500  # still a share: 2_500 = MAX_SIZE / 4
    assert sizer.size(30_000, 16, 8, None) == 3_750  # under it: one share per worker, once
    assert sizer.size(20_000, 16, 8, None) == 3_750


def test_the_window_is_shared_by_every_task_in_flight() -> None:
    sizer = ChunkSizer(1.0)
    sizer.observe(1 / 64, 1)
    assert sizer.size(None, 4, 2, 10) == 2
    assert sizer.size(None, 4, 2, 3) == 1  # never below one


@settings(max_examples=300, deadline=None, database=None)
@given(
    task_seconds=st.sampled_from([1e-3, 0.01, 0.1, 1.0]),
    calls=st.lists(
        st.tuples(
            st.one_of(st.none(), st.tuples(st.floats(1e-7, 5.0), st.integers(1, 500))),
            st.one_of(st.none(), st.integers(0, 200_000)),
            st.integers(1, 32),
            st.integers(1, 16),
            st.one_of(st.none(), st.integers(0, 5_000)),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_chunk_sizes_respect_every_bound(
    task_seconds: float,
    calls: list[tuple[tuple[float, int] | None, int | None, int, int, int | None]],
) -> None:
    sizer = ChunkSizer(task_seconds)
    item_seconds: float | None = None
    final_share: int | None = None
    for observation, remaining, tasks, workers, window in calls:
        if observation is not None:
            seconds, items = observation
            sizer.observe(seconds, items)
            per_item = seconds / items
            item_seconds = per_item if item_seconds is None else 0.7 * item_seconds + 0.3 * per_item
        size = sizer.size(remaining, tasks, workers, window)
        assert size >= 1
        if item_seconds is None:
            assert size == 1
            continue
        preferred = min(ChunkSizer.MAX_SIZE, int(task_seconds / max(item_seconds, 1e-9)))
        bounds = [preferred]
        if window is not None:
            bounds.append(window // tasks)
        if remaining is not None:
            share = -(-remaining // tasks)
            if share >= preferred * ChunkSizer.MIN_FRACTION:
                final_share = None
                bounds.append(share)
            else:
                if final_share is None:
                    final_share = -(-remaining // workers)
                bounds.append(final_share)
        assert size == max(1, min(bounds))


# -- random scripts --------------------------------------------------------------------------


# The strategies drawn at every step, built once: a strategy built anew for each draw is
# validated anew each time, which took a good part of the test's time. Same draws.
TASK_SECONDS = st.sampled_from([1e-6, 1e-6, 1e-6, 1e-3, 0.05])
TASK_KINDS = st.sampled_from(["ok", "fail", "stop", "whole", "lost"])
CRASHED = st.sampled_from([True, False, None])
STEPS = st.sampled_from([0.0, 0.001, 0.01])


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_random_scripts_finish_every_item_once_with_its_own_outcome(data: st.DataObject) -> None:
    """Whatever happens to the tasks (item failures, early stops, whole-task failures,
    lost workers, retries, a timeout), every item finishes exactly once, with its own
    value or an error that names it, the window and the slots are respected, no item runs
    twice at once, and the retry policy sees each item's attempts as 1, 2, 3..."""
    n = data.draw(st.integers(0, 40), label="items")
    capacity = data.draw(st.integers(1, 3), label="capacity")
    queue_ahead = data.draw(st.booleans(), label="queue_ahead")
    window = data.draw(st.none() | st.integers(1, 8), label="window")
    paced = data.draw(st.sampled_from([False, False, False, True]), label="paced")
    chunking = data.draw(st.sampled_from([True, True, True, False]), label="chunking")
    sized = data.draw(st.booleans(), label="sized")
    generator = data.draw(st.booleans(), label="generator")
    max_attempts = data.draw(st.integers(1, 3), label="max_attempts")
    delay = data.draw(st.sampled_from([0.0, 0.05, 0.3]), label="delay")
    mischief = data.draw(st.integers(0, 30), label="mischief")  # tasks with a scripted outcome
    expire_at = data.draw(st.none() | st.integers(0, 40), label="expire_at")
    # Items that fail their next few attempts whatever else happens to their tasks.
    flaky = data.draw(st.dictionaries(st.integers(0, 39), st.integers(1, 3), max_size=12), label="flaky")

    clock = FakeClock()
    limiter = IntervalLimiter(clock, 0.02) if paced else None
    retry = RetryUpTo(max_attempts, delay)
    source: Iterator[int] = (i for i in range(n)) if generator else iter(list(range(n)))
    schedule = Schedule(
        source,
        total=n if sized else None,
        window=window,
        capacity=capacity,
        limiter=limiter,
        retry=retry,
        task_seconds=0.01 if chunking else None,
        queue_ahead=queue_ahead,
        clock=clock,
    )
    max_in_flight = 2 * capacity if queue_ahead and not paced else capacity
    driver = Driver(schedule)
    whole_errors: dict[int, list[int]] = {}  # id(error) -> the indices of its task

    def owner(error: BaseException | None) -> int | None:
        if isinstance(error, ItemFailure | WorkerCrashedError):
            return error.index
        if isinstance(error, RuntimeError):
            task_indices = whole_errors[id(error)]
            assert len(task_indices) == 1, "a group's whole failure was blamed on one item"
            return task_indices[0]
        raise AssertionError(f"unexpected error {error!r}")

    def outcome(task: Task) -> Outcome:
        nonlocal mischief
        # Mostly tiny items, so that chunking groups them; now and then a slow one.
        seconds = data.draw(TASK_SECONDS, label="seconds")
        if mischief <= 0:
            return flaky_report(task, seconds)
        mischief -= 1
        size = len(task)
        kind = data.draw(TASK_KINDS, label="kind")
        if kind == "fail":
            return report(task, fail=data.draw(st.sets(st.integers(0, size - 1))), seconds=seconds)
        if kind == "stop":
            stop = data.draw(st.integers(0, size - 1), label="stop")
            return report(task, stop=stop, fail=data.draw(st.sets(st.integers(0, size - 1))), seconds=seconds)
        if kind == "whole":
            error = RuntimeError("the task could not run")
            whole_errors[id(error)] = indices(task)
            return error
        if kind == "lost":
            started = data.draw(st.none() | st.integers(0, size), label="started")
            return lost(started, crashed=data.draw(CRASHED, label="crashed"))
        return flaky_report(task, seconds)

    def flaky_report(task: Task, seconds: float) -> Report:
        failing = [position for position, index in enumerate(task.indices()) if flaky.get(index, 0) > 0]
        for position in failing:
            flaky[task.payloads[position]] -= 1
        return report(task, fail=failing, seconds=seconds)

    expired = False
    for step in range(3_000):
        if expire_at is not None and step == expire_at:
            seen, done = schedule.seen, schedule.done
            driver.record(schedule.expire(9.0))
            assert (schedule.read_at_expiry, schedule.done_at_expiry) == (seen, done)
            expired = True
            break
        running_before = {i for task in driver.running for i in task.indices()}
        new = driver.start(clock.now)
        new_indices = [i for task in new for i in task.indices()]
        assert len(new_indices) == len(set(new_indices))
        assert not set(new_indices) & running_before, "an item runs twice at once"
        assert not set(new_indices) & set(driver.results), "a finished item runs again"
        assert len(driver.running) <= max_in_flight
        if paced:
            assert all(len(task) == 1 for task in new)
        if window is not None:
            assert schedule.seen - schedule.done <= window
        assert schedule.done == len(driver.results)
        if schedule.finished:
            break
        wake = schedule.wake_at()
        must_finish = wake is None or wake <= clock.now
        if driver.running and (must_finish or data.draw(st.booleans(), label="finish")):
            task = driver.running[data.draw(st.integers(0, len(driver.running) - 1), label="which")]
            driver.finish(task, outcome(task), clock.now)
            clock.now += data.draw(STEPS, label="dt")
        else:
            assert wake is not None, "nothing running, nothing to wait for, and not finished"
            assert wake > clock.now
            clock.now = wake
    else:
        raise AssertionError("the run did not finish")

    expected = n if sized or not expired else schedule.read_at_expiry
    assert sorted(driver.results) == list(range(expected or 0))
    assert schedule.done == len(driver.results)
    assert schedule.succeeded == sum(result.ok for result in driver.results.values())
    if paced:
        assert limiter is not None
        assert len(limiter.granted_at) == len(driver.submitted)
        # Every reservation was granted or, never to start, cancelled; none just dropped.
        assert len(limiter.requested) == len(limiter.granted_at) + len(limiter.cancelled)
        assert len(limiter.finished) <= len(limiter.granted_at)  # not for attempts lost with a worker
        if not expired:
            assert limiter.cancelled == []

    asked: dict[int, list[int]] = {}
    for attempt, error in retry.asked:
        index = owner(error)
        assert index is not None
        asked.setdefault(index, []).append(attempt)
    for index, attempts in asked.items():
        assert attempts == list(range(1, len(attempts) + 1)), f"item {index}: attempts {attempts}"
        assert len(attempts) <= max_attempts
    for index, result in driver.results.items():
        if result.ok:
            assert result.value == value_of(index)
            assert len(asked.get(index, [])) < max_attempts
        elif isinstance(result.error, ItemTimeoutError):
            assert expired
            assert result.error.index == index
            cause = result.error.__cause__
            assert cause is None or owner(cause) == index
        else:
            assert owner(result.error) == index
            assert asked[index][-1] == max_attempts  # the policy gave up on the last attempt
    # A retry event for every failed attempt the policy did not give up on.
    retried = Counter({index: sum(a < max_attempts for a in attempts) for index, attempts in asked.items()})
    assert Counter(event.index for event in driver.retries) == +retried
    assert schedule.retries == len(driver.retries)
    if expired:
        assert schedule.finished
