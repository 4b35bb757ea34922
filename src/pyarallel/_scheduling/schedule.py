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
the input (``InputWindow``), pacing (``Pacer``), backoff (``Backoff``), reclaiming stalled
chunks (``Reclaimer``) and the size of chunks (``ChunkSizer``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from pyarallel._errors import ItemError, ItemTimeoutError, TaskLostError, WorkerCrashedError
from pyarallel._result import ItemResult, Successes
from pyarallel._scheduling.backoff import Backoff
from pyarallel._scheduling.chunk_sizer import ChunkSizer
from pyarallel._scheduling.events import Event, RetryEvent
from pyarallel._scheduling.input_window import InputWindow
from pyarallel._scheduling.items import Item, Task
from pyarallel._scheduling.pacer import Pacer
from pyarallel._scheduling.quarantine import Quarantine
from pyarallel._scheduling.reclaim import Reclaimer
from pyarallel._tasks import ChunkClaim
from pyarallel.contracts import MAX_TASK_LOSSES, FailedAttempt, RateLimiter, RetryDecision, RetryPolicy

__all__ = ["MAX_BARREN_ROUNDS", "Schedule"]

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
        ahead = queue_ahead and (limiter is None or paced_queue_ahead)
        self._max_in_flight = 2 * capacity if ahead else capacity
        chunking = bool(task_seconds) and limiter is None
        self._chunks = ChunkSizer(task_seconds) if chunking and task_seconds else None
        # A chunk that runs far longer than planned (an item in it is unexpectedly slow)
        # stops starting items: in this process it is reclaimed, elsewhere it reports early.
        self.chunk_budget = 10 * task_seconds + 0.005 if chunking and task_seconds else None
        self._reclaimer = Reclaimer(self.chunk_budget) if reclaim and self.chunk_budget else None
        self._pacer = Pacer(limiter) if limiter is not None else None
        self._retry = retry
        self._paused_until: float | None = None  # a retry decision paused the run until then
        self._ready: deque[Item] = deque()  # admitted, waiting for a worker
        self._backoff = Backoff()
        self._quarantine = Quarantine(give_up_after=MAX_BARREN_ROUNDS * self._max_in_flight)
        self._running: set[Task] = set()  # tasks submitted and not finished
        self.done = 0  # items finished
        self.succeeded = 0
        self.retries = 0
        self.expired = False  # set by expire()
        self.read_at_expiry: int | None = None  # items read and finished when it expired
        self.done_at_expiry: int | None = None

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
            and len(self._running) < self._max_in_flight
        )

    def admit(self, payload: Any) -> None:
        """Take one more input item (driver-fed schedules)."""
        self._ready.append(self._input.admit(payload))

    def close_input(self) -> None:
        """The driver-fed input is exhausted."""
        self._input.close()

    # -- starting tasks -------------------------------------------------------------------

    @property
    def paced(self) -> bool:
        """True when every attempt draws a rate-limit token before it starts."""
        return self._pacer is not None

    @property
    def token_due(self) -> float | None:
        """When the rate limiter will grant the next call, if an item is waiting for it."""
        return self._pacer.token_due if self._pacer is not None else None

    def has_work_to_start(self, now: float) -> bool:
        """True if an item is waiting to start (reading one item from the input, if need
        be, to find out): a driver asks before preparing a start it may not need."""
        self._ready.extend(self._backoff.release(now))
        if self._pacer is not None:
            self._pacer.token_due = None  # no token is due while nothing may start
        if self._paused(now):
            return False
        return self._quarantine.has_suspects or self._ensure_ready()

    def next_tasks(self, now: float) -> list[Task]:
        """The tasks to submit now. Call again after any task finishes or at ``wake_at()``.

        Each item in them has drawn its rate-limit token and counts one more attempt."""
        self._ready.extend(self._backoff.release(now))
        if self._pacer is not None:
            self._pacer.token_due = None  # set again below if a draw is refused
        if self._paused(now):
            return []
        if self._quarantine.active:
            return self._next_isolated_task(now)
        if self._pacer is not None:
            return self._next_paced_tasks(now, self._pacer)
        tasks: list[Task] = []
        while len(self._running) < self._max_in_flight:
            task_size = self._task_size()
            task = self._take_ready(task_size) if self._ready else self._input.take(task_size)
            if task is None:
                break
            self._start(task, now)
            tasks.append(task)
        return tasks

    def _paused(self, now: float) -> bool:
        """True while a retry decision with ``pause_run`` holds every start back."""
        if self._paused_until is None:
            return False
        if now < self._paused_until:
            return True
        self._paused_until = None
        return False

    def _next_paced_tasks(self, now: float, pacer: Pacer) -> list[Task]:
        """``next_tasks`` under a rate limit: one item per task, each drawing a token.

        The next item waits in READY, so that when its token comes due, drawing it is the
        first thing done (every microsecond between the due time and the draw lowers
        the achieved rate), and no token is drawn for an input that has run out."""
        tasks: list[Task] = []
        while len(self._running) < self._max_in_flight and self._ensure_ready():
            if not pacer.draw(now):
                break
            task = self._take_ready(1)
            self._start(task, now)
            tasks.append(task)
        return tasks

    def _next_isolated_task(self, now: float) -> list[Task]:
        """A suspect runs alone: once every task in flight has finished, and only then."""
        if self._running or not self._quarantine.has_suspects:
            return []
        if self._pacer is not None and not self._pacer.draw(now):
            return []
        task = Task.of([self._quarantine.next_alone()])
        task.isolated = self._quarantine.isolating = True
        self._start(task, now)
        return [task]

    def _start(self, task: Task, now: float) -> None:
        task.started_at = now
        if task.has_items:
            for item in task.items():
                if item.attempts == 1:
                    item.first_started = now
        self._running.add(task)
        if self._reclaimer is not None and len(task) > 1:
            self._reclaimer.watch(task, now)

    def _ensure_ready(self) -> bool:
        """Move one item from the input to READY if READY is empty; False if none is left."""
        if not self._ready:
            task = self._input.take(1)
            if task is None:
                return False
            self._give_back(task.items())  # onto READY, not started
        return True

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
        remaining = self._input.remaining(len(self._ready))
        return self._chunks.size(remaining, self._max_in_flight, self._capacity, self._window)

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
        """The run is ending early: chunks in flight start no further item."""
        if self._reclaimer is not None:
            self._reclaimer.stop()

    # -- waiting --------------------------------------------------------------------------

    def wake_at(self) -> float | None:
        """When ``next_tasks`` may have something new to start without any task finishing."""
        times = [self.token_due, self._backoff.next_ready, self._paused_until]
        if self._reclaimer is not None:
            times.append(self._reclaimer.next_deadline)
        return min((t for t in times if t is not None), default=None)

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
        self._running.discard(task)
        if task.isolated:
            self._quarantine.isolating = False
        reported = self._reclaimer.finished(task) if self._reclaimer is not None else 0
        if isinstance(values, BaseException):
            return self._fail_whole(task, values, now)
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
        if task.start >= 0:  # a block: its successes are settled in runs, not one by one
            return self._settle_block(task, values, failed, now)
        failures = set(failed)
        return [
            self._settle(item, position not in failures, value, now)
            for position, (item, value) in enumerate(zip(task.items(), values, strict=True))
        ]

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
        items = self._quarantine.sort(task, lost)
        events: list[Event] = []
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
        self._quarantine.hold(items.suspects)
        self._give_back(items.innocent)
        return events

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

    def _settle_block(self, task: Task, values: list[Any], failed: list[int], now: float) -> list[Event]:
        """A block's items: each run of consecutive successes as one ``Successes`` (the
        whole block, in the common case), each failure on its own."""
        events: list[Event] = []
        start, items = task.start, task.items() if task.has_items else None
        settled = 0  # positions before this one are settled
        for position in sorted(failed):
            if position > settled:
                events.append(self._succeed_run(start + settled, values[settled:position]))
            item = (
                items[position]
                if items is not None
                else Item(start + position, task.payloads[position], 1, task.started_at)
            )
            events.append(self._settle(item, False, values[position], now))
            settled = position + 1
        if settled < len(values):
            events.append(self._succeed_run(start + settled, values[settled:] if settled else values))
        return events

    def _succeed_run(self, start: int, values: list[Any]) -> Successes:
        count = len(values)
        self._input.finished(count)
        self.done += count
        self.succeeded += count
        self._quarantine.progress()
        return Successes(start, values)

    def _settle(self, item: Item, ok: bool, value: Any, now: float, *, progress: bool = True) -> Event:
        if progress:
            self._quarantine.progress()
        if not ok:
            error: BaseException = value
            if isinstance(error, ItemError) and error.index is None:
                error.index = item.index
            item.last_error = error
            delay = self._retry_delay(item, error, now) if self._retry is not None else None
            if delay is not None:
                self.retries += 1
                self._backoff.wait(item, now + delay)
                return RetryEvent(item.index, item.attempts, error, delay)
            result: ItemResult[Any] = ItemResult.failure(item.index, error)
        else:
            self.succeeded += 1
            result = ItemResult.success(item.index, value)
        self._input.finished(1)
        self.done += 1
        return result

    def _retry_delay(self, item: Item, error: BaseException, now: float) -> float | None:
        """Ask the retry policy about ``item``'s failed attempt: the delay before the next
        one (a pause of the whole run is recorded), or None to give up."""
        assert self._retry is not None
        failed = FailedAttempt(item.index, item.attempts, error, item.first_started, now - item.first_started)
        answer = self._retry.decide(failed)
        if answer is None:
            return None
        if isinstance(answer, RetryDecision):
            if answer.pause_run:
                self._paused_until = max(self._paused_until or now, now + answer.delay)
            return answer.delay
        return _checked_delay(self._retry, answer)

    def _give_back(self, items: list[Item]) -> None:
        """Return ``items``, unstarted (the attempt uncounted), to the front of READY."""
        for item in reversed(items):
            item.attempts -= 1
            self._ready.appendleft(item)

    # -- ending early ---------------------------------------------------------------------

    def expire(self, timeout: float) -> list[ItemResult[Any]]:
        """End the run now: a timeout failure for every unfinished item, including the items
        of a sized input that were never taken from it. An item that had failed an attempt
        keeps that error as the ``__cause__`` of its timeout."""
        self.read_at_expiry, self.done_at_expiry = self.seen, self.done
        last_errors: dict[int, BaseException | None] = {}
        for task in self._running:
            if task.has_items:
                last_errors.update((item.index, item.last_error) for item in task.items())
            else:
                last_errors.update(dict.fromkeys(task.indices()))
        waiting = [*self._ready, *self._quarantine.drain(), *self._backoff.drain()]
        last_errors.update((item.index, item.last_error) for item in waiting)
        last_errors.update(dict.fromkeys(self._input.untaken()))
        results: list[ItemResult[Any]] = []
        for index in sorted(last_errors):
            error = ItemTimeoutError(index, timeout)
            error.__cause__ = last_errors[index]
            results.append(ItemResult.failure(index, error))
        self.stop_claims()
        self._running.clear()
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
