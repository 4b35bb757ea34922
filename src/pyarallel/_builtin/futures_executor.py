"""Built-in plugin: use an already-built ``concurrent.futures.Executor`` as it is.

pyarallel submits to it and never shuts it down; the caller owns it. On a timeout or
interruption the run's own queued futures are cancelled; running ones cannot be stopped.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from pyarallel.hookspecs import hookimpl

T = TypeVar("T")


class ExecutorBackend:
    """Adapts a caller-owned executor to the backend contract."""

    task_seconds = 0.01  # unknown executor: group tiny items into ~10 ms tasks

    def __init__(self, executor: Executor, workers: int | None) -> None:
        self._executor = executor
        self.name = type(executor).__name__
        self.capacity = workers or _max_workers(executor)
        # Tasks queued ahead would run at once on a pool larger than the workers asked for.
        self.queue_ahead = workers is None
        self.shares_memory = isinstance(executor, ThreadPoolExecutor)
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        future = self._executor.submit(fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def close(self, *, abort: bool) -> None:
        if abort:
            with self._lock:
                pending = list(self._pending)
            for future in pending:
                future.cancel()


def _max_workers(executor: Executor) -> int:
    # ThreadPoolExecutor, ProcessPoolExecutor and loky all keep their size here.
    size = getattr(executor, "_max_workers", None)
    if isinstance(size, int) and size >= 1:
        return size
    return os.cpu_count() or 1


@hookimpl(trylast=True)
def pyarallel_executor(executor: object, workers: int | None) -> ExecutorBackend | None:
    return ExecutorBackend(executor, workers) if isinstance(executor, Executor) else None
