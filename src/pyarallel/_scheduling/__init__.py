"""The scheduler: every decision of a run, free of I/O (see ``schedule``)."""

from pyarallel._scheduling.events import Event, LostEvent, Notice, RetryEvent, WaitEvent
from pyarallel._scheduling.items import Item, Task
from pyarallel._scheduling.schedule import Schedule

__all__ = ["Event", "Item", "LostEvent", "Notice", "RetryEvent", "Schedule", "Task", "WaitEvent"]
