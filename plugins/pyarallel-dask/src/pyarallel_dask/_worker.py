"""What runs on the Dask workers: one task of a run, and the checks ``close(abort=True)``
makes on the workers and the scheduler. Kept apart from the client side so that a worker
imports only this module (and pyarallel's own ``_tasks``, which the run's function needs).

A task arrives as a reference to its run's function plus the pickled items, both bytes,
so that Dask sends them as they are and every pickling failure is ours to name:

- the function (pyarallel's task function: the user's function and the run's settings)
  is unpickled once per worker process and kept for the run's next tasks;
- the task runs through ``pyarallel.worker.run_task``, which stops starting items once
  Dask has cancelled the task (the run was aborted: Dask cannot interrupt a running
  function, but it tells the worker, and no further item starts) or once the task has run
  for its budget;
- the outcome is pickled back with ``pyarallel.worker.dumps_outcome``: a value or an
  exception that cannot make the trip fails only its own item, with a
  ``SerializationError``.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Collection
from typing import Any

from pyarallel import SerializationError
from pyarallel.worker import dumps_outcome, run_task

__all__ = ["FunctionRef", "live_keys", "pending_keys", "run"]

# How a task names its run's function: a key unique to the run, the function pickled with
# cloudpickle, and the user's function's name for messages.
FunctionRef = tuple[str, bytes, str]

# Worker-side states in which a task of ours may still start an item.
_LIVE = frozenset({"waiting", "ready", "constrained", "executing", "long-running", "resumed"})
_RUNNING = frozenset({"executing", "long-running"})

KEPT_FUNCTIONS = 8  # the latest runs' functions a worker process keeps, unpickled
_functions: dict[str, Any] = {}  # run key -> function, oldest first
_functions_lock = threading.Lock()


def run(function: FunctionRef, payload: bytes) -> bytes:
    """Worker side of one task: call the run's function on the unpickled arguments and
    return the pickled outcome."""
    fn = _load_function(function)
    try:
        args = pickle.loads(payload)
    except Exception as error:
        message = f"the task's items could not be unpickled on the Dask worker: {error!r}"
        raise SerializationError(message) from error
    outcome = run_task(fn, args, stop=_cancelled_check())
    return dumps_outcome(outcome, where="the Dask worker")


def live_keys(keys: Collection[str], dask_worker: Any = None) -> list[str]:
    """Which of ``keys`` this worker may still start an item of (run by ``Client.run``,
    in the worker's event loop)."""
    tasks = dask_worker.state.tasks
    return [key for key in keys if (task := tasks.get(key)) is not None and task.state in _LIVE]


def pending_keys(keys: Collection[str], dask_scheduler: Any = None) -> list[str]:
    """Which of ``keys`` the scheduler still holds (run by ``Client.run_on_scheduler``):
    none once it has handled the cancellation of all of them."""
    tasks = dask_scheduler.tasks
    return [key for key in keys if key in tasks]


def _cancelled_check() -> Callable[[], bool]:
    """A check, cheap enough to make before every item, of whether Dask has cancelled the
    task running in this thread (it then stays "cancelled" until the function returns)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except Exception:  # not running in a Dask worker's thread
        return _never
    tasks = worker.state.tasks

    def cancelled() -> bool:
        task = tasks.get(key)
        return task is None or task.state not in _RUNNING

    return cancelled


def _never() -> bool:
    return False


def _load_function(function: FunctionRef) -> Any:
    """The run's function, unpickled once per worker process (a worker with several
    threads may run tasks of several runs at once)."""
    key, blob, label = function
    with _functions_lock:
        if key in _functions:
            return _functions[key]
    try:
        loaded = pickle.loads(blob)
    except Exception as error:
        raise SerializationError(
            f"the function {label} could not be unpickled on the Dask worker: {error!r}"
        ) from error
    with _functions_lock:
        _functions[key] = loaded
        while len(_functions) > KEPT_FUNCTIONS:
            del _functions[next(iter(_functions))]
    return loaded
