"""Built-in plugin: the ``"thread"`` executor, a pool of threads in this process.

The pool is a ``concurrent.futures.Executor`` whose worker threads are daemon threads,
so an item still running when a call times out or is interrupted never keeps the
interpreter from exiting (the standard ``ThreadPoolExecutor`` joins its threads at
exit). A thread cannot be killed: such an item runs on in the background and its result
is discarded.

Starting a thread costs a fraction of a millisecond, so the pool of a call that
completed is kept, idle, for the next call asking for as many threads (``_IdlePools``).
A call that ends early (timeout, Ctrl-C, a closed stream) may leave items running: its
pool is shut down instead.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

from pyarallel.contracts import Capabilities
from pyarallel.hookspecs import hookimpl

T = TypeVar("T")

NAME = "thread"

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


def default_thread_count() -> int:
    """The standard library's default: ``min(32, cpu_count + 4)``."""
    return min(32, (os.cpu_count() or 1) + 4)


class DaemonThreadPool(Executor):
    """A fixed-size pool of daemon threads, started on demand."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "pyarallel-thread") -> None:
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._shutdown = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        if self._shutdown:
            raise RuntimeError("cannot submit to a pool that has been shut down")
        future: Future[T] = Future()
        call_args = args if not kwargs else (fn, args, kwargs)
        job_fn = fn if not kwargs else _call_with_kwargs
        self._jobs.put((future, job_fn, call_args))
        if len(self._threads) < self.max_workers:
            self._start_thread()
        return future

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=_work,
            args=(self._jobs,),
            name=f"{self._prefix}-{len(self._threads)}",
            daemon=True,
        )
        # Recorded before it starts, so that a KeyboardInterrupt arriving in between can
        # never leave a thread that shutdown() does not know to stop.
        self._threads.append(thread)
        thread.start()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        if cancel_futures:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except Empty:
                    break
                if job is not None:
                    job[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


def _call_with_kwargs(fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


def _work(jobs: SimpleQueue[_Job | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        future, fn, args = job
        del job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            result = fn(*args)
        except BaseException as error:
            future.set_exception(error)
            del error  # break the reference cycle through the traceback
        else:
            future.set_result(result)
        del future, fn, args


class _IdlePools:
    """Pools whose run completed, each waiting for a run that wants its number of threads.

    At most ``MAX_IDLE`` are kept (the oldest is shut down to make room), so the idle
    threads a program can accumulate stay bounded. A forked child forgets them: their
    threads do not exist there.
    """

    MAX_IDLE = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: list[DaemonThreadPool] = []  # oldest first

    def take(self, size: int) -> DaemonThreadPool | None:
        """An idle pool of ``size`` threads, now owned by the caller, if there is one."""
        with self._lock:
            for position in range(len(self._pools) - 1, -1, -1):
                if self._pools[position].max_workers == size:
                    return self._pools.pop(position)
        return None

    def keep(self, pool: DaemonThreadPool) -> None:
        """Keep ``pool``, whose run completed (no task is running), for a later run."""
        with self._lock:
            self._pools.append(pool)
            evicted = self._pools[: -self.MAX_IDLE] if len(self._pools) > self.MAX_IDLE else []
            del self._pools[: len(evicted)]
        for old in evicted:
            old.shutdown(wait=False)

    def shutdown(self) -> None:
        """Stop every idle pool, waiting for its threads to exit."""
        with self._lock:
            pools, self._pools = self._pools, []
        for pool in pools:
            pool.shutdown(wait=True)

    def forget(self) -> None:
        self._pools = []
        self._lock = threading.Lock()


_IDLE = _IdlePools()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_IDLE.forget)


class ThreadBackend:
    """One run's thread pool: ``workers`` threads, an idle pool reused when one of that
    size is kept; given back when the run completes, torn down when it ends early."""

    name = NAME
    capabilities = Capabilities(
        task_seconds=0.002,  # a task costs the pool ~10-20 µs; group tiny items to ~2 ms
        queue_ahead=True,  # the pool has exactly `capacity` threads
        in_caller_process=True,  # a stalled chunk's items can be taken back
    )

    def __init__(self, workers: int | None) -> None:
        self.capacity = workers if workers is not None else default_thread_count()
        self._pool = _IDLE.take(self.capacity) or DaemonThreadPool(self.capacity)

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        # In the caller's context, so context variables it set are seen by the function.
        return self._pool.submit(contextvars.copy_context().run, fn, *args)

    def until_ready(self) -> None:
        return None  # threads start at once

    def close(self, *, abort: bool) -> None:
        if abort:
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            _IDLE.keep(self._pool)


@hookimpl
def pyarallel_executor_names() -> Sequence[str]:
    return (NAME,)


@hookimpl
def pyarallel_executor(executor: object, workers: int | None) -> ThreadBackend | None:
    return ThreadBackend(workers) if executor == NAME else None


@hookimpl
def pyarallel_shutdown() -> None:
    """Stop the idle thread pools kept for the next runs."""
    _IDLE.shutdown()
