"""The objects plugins hand to pyarallel's scheduler, and the run descriptions observers receive.

A plugin's factory hook (see :mod:`pyarallel.hookspecs`) returns one of these:

- a :class:`Backend` runs tasks (threads, processes, a cluster...);
- a :class:`RateLimiter` paces the start of every attempt;
- a :class:`RetryPolicy` decides whether and when a failed item is tried again.

The scheduler owns everything else (ordering, the input window, retries, timeouts,
progress), so a backend only has to run what it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pyarallel._errors import TaskLostError
from pyarallel._result import RunStatus
from pyarallel._values import FrozenValue

__all__ = ["Backend", "RateLimiter", "RetryPolicy", "RunInfo", "RunSummary", "TaskLostError"]

T = TypeVar("T")


@runtime_checkable
class Backend(Protocol):
    """Where one run's tasks execute: the contract every executor plugin implements.

    A backend is built for one run by the ``pyarallel_executor`` hook and used from one
    thread (the scheduler's). It may wrap a long-lived pool that outlives the run.

    The scheduler keeps at most ``capacity`` tasks submitted and unfinished, so a backend
    need not queue much. A backend that runs exactly ``capacity`` tasks at a time may set
    ``queue_ahead = True``: the scheduler then keeps up to ``2 * capacity`` submitted so no
    worker waits between two tasks (never under a rate limit, where every call must start
    as its token is drawn).

    Optionally, a backend may define:

    - ``task_seconds``: how long it would like one task to last. The scheduler then groups
      tiny items into one task (a list of items) to amortise the backend's per-task cost,
      measuring item durations as it goes; items that take longer than ``task_seconds``
      are always sent alone, and nothing is grouped under a rate limit. Without it every
      task carries one item.
    - ``shares_memory = True`` for a backend whose tasks run in the scheduler's own
      process (threads): a chunk stuck behind an unexpectedly slow item then gives its
      unstarted items back to be run elsewhere.
    - ``until_ready()``, returning ``None`` when a task submitted now would start at once
      (given a free worker), else a ``Future`` that is done once it would (worker
      processes still starting). Under a rate limit the scheduler asks before drawing
      each token and waits for that future, because the limit is measured where calls
      start.
    """

    @property
    def name(self) -> str:
        """A short name for logs and errors, e.g. ``"thread"``."""
        ...

    @property
    def capacity(self) -> int:
        """How many tasks can run at the same time (the number of workers); at least 1."""
        ...

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Schedule ``fn(*args)`` and return a future for its result.

        ``fn`` is pyarallel's task function for this run (a picklable object holding the
        user's function): the *same object* for every task of a run, so a backend that
        sends tasks to other processes or machines can send it once per worker and keep
        it there. ``args`` hold one task's items (and, for backends with
        ``shares_memory``, a claim object). ``fn`` reports every item's own outcome, so
        the future fails only when the backend could not run the task:

        - with one of pyarallel's :class:`~pyarallel.ItemError` subclasses when the task
          itself is at fault (:class:`~pyarallel.SerializationError` when it or its
          result cannot be sent, :class:`~pyarallel.WorkerCrashedError` when it is known
          to have killed its worker);
        - with :class:`~pyarallel.contracts.TaskLostError` when the worker running it went
          away and the task is not known to be the cause; the scheduler runs its items
          again without counting an attempt (see that class);
        - with any other exception when the backend could not take the task (its
          executor shut down or broken). A group's items are then tried in smaller groups,
          down to one, so only the item at fault fails; a raising ``submit`` counts the
          same.

        Callbacks added to the future may run in any thread.
        """
        ...

    def close(self, *, abort: bool) -> None:
        """End the run; must return promptly.

        ``abort=False``: every submitted task has finished; release per-run resources
        (a shared pool may stay warm for the next run). ``abort=True``: the run stopped
        early (timeout, Ctrl-C, an error, a stream closed by its consumer): cancel what
        is queued and stop what is running as far as the backend can (a process backend
        terminates its workers). The scheduler ignores futures still pending afterwards.
        """
        ...


@runtime_checkable
class RateLimiter(Protocol):
    """Paces the start of attempts. Must be safe to use from several threads at once."""

    def try_acquire(self) -> float:
        """Take the right to start one call now.

        Return ``0.0`` when granted. Otherwise take nothing and return how many seconds
        to wait before asking again (a positive number). Never blocks, so the same
        limiter serves threads and event loops alike.
        """
        ...


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides, after an item's attempt failed, whether and when to try it again."""

    def next_delay(self, attempt: int, error: BaseException) -> float | None:
        """Return the seconds to wait before the next attempt, or ``None`` to give up.

        ``attempt`` is the number of the attempt that just failed (1 for the first) and
        ``error`` its exception. The scheduler waits out the delay without occupying a
        worker. May be called from any thread.
        """
        ...


class RunInfo(FrozenValue):
    """What observers are told about a run when it starts; the same object is passed to
    every observer hook of that run. A frozen value object (immutable, compared by value).

    ``run_id`` numbers the runs of this process; ``function`` is the function's qualified
    name; ``executor`` the backend's name (``"thread"``, ``"process"``, ``"asyncio"``...);
    ``workers`` how many tasks run at once. ``total`` is the number of input items when
    known up front, else ``None``. ``options`` holds the remaining options as given
    (``rate_limit``, ``retry``, ``timeout``, ``batch_size``, ``star``).
    """

    __slots__ = ("executor", "function", "options", "run_id", "total", "workers")
    __match_args__ = ("run_id", "function", "executor", "workers", "total", "options")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def run_id(self) -> int: ...
        @property
        def function(self) -> str: ...
        @property
        def executor(self) -> str: ...
        @property
        def workers(self) -> int: ...
        @property
        def total(self) -> int | None: ...
        @property
        def options(self) -> Mapping[str, object]: ...

    def __init__(  # noqa: PLR0917
        self,
        run_id: int,
        function: str,
        executor: str,
        workers: int,
        total: int | None,
        options: Mapping[str, object] | None = None,
    ) -> None:
        self._set("run_id", run_id)
        self._set("function", function)
        self._set("executor", executor)
        self._set("workers", workers)
        self._set("total", total)
        self._set("options", {} if options is None else options)

    def __hash__(self) -> int:
        return hash(self.run_id)  # options is a dict


class RunSummary(FrozenValue):
    """How a run ended, given to ``pyarallel_run_end``. A frozen value object.

    ``outcome`` is ``"completed"`` (every item finished), ``"timed_out"``,
    ``"size_mismatch"`` (a sized input gave more or fewer items than its ``len()`` said),
    ``"interrupted"`` (Ctrl-C, cancellation or a stream closed early) or ``"error"`` (an
    exception escaped, e.g. from a progress callback). ``succeeded`` and ``failed`` count
    the items finished each way, ``retries`` the attempts that were retried, ``seconds``
    the run's wall-clock time. ``error`` is the exception that escaped, if any.
    """

    __slots__ = ("error", "failed", "outcome", "retries", "seconds", "succeeded")
    __match_args__ = ("outcome", "succeeded", "failed", "retries", "seconds", "error")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def outcome(self) -> str: ...
        @property
        def succeeded(self) -> int: ...
        @property
        def failed(self) -> int: ...
        @property
        def retries(self) -> int: ...
        @property
        def seconds(self) -> float: ...
        @property
        def error(self) -> BaseException | None: ...

    def __init__(  # noqa: PLR0917
        self,
        outcome: str,
        succeeded: int,
        failed: int,
        retries: int,
        seconds: float,
        error: BaseException | None = None,
    ) -> None:
        self._set("outcome", outcome)
        self._set("succeeded", succeeded)
        self._set("failed", failed)
        self._set("retries", retries)
        self._set("seconds", seconds)
        self._set("error", error)

    @property
    def status(self) -> RunStatus | None:
        """The run's :class:`~pyarallel.RunStatus` (what its ``ParallelResult`` says), or
        ``None`` when it ended without one (interrupted, or an exception escaped)."""
        try:
            return RunStatus(self.outcome)
        except ValueError:
            return None
