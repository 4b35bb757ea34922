"""``task_timeout`` where the scheduler enforces it: when each running task's item is
overdue, and the overdue tasks abandoned to their workers."""

from __future__ import annotations

from pyarallel._errors import TaskTimeoutError
from pyarallel._scheduling.items import Item, Task

__all__ = ["Deadlines"]


class Deadlines:
    """The deadlines of running one-item tasks, for a backend that cannot stop an overdue
    task itself (see ``Capabilities.kills_overdue_tasks``).

    An overdue task is *abandoned*: its item fails, but its worker cannot be stopped, so
    the task keeps its worker's slot until it returns (``returned``), and no other task
    waits behind it in the backend's queue meanwhile.
    """

    __slots__ = ("_abandoned", "_due", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._due: dict[Task, float] = {}  # running task -> when its item is overdue
        self._abandoned: set[Task] = set()  # overdue tasks whose workers still run them

    @property
    def abandoned(self) -> int:
        """How many overdue tasks still hold a worker."""
        return len(self._abandoned)

    @property
    def next_due(self) -> float | None:
        """The earliest deadline of a running task."""
        return min(self._due.values(), default=None)

    def started(self, task: Task, now: float) -> None:
        self._due[task] = now + self.timeout

    def returned(self, task: Task) -> bool:
        """``task`` finished: True if it had been abandoned (its outcome is to be ignored)."""
        if task in self._abandoned:
            self._abandoned.discard(task)
            return True
        self._due.pop(task, None)
        return False

    def forget(self, task: Task) -> None:
        """``task`` will not run (cancelled before it started)."""
        self._due.pop(task, None)

    def abandon_overdue(self, now: float) -> list[Task]:
        """The tasks whose item is overdue, abandoned from now on."""
        overdue = [task for task, due in self._due.items() if due <= now]
        for task in overdue:
            del self._due[task]
            self._abandoned.add(task)
        return overdue

    def clear(self) -> None:
        self._due.clear()

    def overdue_error(self, item: Item) -> TaskTimeoutError:
        return TaskTimeoutError(
            f"the attempt ran longer than task_timeout={self.timeout:g} s; its worker cannot be "
            "stopped and was left to finish on its own",
            index=item.index,
        )

    def overran_error(self, item: Item, seconds: float) -> TaskTimeoutError:
        return TaskTimeoutError(
            f"the attempt ran {seconds:.3g} s, longer than task_timeout={self.timeout:g} s", index=item.index
        )
