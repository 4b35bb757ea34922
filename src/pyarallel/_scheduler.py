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
out a retry backoff, finished. Each admitted item finishes exactly once.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyarallel._errors import ItemError, ItemTimeoutError
from pyarallel._result import ItemResult
from pyarallel._tasks import ChunkClaim, Outcome
from pyarallel.contracts import RateLimiter, RetryPolicy

__all__ = ["Item", "RetryEvent", "Schedule", "Task"]


@dataclass(slots=True, eq=False)
class Item:
    """One input item and the number of attempts started for it."""

    index: int
    payload: Any
    attempts: int = 0


Task = list[Item]


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Item ``index`` failed attempt ``attempt`` with ``error`` and runs again after ``delay``."""

    index: int
    attempt: int
    error: BaseException
    delay: float


class Schedule:
    """Decides what runs when, for one run.

    ``window`` bounds how many items are taken from ``source`` ahead of completion
    (``None``: no bound beyond what the free workers need). ``capacity`` is the number of
    tasks that can run at once; ``queue_ahead`` lets as many more wait in the backend's
    queue when there is no rate limit. ``task_seconds`` turns on chunking (see
    ``_ChunkSizer``).

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
    ) -> None:
        self._source = source
        self.total = total
        self._window = window
        # Without a rate limit, a pool backend (``queue_ahead``) gets a second task per
        # worker queued so no worker waits for the scheduler between two tasks. A
        # rate-limited call must start when its token is drawn, and a coroutine starts as
        # soon as it is created, so then nothing is queued ahead.
        self._max_in_flight = 2 * capacity if queue_ahead and limiter is None else capacity
        self._chunks = _ChunkSizer(task_seconds) if task_seconds and limiter is None else None
        # Chunks running in this process can give back the items they have not started
        # when they run far longer than planned (one item is unexpectedly slow).
        self._stall_seconds = 10 * task_seconds + 0.005 if reclaim and task_seconds else None
        self._claims: dict[int, tuple[Task, ChunkClaim, float]] = {}  # id(task) -> ..., deadline
        self._reported: dict[int, int] = {}  # id(task) -> outcomes already settled on reclaim
        self._limiter = limiter
        self._retry = retry
        self._ready: deque[Item] = deque()  # admitted, waiting for a worker
        self._backoff: list[tuple[float, int, Item]] = []  # heap: (ready time, index, item)
        self._unfinished: dict[int, Item] = {}  # every admitted item not finished yet
        self._in_flight = 0  # tasks submitted and not finished
        self._token_due: float | None = None  # when the rate limiter said to ask again
        self._exhausted = False
        self.seen = 0  # items taken from the input
        self.done = 0  # items finished
        self.succeeded = 0
        self.retries = 0
        self.expired = False  # set by expire()

    @property
    def finished(self) -> bool:
        """True once the input is exhausted and every item taken from it has finished."""
        return self._exhausted and not self._unfinished

    def needs_input(self) -> bool:
        """True when a driver-fed schedule has a free slot and nothing ready to fill it."""
        return (
            not self._exhausted
            and not self._ready
            and self._in_flight < self._max_in_flight
            and (self._window is None or len(self._unfinished) < self._window)
        )

    def admit(self, payload: Any) -> None:
        """Take one more input item (driver-fed schedules)."""
        self._ready.append(self._new_item(payload))

    def close_input(self) -> None:
        """The driver-fed input is exhausted."""
        self._exhausted = True

    def next_tasks(self, now: float) -> list[Task]:
        """The tasks to submit now. Call again after any task finishes or at ``wake_at()``."""
        self._release_backoffs(now)
        self._token_due = None
        tasks: list[Task] = []
        while self._in_flight < self._max_in_flight:
            item = self._next_ready()
            if item is None:
                break
            if self._limiter is not None:
                wait = self._limiter.try_acquire()
                if wait > 0:
                    self._ready.appendleft(item)
                    self._token_due = now + wait
                    break
            task = [item]
            if self._chunks is not None:
                self._fill(task, self._chunks.size(self._remaining(), self._max_in_flight, self._window))
                if len(task) > 1 and self._stall_seconds is not None:
                    self._claims[id(task)] = (task, ChunkClaim(len(task)), now + self._stall_seconds)
            for member in task:
                member.attempts += 1
            self._in_flight += 1
            tasks.append(task)
        return tasks

    def reclaim_stalled(self, now: float) -> list[ItemResult[Any] | RetryEvent]:
        """Chunks that have run far longer than planned (an item in them is unexpectedly
        slow) give back their unstarted items, to run elsewhere, and report the items they
        have finished; only the items still running stay with them."""
        events: list[ItemResult[Any] | RetryEvent] = []
        for key, (task, claim, deadline) in list(self._claims.items()):
            if deadline > now:
                continue
            del self._claims[key]
            started = claim.revoke()
            finished = claim.outcomes[: min(len(claim.outcomes), started)]
            for item in reversed(task[started:]):
                item.attempts -= 1
                self._ready.appendleft(item)
            for item, (ok, value) in zip(task, finished, strict=False):
                events.append(self._settle(item, ok, value, now))
            del task[started:]
            del task[: len(finished)]
            self._reported[key] = len(finished)
        return events

    @property
    def token_due(self) -> float | None:
        """When the rate limiter will grant the next call, if an item is waiting for it."""
        return self._token_due

    def stop_claims(self) -> None:
        """The run is ending early: chunks in flight start no further item."""
        for _, claim, _ in self._claims.values():
            claim.revoke()
        self._claims.clear()

    def claim(self, task: Task) -> ChunkClaim | None:
        """The claim through which ``task``'s items are handed out, when it can be reclaimed."""
        entry = self._claims.get(id(task))
        return None if entry is None else entry[1]

    def wake_at(self) -> float | None:
        """When ``next_tasks`` may have something new to start without any task finishing."""
        times = [
            t for t in (self._token_due, self._backoff[0][0] if self._backoff else None) if t is not None
        ]
        times.extend(deadline for _, _, deadline in self._claims.values())
        return min(times) if times else None

    def finish_task(
        self, task: Task, outcomes: list[Outcome] | BaseException, now: float, seconds: float | None = None
    ) -> list[ItemResult[Any] | RetryEvent]:
        """Record a finished task: ``outcomes`` has one ``(ok, value_or_error)`` per item,
        or is the exception that failed the whole task; ``seconds`` is how long it ran."""
        self._in_flight -= 1
        self._claims.pop(id(task), None)
        reported = self._reported.pop(id(task), 0)
        if reported and not isinstance(outcomes, BaseException):
            outcomes = outcomes[reported:]
        if seconds is not None and self._chunks is not None and task:
            self._chunks.observe(seconds, len(task))
        if isinstance(outcomes, BaseException):
            if len(task) > 1 and isinstance(outcomes, ItemError):
                # The backend could not run the task as a whole (e.g. one result could not
                # be pickled): run its items one by one so only the culprit fails.
                for item in reversed(task):
                    item.attempts -= 1
                    self._ready.appendleft(item)
                return []
            outcomes = [(False, outcomes)] * len(task)
        events: list[ItemResult[Any] | RetryEvent] = []
        append, unfinished, success = events.append, self._unfinished, ItemResult.success
        succeeded = 0
        for item, (ok, value) in zip(task, outcomes, strict=True):
            if ok:  # the common case, inlined: this loop runs once per item
                index = item.index
                del unfinished[index]
                append(success(index, value))
                succeeded += 1
            else:
                append(self._settle(item, ok, value, now))
        self.succeeded += succeeded
        self.done += succeeded
        return events

    def expire(self, timeout: float) -> list[ItemResult[Any]]:
        """End the run now: a timeout failure for every unfinished item, including the items
        of a sized input that were never taken from it."""
        results: list[ItemResult[Any]] = [
            ItemResult.failure(index, ItemTimeoutError(index, timeout)) for index in sorted(self._unfinished)
        ]
        if self.total is not None:
            results.extend(
                ItemResult.failure(index, ItemTimeoutError(index, timeout))
                for index in range(self.seen, self.total)
            )
            self.seen = self.total
        self._unfinished.clear()
        self._ready.clear()
        self._backoff.clear()
        self._exhausted = True
        self.expired = True
        self.done += len(results)
        return results

    # -- internals -----------------------------------------------------------------------

    def _settle(self, item: Item, ok: bool, value: Any, now: float) -> ItemResult[Any] | RetryEvent:
        if not ok:
            error: BaseException = value
            if isinstance(error, ItemError) and error.index is None:
                error.index = item.index
            delay = self._retry.next_delay(item.attempts, error) if self._retry is not None else None
            if delay is not None:
                self.retries += 1
                heapq.heappush(self._backoff, (now + delay, item.index, item))
                return RetryEvent(item.index, item.attempts, error, delay)
            result: ItemResult[Any] = ItemResult.failure(item.index, error)
        else:
            self.succeeded += 1
            result = ItemResult.success(item.index, value)
        del self._unfinished[item.index]
        self.done += 1
        return result

    def _release_backoffs(self, now: float) -> None:
        while self._backoff and self._backoff[0][0] <= now:
            self._ready.append(heapq.heappop(self._backoff)[2])

    def _next_ready(self) -> Item | None:
        if self._ready:
            return self._ready.popleft()
        if self._source is None or self._exhausted:
            return None
        if self._window is not None and len(self._unfinished) >= self._window:
            return None
        try:
            payload = next(self._source)
        except StopIteration:
            self._exhausted = True
            return None
        return self._new_item(payload)

    def _fill(self, task: Task, size: int) -> None:
        while len(task) < size:
            item = self._next_ready()
            if item is None:
                return
            task.append(item)

    def _remaining(self) -> int | None:
        """Items not yet started, when the input's size is known."""
        if self.total is None:
            return None
        return self.total - self.seen + len(self._ready)

    def _new_item(self, payload: Any) -> Item:
        item = Item(self.seen, payload)
        self._unfinished[item.index] = item
        self.seen += 1
        return item


class _ChunkSizer:
    """Chooses how many items one task carries, from the measured time per item.

    Tiny items are grouped so that a task lasts about ``task_seconds`` (the backend's
    preferred task length, which amortises its per-task overhead); an item that takes
    longer than that travels alone, so chunking never delays a slow item behind others.
    Chunks are also kept small enough that every worker gets several near the end, and
    that the input window is shared by every task in flight.
    """

    MAX_SIZE = 10_000

    def __init__(self, task_seconds: float) -> None:
        self._task_seconds = task_seconds
        self._item_seconds: float | None = None  # moving average of the time per item

    def observe(self, seconds: float, items: int) -> None:
        per_item = seconds / items
        previous = self._item_seconds
        self._item_seconds = per_item if previous is None else 0.7 * previous + 0.3 * per_item

    def size(self, remaining: int | None, tasks: int, window: int | None) -> int:
        """Items for the next task, when up to ``tasks`` tasks can be in flight at once."""
        if self._item_seconds is None:
            return 1  # measure one item per task first
        size = min(self.MAX_SIZE, int(self._task_seconds / max(self._item_seconds, 1e-9)))
        if remaining is not None:
            size = min(size, -(-remaining // (2 * tasks)))
        if window is not None:
            # the window is shared by every task in flight, so every worker gets some
            size = min(size, window // tasks)
        return max(1, size)
