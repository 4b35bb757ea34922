"""What becomes of the items of a lost task (see ``TaskLostError``): which one crashed its
worker, which run again as usual, and which are *suspects* that must run alone."""

from __future__ import annotations

from collections import deque

from pyarallel._errors import TaskLostError
from pyarallel._scheduling.items import Item, Task

__all__ = ["LostItems", "Quarantine"]


class LostItems:
    """A lost task's items, sorted: ``crashed`` killed its worker (it fails), ``suspects``
    may have (each runs again alone), ``innocent`` cannot have (they run again as usual)."""

    __slots__ = ("crashed", "innocent", "suspects")

    def __init__(self) -> None:
        self.crashed: Item | None = None
        self.suspects: list[Item] = []
        self.innocent: list[Item] = []


class Quarantine:
    """The suspects of a run, run one at a time with nothing else in flight, and the count
    of tasks lost with no item finishing in between.

    A suspect is an item that was running when its worker was lost while the backend could
    not tell whether it was the cause. Alone, it is the only possible cause: lost again,
    it crashed its worker. After ``give_up_after`` lost tasks without progress (workers
    that die before they run anything), the run gives up on the items of lost tasks.
    """

    def __init__(self, give_up_after: int) -> None:
        self._suspects: deque[Item] = deque()
        self.isolating = False  # a suspect is running, alone
        self._give_up_after = give_up_after
        self._barren = 0  # tasks lost since an item last finished

    @property
    def active(self) -> bool:
        """True while a suspect waits or runs: nothing else may start."""
        return self.isolating or bool(self._suspects)

    @property
    def has_suspects(self) -> bool:
        """True while a suspect waits to run alone."""
        return bool(self._suspects)

    def sort(self, task: Task, lost: TaskLostError) -> LostItems:
        """Sort the items of ``task``, which ``lost`` reports lost."""
        items = task.items()
        started = lost.started
        if lost.finished:
            started = 0  # nothing was running: every item is innocent
        elif started is None and len(items) == 1:
            started = 1
        running = None if started is None else started - 1  # the item that was running
        sorted_items = LostItems()
        for position, item in enumerate(items):
            if position == running and (lost.crashed or (task.isolated and lost.crashed is None)):
                sorted_items.crashed = item
            elif (position == running and lost.crashed is None) or started is None or item.suspect:
                sorted_items.suspects.append(item)
            else:
                sorted_items.innocent.append(item)
        return sorted_items

    def lost_without_progress(self) -> None:
        """Count one lost task that blamed no item."""
        self._barren += 1

    @property
    def giving_up(self) -> bool:
        """True while tasks are lost with nothing finishing, past the bound."""
        return self._barren > self._give_up_after

    def progress(self) -> None:
        """An item finished (or was found to have crashed its worker)."""
        self._barren = 0

    def hold(self, suspects: list[Item]) -> None:
        """``suspects`` wait to run alone; their attempt that was lost is not counted."""
        for item in suspects:
            item.attempts -= 1
            item.suspect = True
        self._suspects.extend(suspects)

    def peek(self) -> Item:
        """The suspect ``next_alone`` will give, left in place."""
        return self._suspects[0]

    def next_alone(self) -> Item:
        """The next suspect to run alone (once nothing else is in flight)."""
        return self._suspects.popleft()

    def waiting(self) -> list[Item]:
        """The suspects waiting to run alone, left in place."""
        return list(self._suspects)

    def drain(self) -> list[Item]:
        """Every waiting suspect, now taken out (the run is ending)."""
        suspects = list(self._suspects)
        self._suspects.clear()
        return suspects
