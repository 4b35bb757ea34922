"""The backend that runs one pyarallel run's tasks on a Dask cluster.

Each task becomes one Dask task (``client.submit(run, function, items, key=unique)``);
its outcome comes back to a ``concurrent.futures.Future``. The run's function is pickled
once per run and travels as bytes with each task; every worker unpickles it once and keeps
it for the run. The task's items travel pickled too, so that anything that cannot be
pickled fails with a ``SerializationError`` naming what could not, not deep inside Dask.

Results are fetched in batches: Dask calls the done callbacks of its futures in one
thread of its own, which only queues them; a thread of this backend takes whatever has
finished and gathers it with one call.

What Dask does and pyarallel does not see: a worker that dies makes the scheduler run its
tasks again elsewhere (no attempt counted); a task during which ``allowed-failures + 1``
workers have died fails with ``KilledWorker``, which becomes the ``TaskLostError`` the
contract asks for.
"""

from __future__ import annotations

import itertools
import pickle
import re
import threading
import time
import uuid
from collections.abc import Callable, Sized
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, TypeVar

from pyarallel import SerializationError
from pyarallel.contracts import Capabilities, TaskLostError
from pyarallel_dask import _worker
from pyarallel_dask._clients import resolve_client

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ABORT_WAIT_SECONDS", "NAME", "TASK_SECONDS", "DaskBackend"]

T = TypeVar("T")

NAME = "dask"
# A Dask task costs milliseconds: scheduler time (about 1 ms, several on a small machine
# where the scheduler shares the cores with the workers) plus a round trip of ~10 ms.
# Tasks of ~100 ms (Dask's own advice) keep that under a few percent; tiny items are
# grouped to that length, items that long or longer travel alone. An aborted run loses
# nothing to the length: a chunk stops between two items once Dask has cancelled it.
TASK_SECONDS = 0.1
ABORT_WAIT_SECONDS = 2.0  # at most this long in close(abort=True) making sure nothing starts
MAX_UNRELEASED = 256  # fetched tasks kept on the cluster until the next submission, at most
READY_FOR_SECONDS = 0.5  # a cluster seen with a worker is taken to have one for this long
_ids = itertools.count()


@dataclass(eq=False, slots=True)
class _Task:
    future: Future[Any]  # what the scheduler waits on
    dask_future: Any  # a distributed.Future
    size: int | None  # how many items it carries


class DaskBackend:
    """One run on a Dask cluster (see the module docstring). ``client`` is the user's
    (never closed) or ``None``: the cluster ``executor="dask"`` picks, resolved on first
    use. ``workers`` caps the tasks in flight; by default the cluster's worker threads."""

    name = NAME

    def __init__(self, client: Client | None, workers: int | None = None, total: int | None = None) -> None:
        if client is not None and client.asynchronous:
            raise TypeError(
                "executor= needs a synchronous distributed.Client; this one was created with "
                "asynchronous=True (use pyarallel's async API for coroutines instead)"
            )
        self._client = client
        self._workers = workers
        # Tasks queued ahead would run at once on a cluster with more threads than the
        # ``workers`` asked for: with a cap, exactly ``workers`` tasks are in flight.
        # until_ready() tells an idle worker thread from a busy one (it counts the tasks
        # the cluster has not finished), so under a rate limit a task whose result is
        # still on its way back does not hold a thread's slot.
        self.capabilities = Capabilities(
            task_seconds=TASK_SECONDS,
            queue_ahead=workers is None,
            in_caller_process=False,
            reports_idle_workers=True,
        )
        self._total = total
        self._capacity: int | None = None
        self._lock = threading.Lock()
        self._run_id = f"{next(_ids)}-{uuid.uuid4().hex[:12]}"
        self._prefix = f"pyarallel-{self._run_id}"  # of the run's Dask keys, once fn is known
        self._count = itertools.count()
        self._tasks: dict[str, _Task] = {}  # Dask key -> task, while in flight
        self._shipped: tuple[object, _worker.FunctionRef] | None = None
        self._unshippable: tuple[object, Exception] | None = None
        self._finished: SimpleQueue[Any] = SimpleQueue()  # finished distributed.Futures
        self._fetched: list[Any] = []  # distributed.Futures whose outcome is in hand
        self._gatherer: threading.Thread | None = None
        self._ready_until = 0.0  # the cluster was seen with a worker: taken as ready till then
        self._refreshing = False  # a look at the cluster's workers is under way
        self._waiting: Future[None] | None = None
        self._on_cluster = 0  # tasks submitted that the cluster has not finished
        self._idle_waiter: Future[None] | None = None  # done when one of them finishes
        self._closed = False

    # -- the contract ---------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client this run submits through (connecting or starting a cluster first,
        for ``executor="dask"``)."""
        client = self._client
        if client is None:
            client = self._client = resolve_client()
        return client

    @property
    def capacity(self) -> int:
        if self._capacity is None:
            if self._workers is not None:
                capacity = self._workers
            else:
                threads = _threads(self.client)
                if threads:
                    self._ready_until = time.monotonic() + READY_FOR_SECONDS
                capacity = max(1, threads)
            if self._total is not None:
                capacity = max(1, min(capacity, self._total))
            self._capacity = capacity
        return self._capacity

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        import cloudpickle

        future: Future[T] = Future()
        function = self._ship(fn)
        if isinstance(function, Exception):
            message = f"the function {_label(fn)} could not be pickled to send it to the Dask cluster"
            return _failed(future, SerializationError(f"{message}: {function!r}"), function)
        try:
            payload: bytes = cloudpickle.dumps(args)
        except Exception as error:
            message = f"the task's items could not be pickled to send them to the Dask cluster: {error!r}"
            return _failed(future, SerializationError(message), error)
        key = f"{self._prefix}-{next(self._count)}"
        client: Any = self.client
        self._release_fetched()  # in the same message to the scheduler as the submission
        dask_future = client.submit(_worker.run, function, payload, key=key, pure=False)
        size = len(args[0]) if args and isinstance(args[0], Sized) else None
        with self._lock:
            if self._closed:
                dask_future.cancel()
                future.cancel()
                return future
            self._tasks[key] = _Task(future, dask_future, size)
            self._on_cluster += 1
            if self._gatherer is None:
                self._gatherer = threading.Thread(
                    target=self._gather_loop, name=f"pyarallel-dask-{self._run_id}", daemon=True
                )
                self._gatherer.start()
        dask_future.add_done_callback(self._finished_on_cluster)
        return future

    def _finished_on_cluster(self, dask_future: Any) -> None:
        """A task finished on the cluster (its result is yet to be fetched): its thread is
        idle again."""
        with self._lock:
            self._on_cluster -= 1
            waiter, self._idle_waiter = self._idle_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._finished.put(dask_future)

    def until_ready(self) -> Future[None] | None:
        """None when a worker thread is idle: the cluster has a worker, and fewer of the
        run's tasks are unfinished on it than it has threads. Else a future done once one
        is (a worker arrives, a task finishes).

        Asked before every rate-limit token, so it answers from the last look at the
        cluster, and looks again in the background once that look is
        ``READY_FOR_SECONDS`` old (only the first look, or one that found no worker,
        waits for the scheduler's answer)."""
        busy = self._all_threads_busy()
        if busy is not None:
            return busy
        if time.monotonic() < self._ready_until:
            return None
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            return waiting
        if self._ready_until:  # seen ready before: look again without waiting for it
            if not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._look_again, name="pyarallel-dask-look", daemon=True).start()
            return None
        if _threads(self.client):
            self._ready_until = time.monotonic() + READY_FOR_SECONDS
            return None
        waiting = self._waiting = Future()
        threading.Thread(
            target=self._wait_for_a_worker, args=(waiting,), name="pyarallel-dask-ready", daemon=True
        ).start()
        return waiting

    def _all_threads_busy(self) -> Future[None] | None:
        """A future done when one of the run's tasks finishes on the cluster, if as many
        are unfinished there as the run may keep busy; else None."""
        with self._lock:
            if self._on_cluster < self.capacity:
                return None
            if self._idle_waiter is None:
                self._idle_waiter = Future()
            return self._idle_waiter

    def close(self, *, abort: bool) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._tasks.values())
            self._tasks.clear()
            gatherer = self._gatherer
        if gatherer is not None:
            self._finished.put(None)  # the gatherer ends once it has seen this
        if self._waiting is not None:
            self._waiting.cancel()
        self._release_fetched()
        if not pending:
            return
        if abort:
            self._abort([task.dask_future for task in pending])
        else:  # every task has finished (and been fetched): just let go of them
            for task in pending:
                task.dask_future.release()
        for task in pending:
            task.future.cancel()

    # -- internals ------------------------------------------------------------------------

    def _ship(self, fn: object) -> _worker.FunctionRef | Exception:
        """The reference tasks carry to ``fn``, pickled once per run; or why it cannot be
        pickled (found once: every task of the run fails the same way)."""
        shipped = self._shipped
        if shipped is not None and shipped[0] is fn:
            return shipped[1]
        if self._unshippable is not None and self._unshippable[0] is fn:
            return self._unshippable[1]
        import cloudpickle

        try:
            blob: bytes = cloudpickle.dumps(fn)
        except Exception as error:
            self._unshippable = (fn, error)
            return error
        ref: _worker.FunctionRef = (f"{self._run_id}-{uuid.uuid4().hex[:8]}", blob, _label(fn))
        self._shipped = (fn, ref)
        self._prefix = f"pyarallel_{_key_name(fn)}-{self._run_id}"
        return ref

    def _gather_loop(self) -> None:
        """Fetch the outcomes of finished tasks, a batch at a time, until closed."""
        finished = self._finished
        while True:
            batch = [finished.get()]
            while True:
                try:
                    batch.append(finished.get_nowait())
                except Empty:
                    break
            ending = None in batch
            with self._lock:
                tasks = [task for f in batch if f is not None and (task := self._tasks.pop(f.key, None))]
            if tasks:
                self._deliver(tasks)
            if ending:
                return

    def _deliver(self, tasks: list[_Task]) -> None:
        done = [task for task in tasks if task.dask_future.status == "finished"]
        blobs: dict[str, Any] = {}
        if done:
            try:
                client: Any = self.client
                gathered = client.gather([task.dask_future for task in done])
            except Exception:  # one of them was lost meanwhile, or the cluster went away:
                pass  # fetch each alone below
            else:
                blobs = {task.dask_future.key: blob for task, blob in zip(done, gathered, strict=True)}
        for task in tasks:
            dask_future = task.dask_future
            blob = blobs.get(dask_future.key)
            if blob is None:
                try:
                    blob = dask_future.result()
                except BaseException as error:
                    _settle_failed(task, error)
                    continue
                finally:
                    self._release_later(dask_future)
            else:
                self._release_later(dask_future)
            try:
                report = pickle.loads(blob)
            except Exception as error:
                message = f"the task's outcome could not be unpickled from the Dask cluster: {error!r}"
                failure = SerializationError(message)
                failure.__cause__ = error
                _set_exception(task.future, failure)
            else:
                _set(task.future, report)

    def _release_later(self, dask_future: Any) -> None:
        """Let go of a fetched task on the cluster with the next submission (or at the
        end): every message from the client waits up to 10 ms after the previous one, so
        a release of its own would delay the submission that follows it."""
        with self._lock:
            self._fetched.append(dask_future)
            flush = len(self._fetched) >= MAX_UNRELEASED
        if flush:
            self._release_fetched()

    def _release_fetched(self) -> None:
        with self._lock:
            fetched, self._fetched = self._fetched, []
        for dask_future in fetched:
            dask_future.release()

    def _abort(self, dask_futures: list[Any]) -> None:
        """Cancel ``dask_futures`` and wait (a short while at most) until no worker can
        start an item of theirs any more: the scheduler has dropped them, and every worker
        has been told (a task already running finishes the item it is running)."""
        client: Any = self.client
        keys = [future.key for future in dask_futures]
        deadline = time.monotonic() + ABORT_WAIT_SECONDS

        def cancel_and_confirm() -> None:
            client.cancel(dask_futures)
            while client.run_on_scheduler(_worker.pending_keys, keys):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.002)
            while any(client.run(_worker.live_keys, keys, on_error="ignore").values()):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.002)

        confirming = threading.Thread(target=_quietly, args=(cancel_and_confirm,), daemon=True)
        confirming.start()
        confirming.join(max(0.0, deadline - time.monotonic()))

    def _look_again(self) -> None:
        try:
            threads = _threads(self.client)
        except Exception:  # the client closed: let the tasks find out
            threads = 1
        self._ready_until = time.monotonic() + READY_FOR_SECONDS if threads else 0.0
        self._refreshing = False

    def _wait_for_a_worker(self, waiting: Future[None]) -> None:
        client: Any = self.client
        while not self._closed and not waiting.done():
            try:
                client.wait_for_workers(1, timeout=1.0)
            except TimeoutError:
                continue
            except Exception:  # the client closed: let the tasks find out
                break
            break
        _set(waiting, None)


def _threads(client: Any) -> int:
    """How many threads the cluster's workers have, all told."""
    return sum(client.nthreads().values())


def _settle_failed(task: _Task, error: BaseException) -> None:
    """Deliver a task that Dask could not run, mapped to what the contract says."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker

    if isinstance(error, CancelledError):
        task.future.cancel()
        return
    failure: BaseException = error
    if isinstance(error, KilledWorker):
        deaths = error.allowed_failures + 1
        if task.size == 1:
            message = (
                f"the Dask workers running it died, {deaths} times in a row (os._exit, a signal "
                f"such as a segfault, or the OOM killer), so Dask gave up on it "
                f"(distributed.KilledWorker: {error})"
            )
            failure = TaskLostError(message, started=1, crashed=True)
        else:
            message = (
                f"the Dask workers running its task died, {deaths} times in a row, and which of "
                f"its items was the cause could not be told (distributed.KilledWorker: {error})"
            )
            failure = TaskLostError(message, started=None, crashed=None)
        failure.__cause__ = error
    elif not isinstance(error, Exception):  # not a task's failure: say what happened
        failure = RuntimeError(f"the Dask task failed with {error!r}")
        failure.__cause__ = error
    _set_exception(task.future, failure)


def _set(future: Future[Any], value: Any) -> None:
    try:
        future.set_result(value)
    except InvalidStateError:  # cancelled meanwhile (the run closed): nobody waits for it
        return


def _set_exception(future: Future[Any], error: BaseException) -> None:
    try:
        future.set_exception(error)
    except InvalidStateError:  # cancelled meanwhile (the run closed): nobody waits for it
        return


def _failed(future: Future[T], error: BaseException, cause: BaseException) -> Future[T]:
    error.__cause__ = cause
    future.set_exception(error)
    return future


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # the cluster went away while the run was aborted: nothing to stop
        return


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def _label(fn: object) -> str:
    """How messages name the user's function behind ``fn`` (pyarallel's task function)."""
    from pyarallel.worker import function_label

    return function_label(fn)


def _key_name(fn: object) -> str:
    """The user's function's name as it shows in Dask's keys (and its dashboard)."""
    return _KEY_UNSAFE.sub("_", _label(fn)).strip("_")[:40] or "task"
