"""What a worker process runs for pyarallel: kept apart from the rest of the package so a
freshly started worker imports only this, ``_tasks`` and ``_errors`` (no pluggy, no
scheduler), which shortens a cold pool's start.

A task arrives as a reference to its run's function plus the pickled payloads:

- the function (a ``TaskFunction``: the user's function and the run's settings) is
  unpickled once per worker and run, and kept for the run's next tasks (``FunctionRef``);
- while the task runs, the worker records in shared memory which of its items are
  started (``PROGRESS_SLOT``), so that if the worker dies the backend knows which item was
  running;
- the outcome is pickled back; a value or an exception that cannot be pickled, or an
  exception that could not be unpickled on the other side, fails only its own item with
  a ``SerializationError``.
"""

from __future__ import annotations

import mmap
import os
import time
from typing import Any

from pyarallel._errors import SerializationError
from pyarallel._tasks import PROGRESS_SLOT
from pyarallel.worker import dumps_outcome

__all__ = ["FunctionRef", "SlotRef", "rendezvous", "run"]

# How a task names its run's function: a key unique to the run, the pickled function
# itself (small functions) or the path of a file holding it (large ones: read once), and
# the user's function's name for messages (see ``_tasks.function_label``).
FunctionRef = tuple[str, bytes | None, str | None, str]
# A task's slot in its pool's shared memory: the file's path and the slot's first word.
# The worker writes its pid there when it starts the task, the number of items started in
# the next word before each item, and minus its pid once the task's outcome is ready.
SlotRef = tuple[str, int]

_function_key: str | None = None  # the latest run's function, kept while that run lasts
_function: Any = None
_views: dict[str, memoryview] = {}  # slot file path -> a view of it as 64-bit words


def run(function: FunctionRef, payloads: bytes, slot: SlotRef | None) -> bytes:
    """Worker side of one task: call the run's function on the unpickled arguments and
    return the pickled outcome."""
    import cloudpickle

    fn = _load_function(function)
    try:
        args = cloudpickle.loads(payloads)
    except Exception as error:
        message = f"the item's arguments could not be unpickled in the worker process: {error!r}"
        raise SerializationError(message) from error
    if slot is None:
        return dumps_outcome(fn(*args))
    view, first = _view(slot[0]), slot[1]
    view[first] = os.getpid()
    token = PROGRESS_SLOT.set((view, first + 1))
    try:
        outcome = fn(*args)
    finally:
        PROGRESS_SLOT.reset(token)
    pickled = dumps_outcome(outcome)
    view[first] = -os.getpid()  # done: if this worker dies now, it is not this task's doing
    return pickled


def rendezvous(path: str, first: int, count: int, position: int, seconds: float) -> int:
    """One of ``count`` tasks that wait for each other: each marks its word and returns
    once all ``count`` are marked (or after ``seconds``). Since a worker runs one task at
    a time, all of them returning together means ``count`` workers are up."""
    view = _view(path)
    view[first + position] = 1
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up and not all(view[first + i] for i in range(count)):
        time.sleep(0.001)
    return os.getpid()


def _load_function(function: FunctionRef) -> Any:
    global _function, _function_key
    key, blob, path, label = function
    if key != _function_key:
        import cloudpickle

        if blob is None:
            assert path is not None
            with open(path, "rb") as file:
                blob = file.read()
        try:
            loaded = cloudpickle.loads(blob)
        except Exception as error:
            raise SerializationError(
                f"the function {label} could not be unpickled in the worker process: {error!r}"
            ) from error
        _function, _function_key = loaded, key
    return _function


def _view(path: str) -> memoryview:
    view = _views.get(path)
    if view is None:
        with open(path, "r+b") as file:
            mapping = mmap.mmap(file.fileno(), 0)
        view = _views[path] = memoryview(mapping).cast("q")
    return view
