"""The ``"process"`` executor's backend (see ``pyarallel._builtin.process_executor``, the
plugin, for what it promises): imported when a run first uses it, so that registering the
plugin costs a script's first thread call nothing."""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import threading
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


@dataclass(frozen=True)
class _ShippedFunction:
    function: object  # the object submitted as fn (the same for every task of a run)
    ref: FunctionRef
    path: str | None  # the file holding it, removed when the run ends


class ProcessBackend:
    """One run's pool of worker processes (see the module docstring)."""

    name = NAME
    # A task costs pickling and a round trip through pipes: group tiny items to ~20 ms.
    capabilities = Capabilities(task_seconds=0.02, queue_ahead=True)

    def __init__(self, workers: int | None, total: int | None = None) -> None:
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
            pool = self._usable_pool()
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
        with self._lock:
            self._closed = True
            pending = list(self._tasks.values())
            self._tasks.clear()
            pool, self._pool = self._pool, None
            shipped, self._shipped = self._shipped, None
        for task in pending:
            task.future.cancel()
        if pool is not None:
            busy = bool(pending) or (pool.warming is not None and not pool.warming.done())
            if pool.broken or (abort and busy):
                # Stop items still running. Waiting for the kill (~40 ms) guarantees that
                # no task still queued in loky starts after the call has returned.
                pools.discard(pool)
            else:
                pools.keep(pool)
        if shipped is not None and shipped.path is not None:
            _remove(shipped.path)
        self._discard_replaced()

    # -- internals ------------------------------------------------------------------------

    def _usable_pool(self) -> WorkerPool:
        """The run's pool, replaced first if it broke (call with the lock held; then
        ``_discard_replaced`` without it)."""
        if self._pool is not None and self._pool.broken:
            self._replaced.append(self._pool)
            self._pool = None
        if self._pool is None:
            self._pool = pools.take(self.capacity)
        return self._pool

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
