"""Built-in plugin: the ``"process"`` executor, a pool of worker processes run by loky.

- Functions and arguments travel with cloudpickle, so lambdas, closures and functions
  defined in ``__main__`` or a notebook work. The run's function is pickled once and
  sent to each worker once (large ones through a file), not with every task.
- Each run has a pool of its own, taken warm from the idle pools when one of its size is
  kept (see ``_process_pools``); it never starts more workers than a sized input has
  items. ``loky`` and ``cloudpickle`` are imported on first use.
- An argument, result or exception that cannot be pickled fails only its own item, with
  a ``SerializationError`` naming the cause; a function that cannot be pickled (or not
  unpickled in a worker) fails every item with one naming the function. An exception
  comes back with its cause/context chain and its traceback in the worker as a note
  (see ``_tasks.RemoteFailure``).
- When a worker dies (``os._exit``, a segfault, the OOM killer), loky fails every task in
  flight on the pool. Each worker records in shared memory which item it is running, so
  the backend knows which item was running in which worker; on Linux it also sees which
  worker died. That item is reported as crashed (``WorkerCrashedError``); the other tasks
  are reported lost (``TaskLostError``, innocent) and run again on a fresh pool, their
  attempts uncounted. Where the dead worker cannot be told (outside Linux), the items that
  were running are reported as suspects and the scheduler runs each alone to find out.
- Under a rate limit, the scheduler asks ``until_ready()`` before drawing a token: a cold
  or replaced pool first runs a rendezvous of one task per worker, so that a call starts
  when its token is drawn, not when a worker finally comes up.
- ``task_timeout``: a watchdog thread (only while such a run lasts) reads the progress
  slots and kills the worker of an item that has run longer; the task is reported
  ``TaskLostError(overdue=True)`` and the others lost innocently (``kills_overdue_tasks``).
- ``max_tasks_per_worker``: the pool is replaced once it has been given that many items,
  so no worker runs more (``recycles_workers``); a spent pool finishes its tasks first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyarallel.hookspecs import hookimpl

if TYPE_CHECKING:
    from pyarallel._builtin._process_backend import ProcessBackend
    from pyarallel.contracts import BackendOptions

NAME = "process"


@hookimpl
def pyarallel_executor_names() -> Sequence[str]:
    return (NAME,)


@hookimpl
def pyarallel_executor(
    executor: object, workers: int | None, total: int | None, options: BackendOptions
) -> ProcessBackend | None:
    if executor != NAME:
        return None
    from pyarallel._builtin._process_backend import ProcessBackend  # its imports cost ~5 ms

    return ProcessBackend(workers, total, options.task_timeout, options.max_tasks_per_worker)


@hookimpl
def pyarallel_shutdown() -> None:
    """Stop the idle pools kept for the next runs (only if the backend was ever used)."""
    import sys

    pools_module = sys.modules.get("pyarallel._builtin._process_pools")
    if pools_module is not None:
        pools_module.pools.shutdown_all(wait=True)
