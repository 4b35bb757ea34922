"""Built-in plugin: the ``"process"`` executor, a pool of worker processes run by loky.

- Functions and arguments travel with cloudpickle, so lambdas, closures and functions
  defined in ``__main__`` or a notebook work.
- The pool (a loky ``ProcessPoolExecutor``) stays warm across calls with the same number of
  workers, from any thread; idle workers exit after ``IDLE_WORKER_TIMEOUT`` seconds.
- ``loky`` and ``cloudpickle`` are imported on first use, not when pyarallel is imported.
- A task whose arguments or result cannot be pickled fails alone with a
  ``SerializationError`` naming the cause.
- When a worker dies (``os._exit``, a segfault, the OOM killer), loky fails every task in
  flight on that pool. Only one of them killed it, so the backend runs those tasks again
  one at a time on a fresh pool ("quarantine"), holding back new tasks meanwhile: the task
  that kills its worker again fails with ``WorkerCrashedError``, the others complete. When
  a single task was in flight, it is the culprit and is not run again.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyarallel._errors import SerializationError, WorkerCrashedError
from pyarallel._worker import call_pickled
from pyarallel.hookspecs import hookimpl

T = TypeVar("T")

NAME = "process"
IDLE_WORKER_TIMEOUT = 300.0  # seconds an idle worker stays alive for the next call


@hookimpl
def pyarallel_executor_names() -> Sequence[str]:
    return (NAME,)


@hookimpl
def pyarallel_executor(executor: object, workers: int | None) -> ProcessBackend | None:
    return ProcessBackend(workers) if executor == NAME else None


@dataclass(eq=False)
class _Task:
    blob: bytes
    future: Future[Any]
    generation: _Generation | None = None
    crash: BaseException | None = None


@dataclass(eq=False)
class _Generation:
    """The tasks launched on one pool since the last crash. When the pool is lost, every
    task of the generation that was still in flight becomes a suspect."""

    isolated: bool = False
    broken: bool = False
    recovering: bool = False  # a recovery has been started for it
    running: set[_Task] = field(default_factory=set)
    suspects: list[_Task] = field(default_factory=list)

    def needs_recovery(self) -> bool:
        return not self.running and not self.recovering and (self.broken or self.isolated)


class ProcessBackend:
    """One run's view of the shared loky pool, with crash quarantine."""

    name = NAME
    queue_ahead = True
    task_seconds = 0.02  # a task costs pickling and a round trip through pipes

    def __init__(self, workers: int | None) -> None:
        self.capacity = workers if workers is not None else (os.cpu_count() or 1)
        self._lock = threading.RLock()  # a future already done runs its callback inside _launch
        self._executor = _shared_pool(self.capacity)
        self._generation: _Generation | None = _Generation()  # None while recovering
        self._quarantine: deque[_Task] = deque()
        self._held: deque[_Task] = deque()
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        import cloudpickle

        future: Future[T] = Future()
        try:
            blob = cloudpickle.dumps((fn, args))
        except Exception as error:
            failure = SerializationError(f"could not pickle the item for a worker process: {error!r}")
            failure.__cause__ = error
            future.set_exception(failure)
            return future
        task = _Task(blob, future)
        with self._lock:
            if self._generation is None:
                self._held.append(task)
                return future
            generation = self._generation
            if self._launch(task, generation):
                return future
            # The pool broke or was shut down (e.g. by another call's timeout) before we
            # noticed: hold the task and recover once this generation has drained.
            self._held.append(task)
            self._mark_broken(generation)
            recover = generation.needs_recovery()
        if recover:
            self._start_recovery(generation)
        return future

    def close(self, *, abort: bool) -> None:
        with self._lock:
            self._closed = True
            waiting = list(self._held) + list(self._quarantine)
            self._held.clear()
            self._quarantine.clear()
            busy = self._generation is None or bool(self._generation.running)
        for task in waiting:
            task.future.cancel()
        if abort and busy:
            # Stop items still running: loky terminates the workers and the next call
            # starts a fresh pool. Waiting for the kill (~40 ms) guarantees that no task
            # still queued in loky starts after the call has returned.
            _drop_pool(self._executor)
            self._executor.shutdown(wait=True, kill_workers=True)

    # -- launching and completion (call with the lock held) -------------------------------

    def _launch(self, task: _Task, generation: _Generation) -> bool:
        """Submit ``task`` to the pool; False if the pool is no longer usable."""
        try:
            inner = self._executor.submit(call_pickled, task.blob)
        except (BrokenExecutor, RuntimeError):
            return False
        task.generation = generation
        generation.running.add(task)
        inner.add_done_callback(lambda done: self._on_done(task, done))
        return True

    def _mark_broken(self, generation: _Generation) -> None:
        generation.broken = True
        if generation is self._generation:
            self._generation = None  # hold new tasks until the culprit is found

    def _on_done(self, task: _Task, inner: Future[bytes]) -> None:
        # Runs in loky's result thread (or in ours, if already done): never wait on the pool.
        with self._lock:
            generation = task.generation
            assert generation is not None
            generation.running.discard(task)
            if self._closed:
                task.future.cancel()
                return
            if _pool_lost(inner):
                task.crash = None if inner.cancelled() else inner.exception()
                generation.suspects.append(task)
                self._mark_broken(generation)
            else:
                _deliver(task.future, inner)
            recover = generation.needs_recovery()
        if recover:
            self._start_recovery(generation)

    def _start_recovery(self, generation: _Generation) -> None:
        # Replacing a broken pool joins loky's threads, so recover from a thread of our own.
        with self._lock:
            if generation.recovering:
                return  # a task finishing inside _launch already started it
            generation.recovering = True
        threading.Thread(
            target=self._recover, args=(generation,), name="pyarallel-process-recovery", daemon=True
        ).start()

    def _recover(self, generation: _Generation) -> None:
        """A lost generation, or an isolated run, has no task left in flight: blame the
        culprit if it is known, then run the next suspect alone or resume normal work."""
        executor = _shared_pool(self.capacity, replacing=self._executor if generation.broken else None)
        with self._lock:
            self._executor = executor
            if self._closed:
                return
            suspects = generation.suspects
            if len(suspects) == 1:
                _fail_crashed(suspects[0])
            else:
                self._quarantine.extend(suspects)
            if self._quarantine:
                next_generation = _Generation(isolated=True)
                task = self._quarantine.popleft()
                if not self._launch(task, next_generation):
                    self._quarantine.appendleft(task)
            else:
                next_generation = self._generation = _Generation()
                while self._held:
                    if not self._launch(self._held[0], next_generation):
                        self._mark_broken(next_generation)
                        break
                    self._held.popleft()
            recover = next_generation.needs_recovery()
        if recover:
            self._start_recovery(next_generation)


def _pool_lost(inner: Future[bytes]) -> bool:
    if inner.cancelled():
        return True
    error = inner.exception()
    return isinstance(error, BrokenExecutor) or type(error).__name__ == "ShutdownExecutorError"


def _deliver(future: Future[Any], inner: Future[bytes]) -> None:
    import cloudpickle

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


def _fail_crashed(task: _Task) -> None:
    failure = WorkerCrashedError(
        "the worker process running it died (os._exit, a signal such as a segfault, or the OOM killer)"
    )
    failure.__cause__ = task.crash
    task.future.set_exception(failure)


# One warm pool per worker count, shared by every thread of the process. (loky's own
# reusable executor is per thread, which would give every recovery thread a pool of its
# own.) A pool that broke or was killed is dropped and replaced on next use.
_pools: dict[int, Any] = {}
_pools_lock = threading.Lock()
_forget_at_exit = True  # register _forget_pools on first use


def _shared_pool(workers: int, replacing: Any = None) -> Any:
    """The warm pool for ``workers``; a new one if it is ``replacing`` (a pool found broken)."""
    from loky import ProcessPoolExecutor

    global _forget_at_exit
    with _pools_lock:
        if _forget_at_exit:
            atexit.register(_forget_pools)
            _forget_at_exit = False
        pool = _pools.get(workers)
        if pool is None or pool is replacing:
            pool = _pools[workers] = ProcessPoolExecutor(max_workers=workers, timeout=IDLE_WORKER_TIMEOUT)
        return pool


def _forget_pools() -> None:
    # loky has shut the pools down by now; let them be collected while the interpreter is
    # still whole (at module teardown loky's cleanup callback would fail noisily).
    with _pools_lock:
        _pools.clear()


def _drop_pool(pool: Any) -> None:
    """Forget ``pool`` (killed or broken), so the next run starts a fresh one."""
    with _pools_lock:
        for workers, current in list(_pools.items()):
            if current is pool:
                del _pools[workers]
