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
from itertools import islice
from typing import Any

from pyarallel._errors import ItemError, ItemTimeoutError
from pyarallel._result import ItemResult, Settled, Successes
from pyarallel._tasks import ChunkClaim
from pyarallel.contracts import RateLimiter, RetryPolicy

__all__ = ["Event", "Item", "RetryEvent", "Schedule", "Task"]


@dataclass(slots=True, eq=False)
class Item:
    """One input item and the number of attempts started for it."""

    index: int
    payload: Any
    attempts: int = 0


class Task:
    """Items submitted together as one call to the backend; ``payloads`` in order.

    Most tasks are *blocks*: fresh items taken from the input together, with consecutive
    indices from ``start``, each on its first attempt. A block has no per-item object
    until one is needed (an item fails, or the block is reclaimed), so tiny items cost
    the scheduler next to nothing. Other tasks carry ``Item``s that already have a life of
    their own (admitted one at a time, retried, or given back); their ``start`` is -1.
    """

    __slots__ = ("_items", "payloads", "start")

    def __init__(self, payloads: list[Any], start: int = -1, items: list[Item] | None = None) -> None:
        self.payloads = payloads
        self.start = start
        self._items = items

    @classmethod
    def of(cls, items: list[Item]) -> Task:
        """A task of items with lives of their own; counts one more attempt for each."""
        for item in items:
            item.attempts += 1
        return cls([item.payload for item in items], items=items)

    def __len__(self) -> int:
        return len(self.payloads)

    @property
    def has_items(self) -> bool:
        """True once the task's ``Item`` objects exist (always, for a task that is not a block)."""
        return self._items is not None

    def items(self) -> list[Item]:
        """The task's items (a block's are made on first use, on their first attempt)."""
        if self._items is None:
            self._items = [Item(index, payload, 1) for index, payload in enumerate(self.payloads, self.start)]
        return self._items

    def indices(self) -> Iterator[int]:
        """The input positions of the task's items."""
        if self.start >= 0 and self._items is None:
            return iter(range(self.start, self.start + len(self.payloads)))
        return (item.index for item in self.items())

    def keep_only(self, items: list[Item]) -> None:
        """From now on the task stands for ``items`` only (the rest were settled or given
        back), and is no longer a block."""
        self._items = items
        self.payloads = [item.payload for item in items]
        self.start = -1


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """Item ``index`` failed attempt ``attempt`` with ``error`` and runs again after ``delay``."""

    index: int
    attempt: int
    error: BaseException
    delay: float


# What a schedule reports: final results (one item or a run of successes) and retries.
Event = Settled | RetryEvent


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
        self._claims: dict[Task, tuple[ChunkClaim, float]] = {}  # task -> claim, deadline
        self._reported: dict[Task, int] = {}  # task -> items already settled on reclaim
        self._limiter = limiter
        self._retry = retry
        self._ready: deque[Item] = deque()  # admitted, waiting for a worker
        self._backoff: list[tuple[float, int, Item]] = []  # heap: (ready time, index, item)
        self._running: set[Task] = set()  # tasks submitted and not finished
        self._open = 0  # items admitted and not finished
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
        return self._exhausted and not self._open

    def needs_input(self) -> bool:
        """True when a driver-fed schedule has a free slot and nothing ready to fill it."""
        return (
            not self._exhausted
            and not self._ready
            and len(self._running) < self._max_in_flight
            and (self._window is None or self._open < self._window)
        )

    def admit(self, payload: Any) -> None:
        """Take one more input item (driver-fed schedules)."""
        self._ready.append(Item(self.seen, payload))
        self.seen += 1
        self._open += 1

    def close_input(self) -> None:
        """The driver-fed input is exhausted."""
        self._exhausted = True

    def next_tasks(self, now: float) -> list[Task]:
        """The tasks to submit now. Call again after any task finishes or at ``wake_at()``.

        Each item in them has drawn its rate-limit token and counts one more attempt."""
        self._release_backoffs(now)
        self._token_due = None
        if self._limiter is not None:
            return self._next_paced_tasks(now, self._limiter)
        tasks: list[Task] = []
        while len(self._running) < self._max_in_flight:
            task_size = self._task_size()
            task = self._take_ready(task_size) if self._ready else self._take_input(task_size)
            if task is None:
                break
            self._running.add(task)
            if len(task) > 1 and self._stall_seconds is not None:
                self._claims[task] = (ChunkClaim(len(task)), now + self._stall_seconds)
            tasks.append(task)
        return tasks

    def _next_paced_tasks(self, now: float, limiter: RateLimiter) -> list[Task]:
        """``next_tasks`` under a rate limit: one item per task, each drawing a token.

        The next item waits in READY, so that when its token comes due, drawing it is the
        first thing done (every microsecond between the due time and the draw lowers
        the achieved rate), and no token is drawn for an input that has run out."""
        tasks: list[Task] = []
        while len(self._running) < self._max_in_flight and self._ensure_ready():
            wait = limiter.try_acquire()
            if wait > 0:
                self._token_due = now + wait
                break
            task = self._take_ready(1)
            self._running.add(task)
            tasks.append(task)
        return tasks

    def reclaim_stalled(self, now: float) -> list[Event]:
        """Chunks that have run far longer than planned (an item in them is unexpectedly
        slow) give back their unstarted items, to run elsewhere, and report the items they
        have finished; only the items still running stay with them."""
        events: list[Event] = []
        for task, (claim, deadline) in list(self._claims.items()):
            if deadline > now:
                continue
            del self._claims[task]
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
            self._reported[task] = finished
        return events

    @property
    def token_due(self) -> float | None:
        """When the rate limiter will grant the next call, if an item is waiting for it."""
        return self._token_due

    def stop_claims(self) -> None:
        """The run is ending early: chunks in flight start no further item."""
        for claim, _ in self._claims.values():
            claim.revoke()
        self._claims.clear()

    def claim(self, task: Task) -> ChunkClaim | None:
        """The claim through which ``task``'s items are handed out, when it can be reclaimed."""
        entry = self._claims.get(task)
        return None if entry is None else entry[0]

    def wake_at(self) -> float | None:
        """When ``next_tasks`` may have something new to start without any task finishing."""
        times = [
            t for t in (self._token_due, self._backoff[0][0] if self._backoff else None) if t is not None
        ]
        times.extend(deadline for _, deadline in self._claims.values())
        return min(times) if times else None

    def finish_task(
        self,
        task: Task,
        values: list[Any] | BaseException,
        failed: list[int],
        now: float,
        seconds: float | None = None,
    ) -> list[Event]:
        """Record a finished task: ``values`` has one return value or exception per item,
        ``failed`` the positions of the exceptions (see ``TaskReport``); or ``values`` is
        the exception that failed the whole task. ``seconds`` is how long it ran."""
        self._running.discard(task)
        self._claims.pop(task, None)
        reported = self._reported.pop(task, 0)
        if seconds is not None and self._chunks is not None and len(task):
            self._chunks.observe(seconds, len(task) + reported)
        if isinstance(values, BaseException):
            return self._fail_whole(task, values, now)
        if reported:  # the first ``reported`` items were settled when the task was reclaimed
            values = values[reported:]
            failed = [position - reported for position in failed if position >= reported]
        if task.start >= 0:  # a block: its successes are settled in runs, not one by one
            return self._settle_block(task, values, failed, now)
        failures = set(failed)
        return [
            self._settle(item, position not in failures, value, now)
            for position, (item, value) in enumerate(zip(task.items(), values, strict=True))
        ]

    def expire(self, timeout: float) -> list[ItemResult[Any]]:
        """End the run now: a timeout failure for every unfinished item, including the items
        of a sized input that were never taken from it."""
        unfinished = [index for task in self._running for index in task.indices()]
        unfinished.extend(item.index for item in self._ready)
        unfinished.extend(item.index for _, _, item in self._backoff)
        if self.total is not None:
            unfinished.extend(range(self.seen, self.total))
            self.seen = self.total
        results: list[ItemResult[Any]] = [
            ItemResult.failure(index, ItemTimeoutError(index, timeout)) for index in sorted(unfinished)
        ]
        self._running.clear()
        self._ready.clear()
        self._backoff.clear()
        self._open = 0
        self._exhausted = True
        self.expired = True
        self.done += len(results)
        return results

    # -- internals -----------------------------------------------------------------------

    def _fail_whole(self, task: Task, error: BaseException, now: float) -> list[Event]:
        items = task.items()
        if len(items) > 1 and isinstance(error, ItemError):
            # The backend could not run the task as a whole (e.g. one result could not
            # be pickled): run its items one by one so only the culprit fails.
            self._give_back(items)
            return []
        return [self._settle(item, False, error, now) for item in items]

    def _settle_block(self, task: Task, values: list[Any], failed: list[int], now: float) -> list[Event]:
        """A block's items: each run of consecutive successes as one ``Successes`` (the
        whole block, in the common case), each failure on its own."""
        if len(values) != len(task):
            raise ValueError(f"a task of {len(task)} items reported {len(values)} outcomes")
        events: list[Event] = []
        start, items = task.start, task.items() if task.has_items else None
        settled = 0  # positions before this one are settled
        for position in sorted(failed):
            if position > settled:
                events.append(self._succeed_run(start + settled, values[settled:position]))
            item = (
                items[position] if items is not None else Item(start + position, task.payloads[position], 1)
            )
            events.append(self._settle(item, False, values[position], now))
            settled = position + 1
        if settled < len(values):
            events.append(self._succeed_run(start + settled, values[settled:] if settled else values))
        return events

    def _succeed_run(self, start: int, values: list[Any]) -> Successes:
        count = len(values)
        self._open -= count
        self.done += count
        self.succeeded += count
        return Successes(start, values)

    def _settle(self, item: Item, ok: bool, value: Any, now: float) -> Event:
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
        self._open -= 1
        self.done += 1
        return result

    def _release_backoffs(self, now: float) -> None:
        while self._backoff and self._backoff[0][0] <= now:
            self._ready.append(heapq.heappop(self._backoff)[2])

    def _can_take_input(self) -> bool:
        return (
            self._source is not None
            and not self._exhausted
            and (self._window is None or self._open < self._window)
        )

    def _take_ready(self, size: int) -> Task:
        """A task of up to ``size`` items from the ready queue (retried or given back)."""
        ready = self._ready
        items = [ready.popleft() for _ in range(min(size, len(ready)))]
        return Task.of(items)

    def _ensure_ready(self) -> bool:
        """Move one item from the input to READY if READY is empty; False if none is left."""
        if not self._ready:
            task = self._take_input(1)
            if task is None:
                return False
            self._give_back(task.items())  # onto READY, not started
        return True

    def _give_back(self, items: list[Item]) -> None:
        """Return ``items``, unstarted (the attempt uncounted), to the front of READY."""
        for item in reversed(items):
            item.attempts -= 1
            self._ready.appendleft(item)

    def _take_input(self, size: int) -> Task | None:
        """A block of up to ``size`` fresh items from the input, or None when there is
        nothing to take (no input of its own, exhausted, or the window is full)."""
        if not self._can_take_input():
            return None
        assert self._source is not None
        if self._window is not None:
            size = min(size, self._window - self._open)
        payloads = list(islice(self._source, size))
        if len(payloads) < size:
            self._exhausted = True
        if not payloads:
            return None
        task = Task(payloads, start=self.seen)
        self.seen += len(payloads)
        self._open += len(payloads)
        return task

    def _task_size(self) -> int:
        if self._chunks is None:
            return 1
        return self._chunks.size(self._remaining(), self._max_in_flight, self._window)

    def _remaining(self) -> int | None:
        """Items not yet started, when the input's size is known."""
        if self.total is None:
            return None
        return self.total - self.seen + len(self._ready)


class _ChunkSizer:
    """Chooses how many items one task carries, from the measured time per item.

    Tiny items are grouped so that a task lasts about ``task_seconds`` (the backend's
    preferred task length, which amortises its per-task overhead); an item that takes
    longer than that travels alone, so chunking never delays a slow item behind others.
    Near the end of a sized input chunks shrink so every worker gets a share of what is
    left, but never below ``MIN_FRACTION`` of the preferred length: below that, the
    per-task overhead costs more than an uneven finish. Chunks are also kept small
    enough that the input window is shared by every task in flight.
    """

    MAX_SIZE = 10_000
    MIN_FRACTION = 0.25

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
        preferred = int(self._task_seconds / max(self._item_seconds, 1e-9))
        size = min(self.MAX_SIZE, preferred)
        if remaining is not None:
            share = -(-remaining // (2 * tasks))
            size = min(size, max(share, int(preferred * self.MIN_FRACTION)))
        if window is not None:
            # the window is shared by every task in flight, so every worker gets some
            size = min(size, window // tasks)
        return max(1, size)
