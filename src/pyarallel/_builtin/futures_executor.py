"""Built-in plugin: use an already-built ``concurrent.futures.Executor`` as it is.

pyarallel submits to it and never shuts it down; the caller owns it. On a timeout or
interruption the run's own queued futures are cancelled; running ones cannot be stopped.

Pickling is the executor's business, with one exception: a standard ``ProcessPoolExecutor``
pickles each task with ``pickle`` in a thread of its own, so a function it cannot pickle
(a lambda, a local function) would fail every task with a bare ``PicklingError`` that
names no culprit. The run's function is tried with its pickler once per run instead, and
if it fails, every item fails with a ``SerializationError`` naming the function.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from pyarallel._errors import SerializationError
from pyarallel._tasks import function_label
from pyarallel.contracts import Capabilities
from pyarallel.hookspecs import hookimpl

T = TypeVar("T")


class ExecutorBackend:
    """Adapts a caller-owned executor to the backend contract."""

    def __init__(self, executor: Executor, workers: int | None) -> None:
        self._executor = executor
        self.name = type(executor).__name__
        self.capacity = workers or _max_workers(executor)
        self.capabilities = Capabilities(
            task_seconds=0.01,  # unknown executor: group tiny items into ~10 ms tasks
            # Tasks queued ahead would run at once on a pool larger than the workers asked for.
            queue_ahead=workers is None,
            # Threads of this process; any other executor is taken to run tasks elsewhere.
            in_caller_process=isinstance(executor, ThreadPoolExecutor),
        )
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()
        self._pickles_tasks = _is_standard_process_pool(executor)
        self._picklable: object = None  # the run's function, once found to pickle
        self._unpicklable: tuple[object, Exception] | None = None  # or why it does not

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        if self._pickles_tasks and fn is not self._picklable:
            error = self._pickling_error(fn)
            if error is not None:
                message = f"the function {function_label(fn)} could not be pickled for {self.name}"
                failure = SerializationError(f"{message}: {error!r}")
                failure.__cause__ = error
                failed: Future[T] = Future()
                failed.set_exception(failure)
                return failed
        future = self._executor.submit(fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        if self.capabilities.in_caller_process:
            return future
        return _with_pickling_errors_named(future, self.name)

    def until_ready(self) -> None:
        return None  # the executor's business

    def _pickling_error(self, fn: object) -> Exception | None:
        """Why the executor cannot pickle ``fn``, or None (found once per function)."""
        if self._unpicklable is not None and self._unpicklable[0] is fn:
            return self._unpicklable[1]
        from multiprocessing.reduction import ForkingPickler  # what the executor pickles with

        try:
            ForkingPickler.dumps(fn)
        except Exception as error:
            self._unpicklable = (fn, error)
            return error
        self._picklable = fn
        return None

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def close(self, *, abort: bool) -> None:
        if abort:
            with self._lock:
                pending = list(self._pending)
            for future in pending:
                future.cancel()


def _with_pickling_errors_named(future: Future[T], executor_name: str) -> Future[T]:
    """``future``'s outcome, with a failure to pickle a task's items or its result (the
    executor's pickler raised) as a ``SerializationError``, so that the item at fault is
    told why, as on the built-in process executor."""
    outcome: Future[T] = Future()

    def copy(done: Future[T]) -> None:
        if done.cancelled():
            outcome.cancel()
            return
        error = done.exception()
        if error is None:
            outcome.set_result(done.result())
        elif _is_pickling_error(error):
            failure = SerializationError(
                f"the item's arguments or result could not be pickled by {executor_name}: {error!r}"
            )
            failure.__cause__ = error
            outcome.set_exception(failure)
        else:
            outcome.set_exception(error)

    future.add_done_callback(copy)
    return outcome


def _is_pickling_error(error: BaseException) -> bool:
    import pickle

    if isinstance(error, pickle.PicklingError):
        return True
    return isinstance(error, TypeError | AttributeError) and "pickle" in str(error).lower()


def _is_standard_process_pool(executor: Executor) -> bool:
    # Looked up, not imported: concurrent.futures.process imports multiprocessing.
    module = sys.modules.get("concurrent.futures.process")
    return module is not None and isinstance(executor, module.ProcessPoolExecutor)


def _max_workers(executor: Executor) -> int:
    # ThreadPoolExecutor, ProcessPoolExecutor and loky all keep their size here.
    size = getattr(executor, "_max_workers", None)
    if isinstance(size, int) and size >= 1:
        return size
    return os.cpu_count() or 1


@hookimpl(trylast=True)
def pyarallel_executor(executor: object, workers: int | None) -> ExecutorBackend | None:
    return ExecutorBackend(executor, workers) if isinstance(executor, Executor) else None
