"""The scheduler's decisions, free of any I/O: which items start next, what a finished
task means for each of its items, and what is left when a run stops early.

It knows nothing about threads, processes or event loops. A driver (``_sync_driver`` for
the blocking API) owns the clock, the backend and the waiting, and asks a ``Schedule``:

1. ``next_tasks(now)``: the tasks to submit now; each item in them has drawn its rate-limit
   token and counts one more attempt (``reclaim_stalled(now)`` first, for chunks stuck
   behind a slow item);
2. ``wake_at()``: the moment to ask again if no task finishes before (a backoff ending, a
   rate-limit token coming due), or ``None`` to wait for a task;
3. ``finish_task(task, outcomes, now)``: what happened to each item of a finished task: a
   final ``ItemResult``, or a ``RetryEvent`` when it will be tried again later;
4. ``expire(...)``: on timeout, a failure for every item not finished yet.

Every item's life is explicit: taken from the input (admitted), ready, running, waiting
out a retry backoff, suspect (lost with its worker, to run alone), finished. Each admitted
item finishes exactly once. The parts with state of their own live beside this module:
the input (``InputWindow``), pacing (``Lanes``), backoff (``Backoff``), reclaiming stalled
chunks (``Reclaimer``) and the size of chunks (``ChunkSizer``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pyarallel._errors import (
    ItemAbortedError,
    ItemCancelledError,
    ItemError,
    ItemTimeoutError,
    TaskLostError,
    TaskTimeoutError,
    WorkerCrashedError,
    WorkerInitError,
)
from pyarallel._result import ItemResult, Successes
from pyarallel._scheduling.backoff import Backoff
from pyarallel._scheduling.chunk_sizer import ChunkSizer
from pyarallel._scheduling.deadlines import Deadlines
from pyarallel._scheduling.events import Event, LostEvent, RetryEvent, WaitEvent
from pyarallel._scheduling.input_window import InputWindow
from pyarallel._scheduling.items import Item, Task
from pyarallel._scheduling.lanes import LOOKAHEAD, Lanes
from pyarallel._scheduling.quarantine import Quarantine
from pyarallel._scheduling.reclaim import Reclaimer
from pyarallel._tasks import ChunkClaim
from pyarallel.contracts import (
    MAX_TASK_LOSSES,
    FailedAttempt,
    RateLimiter,
    Reservation,
    RetryDecision,
    RetryPolicy,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyarallel._scheduling.resume import Resume

__all__ = ["ABORTED", "CANCELLED", "MAX_BARREN_ROUNDS", "Schedule"]

# Why a run stopped admitting work before its input ended (``Schedule.closed``).
ABORTED, CANCELLED = "aborted", "cancelled"

# A run gives up on lost tasks once this many rounds of tasks in flight have been lost
# with no item finishing in between (the workers die before running anything).
MAX_BARREN_ROUNDS = 3


class Schedule:
    """Decides what runs when, for one run.

    ``window`` bounds how many items are taken from ``source`` ahead of completion
    (``None``: no bound beyond what the free workers need). ``capacity`` is the number of
    tasks that can run at once; ``queue_ahead`` lets as many more wait in the backend's
    queue when there is no rate limit. ``task_seconds`` turns on chunking (see
    ``ChunkSizer``); ``reclaim`` lets stalled chunks give back their unstarted items (the
    backend runs tasks in this process). Input is read until ``deadline`` by ``clock``.

    With ``source=None`` the driver feeds the input itself (an async iterator): it asks
    ``needs_input()``, then calls ``admit(payload)`` or ``close_input()``.

    ``max_errors``: once that many items have failed for good, ``abort_due`` is set and
    the driver closes admission (``close_admission(ABORTED)``). ``task_timeout`` with
    ``enforce_task_timeout`` (the backend cannot stop an overdue task itself): every item
    travels alone, nothing is queued ahead, and ``overdue(now)`` fails the items that
    have run longer (their tasks are abandoned). ``resume``: a checkpointed job's earlier
    results, answered as items are read instead of running them again.
    ``max_task_items``: no task carries more items than a worker may run
    (``max_tasks_per_worker``).
    """

    def __init__(
        self,
        source: Iterator[Any] | None,
        *,
        total: int | None,
        window: int | None,
        capacity: int,
        limiter: RateLimiter | None,
        retry: RetryPolicy | None,
        task_seconds: float | None = None,
        queue_ahead: bool = True,
        reclaim: bool = False,
        paced_queue_ahead: bool = False,
        clock: Callable[[], float] = time.monotonic,
        deadline: float | None = None,
        max_errors: int | None = None,
        task_timeout: float | None = None,
        enforce_task_timeout: bool = False,
        resume: Resume | None = None,
        max_task_items: int | None = None,
    ) -> None:
        self._input = InputWindow(
            source,
            total=total,
            window=window,
            clock=clock,
            deadline=deadline,
            read_seconds=task_seconds or 0.01,
        )
        self._window = window
        self._capacity = capacity
        # Without a rate limit, a pool backend (``queue_ahead``) gets a second task per
        # worker queued so no worker waits for the scheduler between two tasks. A
        # rate-limited call must start when its token is drawn, and a coroutine starts as
        # soon as it is created, so then nothing is queued ahead, unless the backend's
        # readiness tells an idle worker from a busy one (``paced_queue_ahead``): the
        # driver then draws each token only once a worker is idle.
        # A task abandoned on its deadline must not have waited in a queue first.
        enforcing = task_timeout is not None and enforce_task_timeout
        ahead = queue_ahead and (limiter is None or paced_queue_ahead) and not enforcing
        self._max_in_flight = 2 * capacity if ahead else capacity
        chunking = bool(task_seconds) and limiter is None and not enforcing
        self._chunks = ChunkSizer(task_seconds) if chunking and task_seconds else None
        # A chunk that runs far longer than planned (an item in it is unexpectedly slow)
        # stops starting items: in this process it is reclaimed, elsewhere it reports early.
        self.chunk_budget = 10 * task_seconds + 0.005 if chunking and task_seconds else None
        self._reclaimer = Reclaimer(self.chunk_budget) if reclaim and self.chunk_budget else None
        self._limiter = limiter
        self._clock = clock
        self._lanes = Lanes(limiter, clock) if limiter is not None else None
        self._token_due: float | None = None  # when the rate limiter may grant the next start
        self._held_since: float | None = None  # a free worker has waited for the limiter since
        self._events: list[Event] = []  # items that failed while being started (see take_events)
        self._retry = retry
        self._paused_until: float | None = None  # a retry decision paused the run until then
        self._ready: deque[Item] = deque()  # admitted, waiting for a worker
        self._backoff = Backoff()
        self._quarantine = Quarantine(give_up_after=MAX_BARREN_ROUNDS * self._max_in_flight)
        self._running: set[Task] = set()  # tasks submitted and not finished
        self.done = 0  # items finished
        self.succeeded = 0
        self.retries = 0
        self.calls = 0  # attempts started
        self.restored = 0  # items answered from a checkpoint
        self.expired = False  # set by expire()
        self.read_at_expiry: int | None = None  # items read and finished when it expired
        self.done_at_expiry: int | None = None
        self._max_errors = max_errors
        self.failed_for_good = 0  # items whose final result is their own failure
        self.closed: str | None = None  # ABORTED or CANCELLED once admission closed
        self.read_at_close = 0  # items read from the input when admission closed
        self.ended_early = 0  # items failed by close_admission (never finished on their own)
        self._deadlines = Deadlines(task_timeout) if enforcing and task_timeout is not None else None
        self._resume = resume if resume is not None and not resume.empty else None
        self._max_task_items = max_task_items  # a worker may run no more (max_tasks_per_worker)

    # -- the input ------------------------------------------------------------------------

    @property
    def total(self) -> int | None:
        """The number of input items, when known (up front, or once a sized input proved
        its ``len()`` wrong by ending)."""
        return self._input.total

    @property
    def declared_total(self) -> int | None:
        """The number of input items its ``len()`` gave when the run started."""
        return self._input.declared_total

    @property
    def size_mismatch(self) -> bool:
        """True once a sized input has given more or fewer items than its ``len()`` said."""
        return self._input.size_mismatch

    @property
    def seen(self) -> int:
        """Items taken from the input so far."""
        return self._input.seen

    @property
    def finished(self) -> bool:
        """True once the input is exhausted and every item taken from it has finished."""
        return self._input.exhausted and not self._input.open

    def needs_input(self) -> bool:
        """True when a driver-fed schedule has a free slot and nothing ready to fill it."""
        return (
            self._input.has_room()
            and not self._ready
            and not self._quarantine.active
            and self._busy < self._max_in_flight
            and (self._lanes is None or self._wants_lookahead(self._lanes))
        )

    @staticmethod
    def _wants_lookahead(lanes: Lanes) -> bool:
        """True when a paced run should read one more item: none is waiting, or every key
        waiting is out of budget and another key may come next (keyed limits only)."""
        return not lanes.count or (lanes.keyed and lanes.all_blocked and lanes.count < LOOKAHEAD)

    def admit(self, payload: Any) -> None:
        """Take one more input item (driver-fed schedules)."""
        item = self._input.admit(payload)
        if self._resume is not None:
            restored = self._resume.restore(item.index, payload)
            if restored is not None:
                self._restored(restored)
                return
        self._ready.append(item)

    @property
    def _busy(self) -> int:
        """Tasks holding a worker: running, or abandoned on their deadline and still running."""
        deadlines = self._deadlines
        return len(self._running) + (deadlines.abandoned if deadlines is not None else 0)

    @property
    def _failing_under_max_errors(self) -> bool:
        """True once an item has failed (or been retried) in a run with ``max_errors``:
        every call from then on may be one more past the limit."""
        return self._max_errors is not None and bool(self.failed_for_good or self.retries)

    @property
    def _in_flight_limit(self) -> int:
        """How many tasks may be in flight: none queued ahead of the workers once items
        fail under ``max_errors``."""
        return self._capacity if self._failing_under_max_errors else self._max_in_flight

    def close_input(self) -> None:
        """The driver-fed input is exhausted."""
        self._input.close()

    # -- starting tasks -------------------------------------------------------------------

    @property
    def paced(self) -> bool:
        """True when every attempt draws a rate-limit token before it starts."""
        return self._lanes is not None

    @property
    def token_due(self) -> float | None:
        """When the rate limiter will grant the next call, if an item is waiting for it."""
        return self._token_due

    def end_wait(self, now: float) -> WaitEvent | None:
        """The wait for the rate limiter still under way as the run ends, if any (see
        ``WaitEvent``); ended by this call."""
        since, self._held_since = self._held_since, None
        return None if since is None else WaitEvent("rate_limit", now - since)

    @property
    def has_events(self) -> bool:
        """True when items have ended outside ``finish_task`` (see ``take_events``)."""
        return bool(self._events)

    def take_events(self) -> list[Event]:
        """Items that failed while being started (the rate limiter refused them for good);
        a driver delivers them after ``next_tasks`` or ``has_work_to_start``."""
        events, self._events = self._events, []
        return events

    def has_work_to_start(self, now: float) -> bool:
        """Under a rate limit, True if an item is waiting to start (reading one item from
        the input, if need be, to find out): a driver asks before preparing a start it may
        not need (``Backend.until_ready``). Without one, always True: ``start_tasks``
        finds out itself."""
        self._ready.extend(self._backoff.release(now))
        self._token_due = None  # no token is due while nothing may start
        if self._paused(now):
            return False
        if self._quarantine.has_suspects:
            return True
        lanes = self._lanes
        if lanes is None:
            return True
        return (lanes.count > 0 and not self._ready) or self._fill_lanes(lanes, now, ahead=False)

    def next_tasks(self, now: float) -> list[Task]:
        """The tasks to submit now. Call again after any task finishes or at ``wake_at()``.

        Each item in them has drawn its rate-limit token and counts one more attempt."""
        return list(self.start_tasks(now))

    def start_tasks(self, now: float) -> Iterator[Task]:
        """``next_tasks``, one task at a time, for a driver that submits each before it
        takes the next: under a rate limit, the next item is read and asks the limiter
        only after the one granted before it was submitted, so it starts on time."""
        self._ready.extend(self._backoff.release(now))
        self._token_due = None  # set again below if a draw is refused
        if self._paused(now) or self.closed is not None:
            return
        if self._quarantine.active:
            yield from self._next_isolated_task(now)
            return
        if self._lanes is not None:
            yield from self._next_paced_tasks(now, self._lanes)
            return
        tasks: list[Task] = []
        while self._busy < self._in_flight_limit:
            task_size = self._task_size()
            task = self._take_ready(task_size) if self._ready else self._take_fresh(task_size)
            if task is None:
                break
            self._start(task, now)
            tasks.append(task)
        yield from tasks

    def _paused(self, now: float) -> bool:
        """True while a retry decision with ``pause`` holds every start back (no rate limit)."""
        if self._paused_until is None:
            return False
        if now < self._paused_until:
            return True
        self._paused_until = None
        return False

    def _next_paced_tasks(self, now: float, lanes: Lanes) -> Iterator[Task]:
        """``start_tasks`` under a rate limit: one item per task, each granted its
        reservation, lanes (keys) in turn.

        The next item waits in its lane, so that when its token comes due, drawing it is
        the first thing done (every microsecond between the due time and the draw lowers
        the achieved rate), and no token is drawn for an input that has run out."""
        while self._busy < self._in_flight_limit and (
            (lanes.count > 0 and not self._ready) or self._fill_lanes(lanes, now, ahead=False)
        ):
            item = lanes.take(now)
            while item is None and self._fill_lanes(lanes, now, ahead=True):
                item = lanes.take(now)  # a new key may have budget
            if item is None:
                self._token_due = lanes.due
                if self._held_since is None:
                    self._held_since = now
                return
            if self._held_since is not None:
                self._events.append(WaitEvent("rate_limit", now - self._held_since))
                self._held_since = None
            task = Task.of([item])
            self._start(task, now)
            yield task

    def _fill_lanes(self, lanes: Lanes, now: float, *, ahead: bool) -> bool:
        """Queue every ready item in its lane, then read from the input: one item if none
        is waiting; with ``ahead``, one more while every key waiting is out of budget
        (keyed limits only), in case the next is of another key. True if an item is
        waiting (with ``ahead``: if one was queued just now)."""
        queued = False
        while self._ready:
            queued = self._queue(lanes, self._ready.popleft(), now) or queued
        if ahead:
            return queued or (self._wants_lookahead(lanes) and self._read_into(lanes, now) is True)
        while not lanes.count:
            if self._read_into(lanes, now) is None:
                return False
        return True

    def _read_into(self, lanes: Lanes, now: float) -> bool | None:
        """Read one item from the input into its lane: None if there was none to read,
        False if the limiter refused it for good (it has failed), True if it was queued."""
        task = self._take_fresh(1)
        if task is None:
            return None
        (item,) = task.items()
        item.attempts = 0  # not started yet: ``Task.of`` counts the attempt
        return self._queue(lanes, item, now)

    def _queue(self, lanes: Lanes, item: Item, now: float) -> bool:
        """Queue ``item`` in its lane; an item the limiter refuses for good fails now."""
        error = lanes.add(item)
        if error is None:
            return True
        self._events.append(self._settle(item, False, error, now, retry=False))
        return False

    def _take_fresh(self, size: int) -> Task | None:
        """A block of up to ``size`` fresh items from the input; with ``resume``, items
        an earlier run finished are answered from the checkpoint instead (the block then
        holds only the items that must run, or the next block is read)."""
        resume = self._resume
        while True:
            task = self._input.take(size)
            if task is None or resume is None:
                return task
            start, payloads = task.start, task.payloads
            restored = [resume.restore(index, payload) for index, payload in enumerate(payloads, start)]
            if not any(restored):
                return task
            for result in restored:
                if result is not None:
                    self._restored(result)
            left = [
                Item(start + position, payload)
                for position, (payload, result) in enumerate(zip(payloads, restored, strict=True))
                if result is None
            ]
            if left:
                return Task.of(left)

    def _restored(self, result: ItemResult[Any]) -> None:
        """An item finished by an earlier run: its stored result is its final one."""
        self.restored += 1
        self._input.finished(1)
        self.done += 1
        if result.ok:
            self.succeeded += 1
        self._events.append(result)

    def _next_isolated_task(self, now: float) -> list[Task]:
        """A suspect runs alone: once every task in flight has finished, and only then."""
        if self._running or not self._quarantine.has_suspects:
            return []
        if self._lanes is not None and not self._reserve_alone(self._quarantine.peek(), now):
            return []
        task = Task.of([self._quarantine.next_alone()])
        task.isolated = self._quarantine.isolating = True
        self._start(task, now)
        return [task]

    def _reserve_alone(self, item: Item, now: float) -> bool:
        """Grant ``item`` (a suspect, to run alone) its reservation: True once granted."""
        assert self._limiter is not None
        if item.reservation is None:
            try:
                item.reservation = self._limiter.request(item.payload)
            except Exception as error:
                self._quarantine.next_alone()
                self._events.append(self._settle(item, False, error, now, retry=False))
                return False
        wait = item.reservation.try_acquire()
        if wait > 0:
            self._token_due = self._clock() + wait  # from when the limiter answered
            return False
        return True

    def _start(self, task: Task, now: float) -> None:
        task.started_at = now
        self.calls += len(task)
        if self._deadlines is not None:
            self._deadlines.started(task, now)
        if task.has_items:
            for item in task.items():
                if item.attempts == 1:
                    item.first_started = now
        self._running.add(task)
        if self._reclaimer is not None and len(task) > 1:
            self._reclaimer.watch(task, now)

    def _take_ready(self, size: int) -> Task:
        """A task of up to ``size`` items from the front of READY (retried or given back),
        no larger than any of its items' ``group_limit``."""
        ready = self._ready
        first = ready.popleft()
        items, limit = [first], min(size, first.group_limit)
        while len(items) < limit and ready and ready[0].group_limit > len(items):
            limit = min(limit, ready[0].group_limit)
            items.append(ready.popleft())
        return Task.of(items)

    def _task_size(self) -> int:
        if self._chunks is None:
            return 1
        if self._failing_under_max_errors:
            return 1  # items are failing: find out before more calls are spent on them
        remaining = self._input.remaining(len(self._ready))
        size = self._chunks.size(remaining, self._max_in_flight, self._capacity, self._window)
        return size if self._max_task_items is None else min(size, self._max_task_items)

    # -- chunks in this process -----------------------------------------------------------

    def claim(self, task: Task) -> ChunkClaim | None:
        """The claim through which ``task``'s items are handed out, when it can be reclaimed."""
        return self._reclaimer.claim(task) if self._reclaimer is not None else None

    def reclaim_stalled(self, now: float) -> list[Event]:
        """Chunks that have run far longer than planned (an item in them is unexpectedly
        slow) give back their unstarted items, to run elsewhere, and report the items they
        have finished; only the items still running stay with them."""
        if self._reclaimer is None:
            return []
        events: list[Event] = []
        for task, claim in self._reclaimer.stalled(now):
            started = claim.revoke()
            finished = min(len(claim.values), started)
            failed = {position for position in claim.failed if position < finished}
            items = task.items()
            self._give_back(items[started:])
            values = claim.values
            events.extend(
                self._settle(items[position], position not in failed, values[position], now)
                for position in range(finished)
            )
            task.keep_only(items[finished:started])
            self._reclaimer.reclaimed(task, finished)
        return events

    def stop_claims(self) -> None:
        """The run is ending early: chunks in flight start no further item, and items
        waiting for the rate limiter give up their reservations (taking nothing)."""
        if self._reclaimer is not None:
            self._reclaimer.stop()
        if self._lanes is not None:
            self._ready.extend(self._lanes.drain())
        self._cancel_reservations([*self._ready, *self._quarantine.waiting()])

    @staticmethod
    def _cancel_reservations(items: list[Item]) -> None:
        """Cancel the reservations of ``items``, which will not start."""
        for item in items:
            if item.reservation is not None:
                item.reservation.cancel()
                item.reservation = None

    # -- waiting --------------------------------------------------------------------------

    def wake_at(self) -> float | None:
        """When ``next_tasks`` may have something new to start without any task finishing
        (or, with a ``task_timeout`` to enforce, a running item becomes overdue)."""
        times = [self.token_due, self._backoff.next_ready, self._paused_until]
        if self._reclaimer is not None:
            times.append(self._reclaimer.next_deadline)
        if self._deadlines is not None:
            times.append(self._deadlines.next_due)
        return min((t for t in times if t is not None), default=None)

    def overdue(self, now: float) -> list[Event]:
        """Fail the item of every task that has run longer than ``task_timeout`` (when the
        scheduler enforces it) with ``TaskTimeoutError``; it may be retried. The task is
        abandoned: its worker cannot be stopped, so it keeps its slot until it returns
        (``finish_task`` then ignores its outcome)."""
        deadlines = self._deadlines
        if deadlines is None:
            return []
        events: list[Event] = []
        for task in deadlines.abandon_overdue(now):
            self._running.discard(task)
            (item,) = task.items()
            events.append(self._settle(item, False, deadlines.overdue_error(item), now))
        return events

    # -- finished tasks -------------------------------------------------------------------

    def finish_task(
        self,
        task: Task,
        values: list[Any] | BaseException,
        failed: list[int],
        now: float,
        seconds: float | None = None,
    ) -> list[Event]:
        """Record a finished task: ``values`` has one return value or exception per item
        that ran, ``failed`` the positions of the exceptions (see ``TaskReport``); a task
        that stopped early reports only its first items, and the rest run again. Or
        ``values`` is the exception that failed the whole task. ``seconds`` is how long it
        ran."""
        deadlines = self._deadlines
        if deadlines is not None and deadlines.returned(task):
            return []  # failed on its deadline already: its worker is free again
        self._running.discard(task)
        if task.isolated:
            self._quarantine.isolating = False
        reported = self._reclaimer.finished(task) if self._reclaimer is not None else 0
        if isinstance(values, BaseException):
            if isinstance(values, WorkerInitError):
                raise values  # no item can run: the run fails with it
            return self._fail_whole(task, values, now)
        if deadlines is not None and seconds is not None and seconds > deadlines.timeout:
            return self._overran(task, deadlines, seconds, now)  # it returned, but too late (inline)
        if seconds is not None:
            self._ran_from(task, now - seconds)
            if self._chunks is not None and values:
                self._chunks.observe(seconds, len(values))
        if reported:  # the first ``reported`` items were settled when the task was reclaimed
            values = values[reported:]
            failed = [position - reported for position in failed if position >= reported]
        if len(values) > len(task):
            raise ValueError(f"a task of {len(task)} items reported {len(values)} outcomes")
        if len(values) < len(task):  # it stopped early: the rest never started
            items = task.items()
            self._give_back(items[len(values) :])
            task.keep_only(items[: len(values)])
        each = seconds / len(values) if seconds is not None and values else 0.0
        if task.start >= 0:  # a block: its successes are settled in runs, not one by one
            return self._settle_block(task, values, failed, now, each)
        failures = set(failed)
        return [
            self._settle(item, position not in failures, value, now, seconds=each)
            for position, (item, value) in enumerate(zip(task.items(), values, strict=True))
        ]

    def _overran(self, task: Task, deadlines: Deadlines, seconds: float, now: float) -> list[Event]:
        """``task`` (one item, under an enforced ``task_timeout``) returned after running
        ``seconds``, longer than allowed: its attempt fails like an overdue one."""
        (item,) = task.items()
        return [self._settle(item, False, deadlines.overran_error(item, seconds), now, seconds=seconds)]

    def unstarted(self, task: Task) -> None:
        """The driver cancelled ``task`` before it started: its items are given back (and,
        admission being closed, end as never started)."""
        self._running.discard(task)
        if self._deadlines is not None:
            self._deadlines.forget(task)
        if self._reclaimer is not None:
            self._reclaimer.finished(task)
        self._give_back(task.items())

    @staticmethod
    def _ran_from(task: Task, began: float) -> None:
        """The task began running at ``began`` (its end, less the time it ran): time spent
        queued in the backend is not part of its items' first attempt."""
        if began <= task.started_at:
            return
        task.started_at = began
        if task.has_items:
            for item in task.items():
                if item.attempts == 1:
                    item.first_started = began

    def _fail_whole(self, task: Task, error: BaseException, now: float) -> list[Event]:
        """The backend could not run ``task`` as a whole. The task function reports each
        item's own exception, so for a group this is no item's failure (one argument or
        result could not be pickled, the executor was shut down...): its items are given
        back in halves, down to one, until the culprit runs alone. A lone item fails."""
        if isinstance(error, TaskLostError):
            return self._lose(task, error, now)
        items = task.items()
        if len(items) == 1:
            return [self._settle(items[0], False, error, now)]
        limit = max(1, len(items) // 2)
        for item in items:
            item.group_limit = min(item.group_limit, limit)
        self._give_back(items)
        return []

    def _lose(self, task: Task, lost: TaskLostError, now: float) -> list[Event]:
        """The worker running ``task`` went away (see ``TaskLostError``): the item that
        crashed it fails, suspects wait to run alone, the rest run again, uncounted."""
        notice = LostEvent(tuple(task.indices()), lost)
        if lost.overdue and lost.started:
            return [notice, *self._lose_overdue(task, lost, now)]
        items = self._quarantine.sort(task, lost)
        events: list[Event] = [notice]
        if items.crashed is not None:
            error = _crash_error(items.crashed, lost, alone=task.isolated and not lost.crashed)
            events.append(self._settle(items.crashed, False, error, now))
        else:
            self._quarantine.lost_without_progress()
        events.extend(self._lost_too_often(items.suspects, lost, now))
        if self._quarantine.giving_up:
            # Tasks keep being lost with nothing finishing: give up on their items. These
            # failures are no progress, so the next lost task fails at once as well.
            events.extend(
                self._settle(item, False, _barren_error(item, lost), now, progress=False)
                for item in items.suspects + items.innocent
            )
            return events
        self.calls -= len(items.suspects)  # their attempts were lost: not counted
        for item in items.suspects:
            item.reservation = None  # a new attempt makes a new reservation
        self._quarantine.hold(items.suspects)
        self._give_back(items.innocent)
        return events

    def _lose_overdue(self, task: Task, lost: TaskLostError, now: float) -> list[Event]:
        """The backend stopped the worker of ``task`` because its running item overran
        ``task_timeout``: that attempt fails (and may be retried); the task's other items
        run again, uncounted. It is no crash: nothing goes to the quarantine."""
        items = task.items()
        position = (lost.started or 1) - 1
        overdue = items[position]
        self._give_back(items[:position] + items[position + 1 :])
        error = TaskTimeoutError(f"the attempt ran longer than task_timeout ({lost})", index=overdue.index)
        error.__cause__ = lost.__cause__
        return [self._settle(overdue, False, error, now)]

    def _lost_too_often(self, items: list[Item], lost: TaskLostError, now: float) -> list[Event]:
        """Count one more loss for each of ``items`` (the suspects of a lost task: items
        that may have caused it); those lost more than ``MAX_TASK_LOSSES`` times fail (and
        leave ``items``), the rest run again. Innocent items (not started, or whose worker
        was alive) are not counted: another item's crash is no fault of theirs."""
        events: list[Event] = []
        kept: list[Item] = []
        for item in items:
            item.losses += 1
            if item.losses > MAX_TASK_LOSSES:
                events.append(self._settle(item, False, _lost_error(item, lost), now, progress=False))
            else:
                kept.append(item)
        items[:] = kept
        return events

    def _settle_block(
        self, task: Task, values: list[Any], failed: list[int], now: float, each: float
    ) -> list[Event]:
        """A block's items: each run of consecutive successes as one ``Successes`` (the
        whole block, in the common case), each failure on its own. ``each`` is the
        seconds each item took (the task's time shared equally)."""
        events: list[Event] = []
        start, items = task.start, task.items() if task.has_items else None
        settled = 0  # positions before this one are settled
        for position in sorted(failed):
            if position > settled:
                events.append(self._succeed_run(start + settled, values[settled:position], each))
            item = (
                items[position]
                if items is not None
                else Item(start + position, task.payloads[position], 1, task.started_at)
            )
            events.append(self._settle(item, False, values[position], now, seconds=each))
            settled = position + 1
        if settled < len(values):
            events.append(self._succeed_run(start + settled, values[settled:] if settled else values, each))
        return events

    def _succeed_run(self, start: int, values: list[Any], each: float) -> Successes:
        count = len(values)
        self._input.finished(count)
        self.done += count
        self.succeeded += count
        self._quarantine.progress()
        return Successes(start, values, each)

    def _settle(
        self,
        item: Item,
        ok: bool,
        value: Any,
        now: float,
        *,
        progress: bool = True,
        retry: bool = True,
        seconds: float = 0.0,
    ) -> Event:
        """The end of one attempt of ``item``, which ran ``seconds``: its final result, or a
        ``RetryEvent`` when the retry policy tries it again (not asked with ``retry=False``,
        nor once admission is closed)."""
        if progress:
            self._quarantine.progress()
        attempts = item.attempts
        result: ItemResult[Any] = (
            ItemResult.success(item.index, value, attempts, seconds)
            if ok
            else ItemResult.failure(item.index, value, attempts, seconds)
        )
        reservation = item.reservation
        if reservation is not None:
            item.reservation = None
            try:
                if reservation.finished(result) and self._lanes is not None:
                    self._lanes.wake()  # budget was given back: waiting items may start sooner
            except Exception as settle_error:  # a settle function failed: the item fails, not the run
                ok, retry, reservation = False, False, None
                result = ItemResult.failure(item.index, settle_error, attempts, seconds)
        if not ok:
            error = result.error
            assert error is not None
            if isinstance(error, ItemError) and error.index is None:
                error.index = item.index
            item.last_error = error
            retry = retry and self._retry is not None and self.closed is None
            decision = self._retry_decision(item, error, now) if retry else None
            if decision is not None:
                self._throttle(decision, reservation, now)
                self.retries += 1
                self._backoff.wait(item, now + decision.delay)
                return RetryEvent(item.index, item.attempts, error, decision.delay)
            self.failed_for_good += 1
        else:
            self.succeeded += 1
        self._input.finished(1)
        self.done += 1
        return result

    def _retry_decision(self, item: Item, error: BaseException, now: float) -> RetryDecision | None:
        """Ask the retry policy about ``item``'s failed attempt: when to try it again (and
        whether the service asked for a pause), or None to give up."""
        assert self._retry is not None
        failed = FailedAttempt(
            item.index,
            item.attempts,
            error,
            item.first_started,
            now - item.first_started,
            self.calls,
            self.retries,
        )
        answer = self._retry.decide(failed)
        if answer is None or isinstance(answer, RetryDecision):
            return answer
        return RetryDecision(_checked_delay(self._retry, answer))

    def _throttle(self, decision: RetryDecision, reservation: Reservation | None, now: float) -> None:
        """Pass on what a retry decision says about the service: the limiter the attempt
        drew from is told (paused, for a ``pause``), else a pause holds this run's starts."""
        if reservation is not None:
            if decision.throttled:
                reservation.throttled(decision.delay if decision.pause else None)
        elif decision.pause:
            paused_until = max(self._paused_until or now, now)
            if now + decision.delay > paused_until:
                self._events.append(WaitEvent("pause", now + decision.delay - paused_until))
                self._paused_until = now + decision.delay

    def _give_back(self, items: list[Item]) -> None:
        """Return ``items``, unstarted (the attempt uncounted), to the front of READY;
        once admission is closed they end instead (see ``close_admission``)."""
        self.calls -= len(items)
        for item in reversed(items):
            item.attempts -= 1
            item.reservation = None  # a new attempt makes a new reservation
            self._ready.appendleft(item)
        if self.closed is not None:
            self._events.extend(self._end_early(self._take_waiting()))

    # -- ending early ---------------------------------------------------------------------

    @property
    def abort_due(self) -> bool:
        """True once ``max_errors`` items have failed for good and admission is still open."""
        limit = self._max_errors
        return limit is not None and self.failed_for_good >= limit and self.closed is None

    def close_admission(self, why: str) -> list[ItemResult[Any]]:
        """Admit no more work (``why``: ``ABORTED`` or ``CANCELLED``): every item not
        running ends now, as ``ItemAbortedError`` or ``ItemCancelledError`` (including the
        items of a sized input never read), no retry is started, chunks in this process
        start no further item, and the run finishes once the tasks running have."""
        if self.closed is not None or self.expired:
            return []
        self.closed = why
        self.read_at_close = self.seen
        self.stop_claims()
        results = self._end_early(self._take_waiting())
        untaken = self._input.untaken()
        results.extend(ItemResult.failure(index, self._early_error(index, None), 0, 0.0) for index in untaken)
        self.done += len(untaken)
        self.ended_early += len(untaken)
        self._input.seen = max(self._input.seen, self.total or 0)
        self._input.close()
        return results

    def _take_waiting(self) -> list[Item]:
        """Every admitted item that is not running, taken out of the schedule."""
        lanes = self._lanes.drain() if self._lanes is not None else []
        waiting = [*self._ready, *lanes, *self._quarantine.drain(), *self._backoff.drain()]
        self._ready.clear()
        self._cancel_reservations(waiting)
        return waiting

    def _end_early(self, items: list[Item]) -> list[ItemResult[Any]]:
        """``items`` (not running) end as the failure admission closed with."""
        failure = ItemResult.failure
        results: list[ItemResult[Any]] = [
            failure(item.index, self._early_error(item.index, item.last_error), item.attempts, 0.0)
            for item in sorted(items, key=lambda item: item.index)
        ]
        self._input.finished(len(results))
        self.done += len(results)
        self.ended_early += len(results)
        return results

    def _early_error(self, index: int, cause: BaseException | None) -> ItemError:
        if self.closed == ABORTED:
            error: ItemError = ItemAbortedError(
                f"the run was aborted (max_errors={self._max_errors} items had failed) before it finished",
                index=index,
            )
        else:
            error = ItemCancelledError("the run was stopped before it finished", index=index)
        error.__cause__ = cause
        return error

    def expire(self, timeout: float) -> list[ItemResult[Any]]:
        """End the run now: a timeout failure for every unfinished item, including the items
        of a sized input that were never taken from it. An item that had failed an attempt
        keeps that error as the ``__cause__`` of its timeout."""
        self.read_at_expiry, self.done_at_expiry = self.seen, self.done
        # index -> (the last failed attempt's error, the attempts started)
        unfinished: dict[int, tuple[BaseException | None, int]] = {}
        for task in self._running:
            if task.has_items:
                unfinished.update((item.index, (item.last_error, item.attempts)) for item in task.items())
            else:
                unfinished.update(dict.fromkeys(task.indices(), (None, 1)))
        waiting = self._take_waiting()
        unfinished.update((item.index, (item.last_error, item.attempts)) for item in waiting)
        unfinished.update(dict.fromkeys(self._input.untaken(), (None, 0)))
        results: list[ItemResult[Any]] = []
        for index in sorted(unfinished):
            cause, attempts = unfinished[index]
            error = ItemTimeoutError(index, timeout)
            error.__cause__ = cause
            results.append(ItemResult.failure(index, error, attempts, 0.0))
        self.stop_claims()
        self._running.clear()
        if self._deadlines is not None:
            self._deadlines.clear()
        self._ready.clear()
        self._input.close()
        self._input.open = 0
        self._input.seen = max(self._input.seen, self.total or 0)
        self.expired = True
        self.done += len(results)
        return results


def _crash_error(item: Item, lost: TaskLostError, *, alone: bool) -> WorkerCrashedError:
    message = f"its worker died again while it ran alone, so it is the cause ({lost})" if alone else str(lost)
    error = WorkerCrashedError(message, index=item.index)
    error.__cause__ = lost.__cause__
    return error


def _checked_delay(policy: RetryPolicy, answer: object) -> float:
    """A policy's answer that is a number of seconds, else a ``TypeError`` or ``ValueError``
    naming the policy (a bad answer ends the run: the policy is broken, not the item)."""
    if isinstance(answer, bool) or not isinstance(answer, int | float):
        raise TypeError(
            f"the retry policy {policy!r} answered {answer!r}; decide() must return None, a "
            "number of seconds >= 0 or a RetryDecision"
        )
    if not answer >= 0:  # negative or NaN
        raise ValueError(f"the retry policy {policy!r} answered a delay of {answer!r}; it must be >= 0")
    return float(answer)


def _lost_error(item: Item, lost: TaskLostError) -> WorkerCrashedError:
    error = WorkerCrashedError(
        f"its task was lost with its worker {item.losses} times (at most {MAX_TASK_LOSSES} are run "
        f"again): {lost}",
        index=item.index,
    )
    error.__cause__ = lost.__cause__
    return error


def _barren_error(item: Item, lost: TaskLostError) -> WorkerCrashedError:
    error = WorkerCrashedError(
        f"its task was lost {MAX_BARREN_ROUNDS} rounds in a row with no item finishing in between "
        f"(the workers keep dying before they run anything): {lost}",
        index=item.index,
    )
    error.__cause__ = lost.__cause__
    return error
