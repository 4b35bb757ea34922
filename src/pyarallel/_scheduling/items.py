"""What the scheduler moves around: one input ``Item``, and a ``Task`` of items submitted
together as one call to the backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyarallel.contracts import Reservation

__all__ = ["Item", "Task"]

UNLIMITED = sys.maxsize


class Item:
    """One input item with a life of its own (it failed, was retried or was given back).

    ``attempts`` counts the attempts started and not given back. ``group_limit`` is the
    largest task this item may travel in: a group that failed as a whole gives its items
    back with half its size as their limit, so a bad item is cornered in a few tasks and
    then runs alone (limit 1), and an item given back to run alone stays alone.
    ``suspect`` marks an item that was running when its worker was lost: it runs alone
    with nothing else in flight, so that if it is lost again it is known to be the cause.
    ``last_error`` is the exception of its last failed attempt (kept as the cause if the
    run times out before it finishes). ``first_started`` is when its first counted attempt
    started; ``losses`` how many times its task was lost with its worker. ``reservation``
    is its current attempt's claim on the rate limiter, under a rate limit.
    """

    # A plain class, not a dataclass: building a dataclass costs about 1 ms of import time.
    __slots__ = (
        "attempts",
        "first_started",
        "group_limit",
        "index",
        "last_error",
        "losses",
        "payload",
        "reservation",
        "suspect",
    )

    def __init__(self, index: int, payload: Any, attempts: int = 0, first_started: float = 0.0) -> None:
        self.index = index
        self.payload = payload
        self.attempts = attempts
        self.first_started = first_started
        self.losses = 0
        self.group_limit = UNLIMITED
        self.suspect = False
        self.last_error: BaseException | None = None
        self.reservation: Reservation | None = None

    def __repr__(self) -> str:
        return f"Item(index={self.index}, attempts={self.attempts}, group_limit={self.group_limit})"


class Task:
    """Items submitted together as one call to the backend; ``payloads`` in order.

    Most tasks are *blocks*: fresh items taken from the input together, with consecutive
    indices from ``start``, each on its first attempt. A block has no per-item object
    until one is needed (an item fails, or the block is reclaimed), so tiny items cost
    the scheduler next to nothing. Other tasks carry ``Item``s that already have a life of
    their own (admitted one at a time, retried, or given back); their ``start`` is -1.
    ``isolated`` is set on a task that runs a suspect with nothing else in flight.
    ``started_at`` is when it was submitted.
    """

    __slots__ = ("_items", "isolated", "payloads", "start", "started_at")

    def __init__(self, payloads: list[Any], start: int = -1, items: list[Item] | None = None) -> None:
        self.payloads = payloads
        self.start = start
        self._items = items
        self.isolated = False
        self.started_at = 0.0

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
            started = self.started_at
            self._items = [
                Item(index, payload, 1, started) for index, payload in enumerate(self.payloads, self.start)
            ]
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
