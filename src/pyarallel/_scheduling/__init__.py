"""The scheduler: every decision of a run, free of I/O (see ``schedule``)."""

from pyarallel._scheduling.events import Event, RetryEvent
from pyarallel._scheduling.items import Item, Task
from pyarallel._scheduling.schedule import Schedule

__all__ = ["Event", "Item", "RetryEvent", "Schedule", "Task"]
