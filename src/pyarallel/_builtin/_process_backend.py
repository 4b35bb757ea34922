"""The ``"process"`` executor's backend (see ``pyarallel._builtin.process_executor``, the
plugin, for what it promises): imported when a run first uses it, so that registering the
plugin costs a script's first thread call nothing."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

from pyarallel._builtin._process_pools import WorkerPool, pools, process_alive, shared_memory_dir
from pyarallel._errors import SerializationError, TaskLostError
from pyarallel._tasks import function_label
from pyarallel._worker import FunctionRef, run
from pyarallel.contracts import Capabilities

T = TypeVar("T")

NAME = "process"
_run_keys = itertools.count()
INLINE_FUNCTION_BYTES = 64 * 1024  # a pickled function larger than this travels by file
MAX_WARM_UPS = 3  # pools warmed in a row without one coming up: stop waiting for workers


@dataclass(eq=False)
class _Task:
    future: Future[Any]
    pool: WorkerPool
    slot: int | None
    lost: TaskLostError | None = None  # decided when its pool broke
    running: tuple[int, float] | None = None  # (items started, when first seen so) for task_timeout
    overdue: int | None = None  # the item (as items started) whose worker was killed for overrunning


@dataclass(frozen=True)
class _ShippedFunction:
    function: object  # the object submitted as fn (the same for every task of a run)
    ref: FunctionRef
    path: str | None  # the file holding it, removed when the run ends


class ProcessBackend:
    """One run's pool of worker processes (see the module docstring)."""

    name = NAME
    # A task costs pickling and a round trip through pipes: group tiny items to ~20 ms.
    # An item overrunning task_timeout has its worker killed (see ``_Watchdog``).
    # loky cannot retire one worker, so for max_tasks_per_worker the whole pool is replaced
    # once it has been given that many items (see ``_usable_pool``).
    capabilities = Capabilities(
        task_seconds=0.02, queue_ahead=True, kills_overdue_tasks=True, recycles_workers=True
    )

    def __init__(
        self,
        workers: int | None,
        total: int | None = None,
        task_timeout: float | None = None,
        max_tasks_per_worker: int | None = None,
    ) -> None:
        wanted = workers if workers is not None else (os.cpu_count() or 1)
        self.capacity = max(1, min(wanted, total)) if total is not None else wanted
        self._lock = threading.Lock()
        self._pool: WorkerPool | None = None  # taken on first use
        self._tasks: dict[Future[bytes], _Task] = {}  # loky's future -> our task, in flight
        self._shipped: _ShippedFunction | None = None
        self._unshippable: tuple[object, Exception] | None = None  # a function, why it cannot be
        self._warm_ups = 0  # warm-ups started since a pool was last seen warm
        self._replaced: list[WorkerPool] = []  # broken pools to shut down, outside the lock
        self._closed = False
        self._watchdog = _Watchdog(self, task_timeout) if task_timeout is not None else None
        self._max_items = max_tasks_per_worker
        self._spent: list[WorkerPool] = []  # pools given max_tasks_per_worker items, to retire once idle

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        import cloudpickle

        future: Future[T] = Future()
        function = self._ship(fn)
        if isinstance(function, Exception):
            message = f"the function {function_label(fn)} could not be pickled for a worker process"
            return _failed(future, SerializationError(f"{message}: {function!r}"), function)
        try:
            payloads = cloudpickle.dumps(args)
        except Exception as error:
            message = f"the item's arguments could not be pickled for a worker process: {error!r}"
            return _failed(future, SerializationError(message), error)
        with self._lock:
            pool = self._usable_pool(len(args[0]) if args else 1)
            slot = pool.slots.acquire()
            slot_ref = None if slot is None else (pool.slots.path, pool.slots.first_word(slot))
            try:
                inner = pool.executor.submit(run, function, payloads, slot_ref)
            except (BrokenExecutor, RuntimeError) as error:
                pool.broken = True  # it broke before we noticed: the task never started
                if slot is not None:
                    pool.slots.release(slot)
                lost = TaskLostError("the worker pool broke before the task started", started=0)
                return _failed(future, lost, error)
            self._tasks[inner] = _Task(future, pool, slot)
        if self._watchdog is not None:
            self._watchdog.start()
        self._discard_replaced()
        inner.add_done_callback(self._on_done)
        return future

    def until_ready(self) -> Future[None] | None:
        """None when a task submitted now starts at once; else a future done when the
        pool's workers are all up (see the module docstring)."""
        with self._lock:
            pool = self._usable_pool()
            if pool.warm:
                self._warm_ups = 0
                return None
            if pool.warming is None:
                if self._warm_ups >= MAX_WARM_UPS:
                    return None  # workers that never come up: let the tasks find out
                self._warm_ups += 1
            warming = pool.warm_up()
        self._discard_replaced()
        return None if warming.done() else warming

    def close(self, *, abort: bool) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        with self._lock:
            self._closed = True
            pending = list(self._tasks.values())
            self._tasks.clear()
            pool, self._pool = self._pool, None
            shipped, self._shipped = self._shipped, None
            spent, self._spent = self._spent, []
        for task in pending:
            task.future.cancel()
        for old in spent:
            pools.discard(old, kill=abort)
        if pool is not None:
            busy = bool(pending) or (pool.warming is not None and not pool.warming.done())
            if pool.broken or (abort and busy) or (self._max_items is not None and pool.items_given):
                # Stop items still running. Waiting for the kill (~40 ms) guarantees that
                # no task still queued in loky starts after the call has returned.
                pools.discard(pool)
            else:
                pools.keep(pool)
        if shipped is not None and shipped.path is not None:
            _remove(shipped.path)
        self._discard_replaced()

    # -- internals ------------------------------------------------------------------------

    def _usable_pool(self, items: int = 0) -> WorkerPool:
        """The run's pool for a task of ``items`` items, replaced first if it broke, or if
        it would be given more than ``max_tasks_per_worker`` items (it then finishes its
        tasks and is retired once idle). Call with the lock held; then
        ``_discard_replaced`` without it."""
        pool = self._pool
        if pool is not None and pool.broken:
            self._replaced.append(pool)
            pool = None
        limit = self._max_items
        if pool is not None and limit is not None and pool.items_given and pool.items_given + items > limit:
            self._spent.append(pool)
            pool = None
        if pool is None:
            pool = pools.take(self.capacity)
            if limit is not None and pool.items_given:  # a warm pool whose workers ran items already
                self._spent.append(pool)
                pool = WorkerPool(self.capacity)
        self._pool = pool
        pool.items_given += items
        self._retire_idle_spent()
        return pool

    def _retire_idle_spent(self) -> None:
        """Move the spent pools no task runs on any more to those shut down outside the lock."""
        busy = {id(task.pool) for task in self._tasks.values()}
        idle = [pool for pool in self._spent if id(pool) not in busy]
        if idle:
            self._spent = [pool for pool in self._spent if id(pool) in busy]
            self._replaced.extend(idle)

    def _discard_replaced(self) -> None:
        """Shut down the broken pools replaced so far. loky has killed their workers
        already; its manager thread may still be delivering their tasks' failures, which
        needs our lock, so this never runs under it."""
        with self._lock:
            replaced, self._replaced = self._replaced, []
        for pool in replaced:
            pools.discard(pool, kill=False)

    def _ship(self, fn: object) -> FunctionRef | Exception:
        """The reference tasks carry to ``fn``, pickled once per run; or why it cannot be
        pickled (found once: every task of the run fails the same way)."""
        shipped = self._shipped
        if shipped is not None and shipped.function is fn:
            return shipped.ref
        if self._unshippable is not None and self._unshippable[0] is fn:
            return self._unshippable[1]
        import cloudpickle

        try:
            blob: bytes = cloudpickle.dumps(fn)
        except Exception as error:
            self._unshippable = (fn, error)
            return error
        key, path, label = f"{os.getpid()}-{next(_run_keys)}", None, function_label(fn)
        if len(blob) <= INLINE_FUNCTION_BYTES:
            ref: FunctionRef = (key, blob, None, label)
        else:
            path = _write_function(blob)
            ref = (key, None, path, label)
        if shipped is not None and shipped.path is not None:
            _remove(shipped.path)
        self._shipped = _ShippedFunction(fn, ref, path)
        return ref

    def _on_done(self, inner: Future[bytes]) -> None:
        # Runs in loky's manager thread (or in ours, if already done): never wait on the pool.
        with self._lock:
            task = self._tasks.pop(inner, None)
            if task is None:
                return  # the run closed
            if _pool_lost(inner) and task.lost is None:
                self._judge_break(task.pool, inner.exception() if not inner.cancelled() else None, task)
            if task.slot is not None:
                task.pool.slots.release(task.slot)
        if task.lost is not None and _pool_lost(inner):
            task.future.set_exception(task.lost)
        else:
            _deliver(task.future, inner)

    def _judge_break(self, pool: WorkerPool, cause: BaseException | None, first: _Task) -> None:
        """``pool`` lost a worker; loky is failing every task in flight on it, and kills
        the other workers once it has. Right now those are still alive, so every task's
        verdict is decided here at once: the item that was running in the worker that died
        crashed it; every other task is lost and runs again (call with the lock held)."""
        pool.broken = True
        tasks = [first, *(task for task in self._tasks.values() if task.pool is pool)]
        for task in tasks:
            if task.overdue is not None:
                message = "its worker process was killed: the item running overran task_timeout"
                task.lost = TaskLostError(message, started=task.overdue, crashed=False, overdue=True)
                task.lost.__cause__ = cause
                continue
            started, finished, alive = self._reading(task)
            running = started != 0 and not finished
            crashed = None if alive is None and running else running and alive is False
            if crashed:
                message = _CRASHED
            elif crashed is None:
                message = "a worker process died while it ran, and which one could not be told"
            else:
                message = "another worker process of its pool died, so the pool was replaced"
            task.lost = TaskLostError(message, started=started, finished=finished, crashed=crashed)
            task.lost.__cause__ = cause

    def _reading(self, task: _Task) -> tuple[int | None, bool, bool | None]:
        """How many of ``task``'s items had started (None: not tracked), whether it was
        done (its outcome lost in transit), and whether the worker running it is alive
        (None: not known)."""
        if task.slot is None:
            return None, False, None
        pid, started = task.pool.slots.read(task.slot)
        if pid < 0:
            return started, True, None
        return started, False, (process_alive(pid) if started > 0 else None)


class _Watchdog:
    """Kills the worker of an item that has run longer than ``task_timeout``: a daemon
    thread, started with the backend's first task and stopped when it closes, that reads
    every task's progress slot a few times per timeout. An item is timed from when the
    watchdog first sees it running, so it is never killed early (at most one poll late).
    The pool then breaks; ``_judge_break`` reports the overdue task with ``overdue=True``
    and the others as lost without a cause, so they run again uncounted."""

    def __init__(self, backend: ProcessBackend, timeout: float) -> None:
        self._backend = backend
        self._timeout = timeout
        self._interval = min(0.05, timeout / 4)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="pyarallel-task-timeout", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval):
            for pid in self._overdue_workers(time.monotonic()):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)  # it may be stuck in C code: nothing gentler works

    def _overdue_workers(self, now: float) -> list[int]:
        """The pids running an item that has overrun, each task marked with that item."""
        backend, overdue = self._backend, []
        with backend._lock:
            for task in backend._tasks.values():
                if task.slot is None or task.overdue is not None or task.pool.broken:
                    continue
                pid, started = task.pool.slots.read(task.slot)
                if pid <= 0 or started == 0:  # not started yet, or done
                    task.running = None
                    continue
                if task.running is None or task.running[0] != started:
                    task.running = (started, now)
                elif now - task.running[1] >= self._timeout:
                    task.overdue = started
                    overdue.append(pid)
        return overdue


_CRASHED = "the worker process running it died (os._exit, a signal such as a segfault, or the OOM killer)"


def _pool_lost(inner: Future[bytes]) -> bool:
    if inner.cancelled():
        return True
    error = inner.exception()
    return isinstance(error, BrokenExecutor) or type(error).__name__ == "ShutdownExecutorError"


def _deliver(future: Future[Any], inner: Future[bytes]) -> None:
    import cloudpickle

    if inner.cancelled():
        future.cancel()
        return
    error = inner.exception()
    if error is not None:
        future.set_exception(error)
        return
    try:
        future.set_result(cloudpickle.loads(inner.result()))
    except Exception as unpickling_error:
        failure = SerializationError(f"the result could not be unpickled: {unpickling_error!r}")
        failure.__cause__ = unpickling_error
        future.set_exception(failure)


def _failed(future: Future[T], error: BaseException, cause: BaseException) -> Future[T]:
    error.__cause__ = cause
    future.set_exception(error)
    return future


def _write_function(blob: bytes) -> str:
    """A file holding a pickled function, for workers to read (removed at the run's end)."""
    fd, path = tempfile.mkstemp(
        prefix=f"pyarallel-{os.getpid()}-", suffix=".function", dir=shared_memory_dir()
    )
    with os.fdopen(fd, "wb") as file:
        file.write(blob)
    return path


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
