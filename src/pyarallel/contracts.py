"""The objects plugins hand to pyarallel's scheduler, and the run descriptions observers receive.

A plugin's factory hook (see :mod:`pyarallel.hookspecs`) returns one of these:

- a :class:`Backend` runs tasks (threads, processes, a cluster...);
- a :class:`RateLimiter` paces the start of every attempt;
- a :class:`RetryPolicy` decides whether and when a failed item is tried again;
- a :class:`RunObserver` watches one run (a progress bar, a log, statistics).

Users may also pass a :class:`RateLimiter` or :class:`RetryPolicy` object, or a plugin's
:class:`RateLimitSpec` or :class:`RetrySpec`, straight to ``rate_limit=`` and ``retry=``.

The scheduler owns everything else (ordering, the input window, retries, timeouts,
progress), so a backend only has to run what it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pyarallel._errors import TaskLostError
from pyarallel._result import ItemResult, RunStatus, Settled, Successes
from pyarallel._values import FrozenValue

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyarallel._stats import RunStats

__all__ = [
    "MAX_TASK_LOSSES",
    "NO_CAPABILITIES",
    "Backend",
    "BackendOptions",
    "Capabilities",
    "CheckpointJob",
    "CheckpointState",
    "CheckpointStore",
    "FailedAttempt",
    "FinishedItems",
    "RateLimitSpec",
    "RateLimiter",
    "Reservation",
    "RetryDecision",
    "RetryPolicy",
    "RetrySpec",
    "RunInfo",
    "RunObserver",
    "RunSummary",
    "TaskLostError",
]

T = TypeVar("T")


class Capabilities(FrozenValue):
    """What a backend can do beyond running tasks: the optional parts of the contract,
    declared by :attr:`Backend.capabilities`. A frozen value object; every field is
    keyword-only, so a misspelt capability is a ``TypeError`` when the backend is built,
    never silently ignored.

    - ``task_seconds``: how long the backend would like one task to last, or ``None``.
      When set, the scheduler groups tiny items into one task (a list of items) to
      amortise the backend's per-task cost, measuring item durations as it goes; items
      that take longer than ``task_seconds`` are always sent alone, and nothing is grouped
      under a rate limit. When ``None``, every task carries one item.
    - ``queue_ahead``: the backend runs exactly ``capacity`` tasks at a time and queues
      the rest itself. The scheduler then keeps up to ``2 * capacity`` tasks submitted so
      no worker waits between two tasks (never under a rate limit, where every call must
      start as its token is drawn).
    - ``in_caller_process``: tasks run in the scheduler's own process (threads). The
      scheduler then hands a chunk's items out through a claim (``submit``'s extra
      argument), so a chunk stuck behind an unexpectedly slow item gives its unstarted
      items back to run elsewhere, and failures come back as they are. Otherwise (other
      processes, other hosts) a failure travels with its traceback as text, and a chunk
      that runs far longer than planned stops starting items and reports early. When a
      run closes admission (``stop=``, ``max_errors``) the scheduler also calls
      ``cancel()`` on the futures of such a backend, which must then succeed only for a
      task that has not started (an executor's own futures do); other backends' tasks
      are all left to finish.
    - ``reports_idle_workers``: ``until_ready()`` answers ``None`` only while a worker is
      idle right now (not merely started), and its future is done once one is. Under a
      rate limit a ``queue_ahead`` backend then gets up to ``2 * capacity`` tasks
      submitted as well, each token still drawn only when ``until_ready()`` says a worker
      is idle: a task whose result is still on its way back (a cluster's round trip) no
      longer holds a worker's slot, so the limit is kept however long that trip takes.
    - ``kills_overdue_tasks``: the backend honours :attr:`BackendOptions.task_timeout`
      itself: it knows when each item of a task starts, and once the running item has
      run longer than that, it terminates the worker running it and fails the task with
      a :class:`TaskLostError` with ``overdue=True`` (the item fails with
      :class:`~pyarallel.TaskTimeoutError`; the task's other items run again, uncounted).
      Tasks then keep grouping tiny items. Otherwise the scheduler enforces
      ``task_timeout`` by sending every item alone and abandoning an overdue one (the
      item fails; its worker, which cannot be stopped, runs on).
    - ``recycles_workers``: the backend honours
      :attr:`BackendOptions.max_tasks_per_worker` (a run asking for it on a backend
      without this capability is refused before any item starts).
    - ``synchronous``: ``submit`` runs the task to its end in the calling thread and
      returns a done future (the ``"inline"`` executor of ``sequential=True``). With
      ``in_caller_process``, no claim is handed to a chunk then: nothing could take its
      items back while it runs.
    """

    __slots__ = (
        "in_caller_process",
        "kills_overdue_tasks",
        "queue_ahead",
        "recycles_workers",
        "reports_idle_workers",
        "synchronous",
        "task_seconds",
    )
    __match_args__ = (
        "task_seconds",
        "queue_ahead",
        "in_caller_process",
        "reports_idle_workers",
        "kills_overdue_tasks",
        "recycles_workers",
        "synchronous",
    )
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def task_seconds(self) -> float | None: ...
        @property
        def queue_ahead(self) -> bool: ...
        @property
        def in_caller_process(self) -> bool: ...
        @property
        def reports_idle_workers(self) -> bool: ...
        @property
        def kills_overdue_tasks(self) -> bool: ...
        @property
        def recycles_workers(self) -> bool: ...
        @property
        def synchronous(self) -> bool: ...

    def __init__(
        self,
        *,
        task_seconds: float | None = None,
        queue_ahead: bool = False,
        in_caller_process: bool = False,
        reports_idle_workers: bool = False,
        kills_overdue_tasks: bool = False,
        recycles_workers: bool = False,
        synchronous: bool = False,
    ) -> None:
        from pyarallel._options import check_positive_number

        if task_seconds is not None:
            task_seconds = check_positive_number("Capabilities task_seconds", task_seconds)
        flags = {
            "queue_ahead": queue_ahead,
            "in_caller_process": in_caller_process,
            "reports_idle_workers": reports_idle_workers,
            "kills_overdue_tasks": kills_overdue_tasks,
            "recycles_workers": recycles_workers,
            "synchronous": synchronous,
        }
        for name, flag in flags.items():
            if not isinstance(flag, bool):
                raise TypeError(f"Capabilities {name} must be True or False; got {flag!r}")
        self._set("task_seconds", task_seconds)
        self._set("queue_ahead", queue_ahead)
        self._set("in_caller_process", in_caller_process)
        self._set("reports_idle_workers", reports_idle_workers)
        self._set("kills_overdue_tasks", kills_overdue_tasks)
        self._set("recycles_workers", recycles_workers)
        self._set("synchronous", synchronous)


class BackendOptions(FrozenValue):
    """The options of a call that concern the workers, given to ``pyarallel_executor``
    with every backend it builds. A frozen value object; both fields are validated before
    they reach a plugin.

    - ``task_timeout``: seconds one item may run, or ``None``. Honoured by a backend
      that declares ``kills_overdue_tasks`` (see :class:`Capabilities`); for any other
      backend the scheduler enforces it, so a backend may ignore it.
    - ``max_tasks_per_worker``: replace a worker after it has run that many items (a
      guard against leaks), or ``None``. Only a backend that declares
      ``recycles_workers`` is given a value other than ``None``.
    """

    __slots__ = ("max_tasks_per_worker", "task_timeout")
    __match_args__ = ("task_timeout", "max_tasks_per_worker")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def task_timeout(self) -> float | None: ...
        @property
        def max_tasks_per_worker(self) -> int | None: ...

    def __init__(self, *, task_timeout: float | None = None, max_tasks_per_worker: int | None = None) -> None:
        self._set("task_timeout", task_timeout)
        self._set("max_tasks_per_worker", max_tasks_per_worker)


NO_BACKEND_OPTIONS = BackendOptions()
"""A call that sets no worker option."""


@runtime_checkable
class Backend(Protocol):
    """Where one run's tasks execute: the contract every executor plugin implements.

    A backend is built for one run by the ``pyarallel_executor`` hook and used from one
    thread (the scheduler's). It may wrap a long-lived pool that outlives the run. The
    scheduler keeps at most ``capacity`` tasks submitted and unfinished (twice that with
    ``capabilities.queue_ahead``), so a backend need not queue much.

    Every member below is required (a plain class attribute will do for ``name``,
    ``capacity`` and ``capabilities``): the scheduler checks that the object the hook
    returns has them, and that ``capabilities`` is a :class:`Capabilities`, before the run
    starts, and refuses it with a ``TypeError`` naming what is missing. A backend without
    optional capabilities declares ``capabilities = NO_CAPABILITIES`` and an
    ``until_ready`` that returns ``None``.
    """

    @property
    def name(self) -> str:
        """A short name for logs and errors, e.g. ``"thread"``."""
        ...

    @property
    def capacity(self) -> int:
        """How many tasks can run at the same time (the number of workers); at least 1."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do beyond running tasks (see :class:`Capabilities`)."""
        ...

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Schedule ``fn(*args)`` and return a future for its result.

        ``fn`` is pyarallel's task function for this run (a picklable object holding the
        user's function): the *same object* for every task of a run, so a backend that
        sends tasks to other processes or machines can send it once per worker and keep
        it there. ``args`` hold one task's items (and, with
        ``capabilities.in_caller_process``, a claim object). ``fn`` reports every item's
        own outcome, so the future fails only when the backend could not run the task:

        - with one of pyarallel's :class:`~pyarallel.ItemError` subclasses when the task
          itself is at fault (:class:`~pyarallel.SerializationError` when it or its
          result cannot be sent, :class:`~pyarallel.WorkerCrashedError` when it is known
          to have killed its worker);
        - with :class:`~pyarallel.contracts.TaskLostError` when the worker running it went
          away (the cluster or pool still alive) and the task is not known to be the
          cause; the scheduler runs its items again without counting an attempt, at most
          :data:`MAX_TASK_LOSSES` times per item (see that class);
        - with any other exception when the backend could not take the task (its
          executor shut down or broken). A group's items are then tried in smaller groups,
          down to one, so only the item at fault fails; a raising ``submit`` counts the
          same.

        Callbacks added to the future may run in any thread.
        """
        ...

    def until_ready(self) -> Future[None] | None:
        """``None`` when a task submitted now would start at once (given a free worker),
        else a ``Future`` that is done once it would (worker processes still starting, a
        cluster still without workers).

        Under a rate limit the scheduler asks before drawing each token and waits for
        that future, because the limit is measured where calls start. Other runs never
        ask.
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


NO_CAPABILITIES = Capabilities()
"""A backend without optional capabilities: one item per task, in another process."""

MAX_TASK_LOSSES = 3
"""How many times an item may be lost with its worker as a possible cause (running when
its task was reported lost, ``TaskLostError`` with ``crashed=None``) and run again,
uncounted, before it fails with :class:`~pyarallel.WorkerCrashedError`. Items that had not
started, or whose worker was alive (``crashed=False``), run again without counting. A
suspect runs alone and fails as soon as it is lost again alone, so the bound is a safety
net for backends that keep losing tasks without a verdict."""


class Reservation(Protocol):
    """One attempt's claim on a :class:`RateLimiter`, from ``request(item)`` to its end.

    The scheduler makes one per attempt and drives it through this life, always from the
    thread (or event loop) driving the run:

    1. ``try_acquire()`` until it answers ``0.0`` (granted), or ``cancel()`` if the
       attempt will never start (the run timed out or was stopped): a reservation that
       was never granted has taken nothing;
    2. once granted, the attempt runs, and ``finished(result)`` is called when it has
       ended (not for an attempt whose worker was lost, which runs again with a new
       reservation);
    3. then, if it failed and the retry policy said the service throttled it (a
       :class:`RetryDecision` with ``throttled`` or ``pause``), ``throttled(pause)``.

    Reservations with equal ``lane`` are served in order: the scheduler asks only the
    first of a lane and, while it waits, asks the first of other lanes, in turn, so an
    item whose key is out of budget does not hold up items of other keys.
    """

    @property
    def lane(self) -> Hashable:
        """What this attempt waits behind: equal for attempts drawing on the same budgets
        (e.g. the same key); ``None`` when the limiter has no keys."""
        ...

    def try_acquire(self) -> float:
        """Take what the attempt uses now, if every budget allows it: return ``0.0``.

        Otherwise take nothing and return how many seconds to wait before asking again
        (a positive number), counted from when this answer is returned. Never waits for
        the budget, so one limiter serves threads and event loops alike; asking before the
        time is harmless. It is called on the event loop in the async API, so it should
        answer within a network round trip at most (a shared limiter's server).
        """
        ...

    def cancel(self) -> None:
        """The attempt will not start (asked only before it was granted): forget it."""
        ...

    def throttled(self, pause: float | None) -> None:
        """The granted attempt was throttled by the service it called. ``pause``: the
        service asked every caller to wait that many seconds (``Retry-After``), so hold
        every attempt drawing on the same budgets (this key only, for a keyed limit) until
        then; ``None``: no wait was asked. An adaptive limiter lowers its rate."""
        ...

    def finished(self, result: ItemResult[Any]) -> bool | None:
        """The granted attempt ended, with ``result`` (its return value, or its exception;
        ``result.index`` is the item's). A limiter reconciles what the call really used
        here (``settle=``), refunding or charging the difference. Return ``True`` when
        budget was given back, so that attempts told to wait ask again now rather than
        at the time they were given; ``None`` or ``False`` otherwise. An exception raised
        here fails the item with it, without a retry."""
        ...


@runtime_checkable
class RateLimiter(Protocol):
    """Paces the start of attempts. Must be safe to use from several threads at once.

    A ``RateLimiter`` may be passed as ``rate_limit=`` directly: every call given the
    same object shares its budget. :class:`pyarallel.Limiter` is the built-in one.
    """

    def request(self, item: object) -> Reservation:
        """A reservation for one attempt of ``item`` (the input item as given; for
        ``parallel_starmap``, its tuple of arguments). Raising fails that item at once,
        without a retry, with the exception raised: for an item that can never be granted
        (its cost exceeds what a limit lets start at once) or whose cost or key cannot be
        worked out. Called in the thread driving the run, once per attempt.
        """
        ...


@runtime_checkable
class RateLimitSpec(Protocol):
    """A plugin's description of a rate limit, passed as ``rate_limit=``: an object that
    builds the limiter for one call. Implement it to let ``rate_limit=YourSpec(...)``
    type-check and work without any hook."""

    def as_rate_limiter(self) -> RateLimiter:
        """The limiter for one call (return the same object every time to share one
        budget between calls). Called once per call, while the options are validated."""
        ...


class FailedAttempt(FrozenValue):
    """What a :class:`RetryPolicy` is told about an attempt that failed. A frozen value.

    ``index`` is the item's position in the input (from 0), ``attempt`` the number of the
    attempt that failed (1 for the first), ``error`` its exception. ``first_started`` is
    when the item's first attempt started and ``elapsed`` the seconds from then to this
    failure, both on ``time.monotonic()``'s clock. The start is when the task carrying the
    attempt began to run, as the task's own duration tells (time queued in the backend is
    left out; the submission time where a task reports no duration). Attempts that were lost with
    their worker and run again are not counted.

    ``run_calls`` is how many attempts of any item the run has started so far (this one
    included) and ``run_retries`` how many retries it has decided so far: what a policy
    needs to keep its retries to a fraction of the calls (``Retry(budget=...)``).
    """

    __slots__ = ("attempt", "elapsed", "error", "first_started", "index", "run_calls", "run_retries")
    __match_args__ = ("index", "attempt", "error", "first_started", "elapsed", "run_calls", "run_retries")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def index(self) -> int: ...
        @property
        def attempt(self) -> int: ...
        @property
        def error(self) -> BaseException: ...
        @property
        def first_started(self) -> float: ...
        @property
        def elapsed(self) -> float: ...
        @property
        def run_calls(self) -> int: ...
        @property
        def run_retries(self) -> int: ...

    def __init__(  # noqa: PLR0917
        self,
        index: int,
        attempt: int,
        error: BaseException,
        first_started: float,
        elapsed: float,
        run_calls: int = 1,
        run_retries: int = 0,
    ) -> None:
        self._set("index", index)
        self._set("attempt", attempt)
        self._set("error", error)
        self._set("first_started", first_started)
        self._set("elapsed", elapsed)
        self._set("run_calls", run_calls)
        self._set("run_retries", run_retries)

    def __hash__(self) -> int:
        return hash((self.index, self.attempt))  # an exception need not hash by value


class RetryDecision(FrozenValue):
    """A :class:`RetryPolicy`'s answer when an item is to be tried again: after ``delay``
    seconds (>= 0), during which the item occupies no worker. A frozen value object.

    For a failure that says the service, not the item, needs a rest (an HTTP 429, or a 503
    with ``Retry-After``):

    - ``pause``: nothing else drawing on the same quota starts before the delay is over
      either. Under a rate limit the limiter the attempt drew from is paused (for a keyed
      limit, that key only), which holds every call sharing it; without one, the run
      stops submitting attempts. Attempts already submitted go on (including a task a
      ``queue_ahead`` backend holds queued for a worker).
    - ``throttled``: the failure was the service throttling the caller; an adaptive
      limiter lowers its rate. A paused decision counts as a throttle too.
    """

    __slots__ = ("delay", "pause", "throttled")
    __match_args__ = ("delay", "pause", "throttled")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def delay(self) -> float: ...
        @property
        def pause(self) -> bool: ...
        @property
        def throttled(self) -> bool: ...

    def __init__(self, delay: float, *, pause: bool = False, throttled: bool = False) -> None:
        from pyarallel._options import check_non_negative_number

        seconds = check_non_negative_number("RetryDecision delay", delay)
        for name, flag in (("pause", pause), ("throttled", throttled)):
            if not isinstance(flag, bool):
                raise TypeError(f"RetryDecision {name} must be True or False; got {flag!r}")
        self._set("delay", seconds)
        self._set("pause", pause)
        self._set("throttled", throttled or pause)


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides, after an item's attempt failed, whether and when to try it again.

    A ``RetryPolicy`` may be passed as ``retry=`` directly. It must be safe to use from
    several threads at once if it is shared between calls.
    """

    def decide(self, failed: FailedAttempt) -> RetryDecision | float | None:
        """Answer for one failed attempt (see :class:`FailedAttempt`):

        - ``None``: give up; the item fails with ``failed.error``, the last attempt's;
        - a number of seconds (>= 0), or a :class:`RetryDecision`: try again after that
          delay (optionally pausing what shares the quota, see :class:`RetryDecision`).

        The scheduler waits out the delay without occupying a worker, and the next
        attempt draws a rate-limit token like any other. Called in the thread driving the
        run (for the async API, the event loop's); an exception it raises ends the run
        and propagates to the user's call.
        """
        ...


@runtime_checkable
class RetrySpec(Protocol):
    """A plugin's description of a retry policy, passed as ``retry=``: an object that
    builds the policy for one call. Implement it to let ``retry=YourSpec(...)``
    type-check and work without any hook."""

    def as_retry_policy(self) -> RetryPolicy:
        """The policy for one call. Called once per call, while the options are validated."""
        ...


class RunInfo(FrozenValue):
    """What observers are told about a run when it starts; the same object is passed to
    every observer hook of that run. A frozen value object (immutable, compared by value).

    ``run_id`` numbers the runs of this process; ``function`` is the function's qualified
    name; ``executor`` the backend's name (``"thread"``, ``"process"``, ``"asyncio"``...);
    ``workers`` how many tasks run at once. ``total`` is the number of input items when
    known up front, else ``None``. ``options`` holds the remaining options as given
    (``rate_limit``, ``retry``, ``timeout``, ``batch_size``, ``star``, ``progress``,
    ``max_errors``, ``task_timeout``, ``checkpoint``).
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
    the run's wall-clock time. ``error`` is the exception that escaped, if any. ``stats``
    is the run's :class:`~pyarallel.RunStats` (what ``ParallelResult.stats`` holds; a
    stream's, at its end).
    """

    __slots__ = ("error", "failed", "outcome", "retries", "seconds", "stats", "succeeded")
    __match_args__ = ("outcome", "succeeded", "failed", "retries", "seconds", "error", "stats")
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
        @property
        def stats(self) -> RunStats | None: ...

    def __init__(  # noqa: PLR0917
        self,
        outcome: str,
        succeeded: int,
        failed: int,
        retries: int,
        seconds: float,
        error: BaseException | None = None,
        stats: RunStats | None = None,
    ) -> None:
        self._set("outcome", outcome)
        self._set("succeeded", succeeded)
        self._set("failed", failed)
        self._set("retries", retries)
        self._set("seconds", seconds)
        self._set("error", error)
        self._set("stats", stats)

    @property
    def status(self) -> RunStatus | None:
        """The run's :class:`~pyarallel.RunStatus` (what its ``ParallelResult`` says), or
        ``None`` when it ended without one (interrupted, or an exception escaped)."""
        try:
            return RunStatus(self.outcome)
        except ValueError:
            return None


class CheckpointJob(FrozenValue):
    """What identifies a checkpointed job, given to :meth:`CheckpointStore.open`. A frozen
    value object.

    ``function`` is the function's module and qualified name (``"jobs:fetch"``), so that a
    job whose function was fixed and reloaded resumes where it stopped, while a store
    written by another function is refused. ``form`` is the call form: ``"map"`` (one
    argument per item) or ``"starmap"``. ``keyed`` is ``True`` when items are identified
    by ``checkpoint_key=`` (the key function's result), ``False`` when by their input
    index.
    """

    __slots__ = ("form", "function", "keyed")
    __match_args__ = ("function", "form", "keyed")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def function(self) -> str: ...
        @property
        def form(self) -> str: ...
        @property
        def keyed(self) -> bool: ...

    def __init__(self, function: str, form: str, keyed: bool) -> None:
        self._set("function", function)
        self._set("form", form)
        self._set("keyed", keyed)


class CheckpointState:
    """What earlier runs of a job finished, as :meth:`CheckpointStore.open` returns it:
    ``values`` holds the return value of every item that succeeded, and ``errors`` the
    failure of every item whose recorded failure is final, both by item key (the input
    index, or the ``checkpoint_key=`` result). The scheduler answers those items from
    here and runs every other one: a store that retries failed items on resume (the
    built-in one, by default) leaves them out of ``errors``."""

    __slots__ = ("errors", "values")

    def __init__(
        self,
        values: Mapping[Hashable, Any] | None = None,
        errors: Mapping[Hashable, BaseException] | None = None,
    ) -> None:
        self.values: Mapping[Hashable, Any] = {} if values is None else values
        self.errors: Mapping[Hashable, BaseException] = {} if errors is None else errors

    def __repr__(self) -> str:
        return f"CheckpointState({len(self.values)} succeeded, {len(self.errors)} failed)"


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a checkpointed run records each finished item, so that a rerun of the same
    call skips it: what ``checkpoint=`` resolves to (the built-in store is SQLite; a
    plugin's ``pyarallel_checkpoint_store`` hook may return another, e.g. on Redis).

    The scheduler uses a store from the thread driving the run (the event loop's, for the
    async API), in this order: ``open`` once before any item runs; ``record_successes``
    and ``record_failure`` as items finish, before their results reach the caller (so a
    result the caller has seen is never lost); ``close`` once, however the run ends.
    """

    def open(self, job: CheckpointJob) -> CheckpointState:
        """Begin (or resume) ``job``: return what its earlier runs finished. Raise
        :class:`~pyarallel.CheckpointError` if the store belongs to another job (another
        function, call form or kind of key) or its contents cannot be trusted; nothing
        has run then."""
        ...

    def record_successes(self, keys: Sequence[Hashable], values: Sequence[Any]) -> None:
        """Items ``keys`` (in order) succeeded with ``values``. Once this returns, the
        record must survive the process being killed (a commit, not a buffer); a store
        makes one write per call, and the scheduler calls it once per finished task, so
        tiny items are recorded in groups. A value the store cannot serialise is not
        recorded (the item runs again on resume), never an error."""
        ...

    def record_failure(self, key: Hashable, error: BaseException) -> None:
        """The item ``key`` failed for good with ``error`` (after its retries); an item
        recorded as a success by an earlier run is never recorded as a failure."""
        ...

    def close(self) -> None:
        """The run has ended: make every record durable and release the store."""
        ...


class FinishedItems:
    """Items that reached their final result together (one task's, or those ended at
    once by a timeout or a stop), as :meth:`RunObserver.items_finished` receives them.

    Counting them is free, whatever their number (``len``, ``succeeded``, ``failed``);
    iterating makes an :class:`~pyarallel.ItemResult` per item, in the order they were
    reported, so an observer that only counts never pays for that. Valid only during the
    call it is passed to.
    """

    __slots__ = ("_settled", "failed", "succeeded")

    def __init__(self, settled: Sequence[Settled], succeeded: int, failed: int) -> None:
        self._settled = settled
        self.succeeded = succeeded
        """How many of these items succeeded."""
        self.failed = failed
        """How many of these items failed."""

    def __len__(self) -> int:
        return self.succeeded + self.failed

    def __iter__(self) -> Iterator[ItemResult[Any]]:
        for settled in self._settled:
            if type(settled) is Successes:
                yield from settled.results()
            else:
                yield settled  # type: ignore[misc]

    def failures(self) -> list[ItemResult[Any]]:
        """The failed items' results (cheap: failures are reported one by one)."""
        if not self.failed:
            return []
        return [settled for settled in self._settled if isinstance(settled, ItemResult) and not settled.ok]

    def slowest(self, count: int) -> list[tuple[int, float]]:
        """Up to ``count`` of these items that took longest, as ``(index, seconds)``,
        longest first (items grouped in one task share its time equally)."""
        candidates: list[tuple[int, float]] = []
        for settled in self._settled:
            if type(settled) is Successes:
                first, seconds = settled.start, settled.seconds
                candidates.extend(
                    (index, seconds) for index in range(first, first + min(count, len(settled)))
                )
            else:
                candidates.append((settled.index, settled.duration))  # type: ignore[union-attr]
        candidates.sort(key=_by_seconds_descending)
        return candidates[:count]

    def __repr__(self) -> str:
        return f"FinishedItems({self.succeeded} succeeded, {self.failed} failed)"


def _by_seconds_descending(entry: tuple[int, float]) -> tuple[float, int]:
    return (-entry[1], entry[0])


class RunObserver:
    """Watches one run: what :func:`~pyarallel.hookspecs.pyarallel_run_observers` returns
    for the runs it wants to watch (a progress bar, a log, statistics, a metrics
    exporter). Subclass it and override the methods you need; the others do nothing, and
    pyarallel never calls a method a subclass leaves alone, so an observer that does not
    override :meth:`item_result` costs nothing per item.

    Every method is called in the thread driving the run (the one that called
    ``parallel_map`` or iterates the stream; for the async API, the event loop's thread),
    and the run waits for it: return quickly. An observer is asked for at the run's start
    and is told only of that run, never of another run in the same process. An exception
    from a method propagates to the user's call like one from an observer hook (see
    :mod:`pyarallel.hookspecs`), except that :meth:`run_end` is called on every observer
    of the run before the first exception it raised propagates.

    ``run`` is the run's :class:`RunInfo`, the same object in every call.
    """

    def run_start(self, run: RunInfo) -> None:
        """The run is about to take its first item; as ``pyarallel_run_start``."""

    def item_retry(self, run: RunInfo, index: int, attempt: int, error: BaseException, delay: float) -> None:
        """Attempt ``attempt`` (from 1) of item ``index`` failed with ``error`` and the
        item runs again after ``delay`` seconds; as ``pyarallel_item_retry``."""

    def items_finished(self, run: RunInfo, finished: FinishedItems, done: int, seen: int) -> None:
        """``finished`` items reached their final result; ``done`` items have finished so
        far, counting these, and ``seen`` have been taken from the input (``run.total`` is
        the final total when known). Called once per task finished (or items ended
        together), so it suits counting: a progress bar, statistics."""

    def item_result(self, run: RunInfo, result: ItemResult[Any], done: int, seen: int) -> None:
        """One item reached its final result; as ``pyarallel_item_result``. Overriding it
        makes an ``ItemResult`` per item: prefer :meth:`items_finished` on a hot path.
        Called after :meth:`items_finished` for the same items."""

    def task_lost(self, run: RunInfo, indexes: Sequence[int], error: TaskLostError) -> None:
        """The worker running items ``indexes`` went away: it crashed (``error.crashed``),
        or the backend stopped it because an item overran ``task_timeout``
        (``error.overdue``). The run recovers on its own: the item that crashed fails,
        items that may have crashed it run again alone, the others run again on a fresh
        worker (:meth:`items_finished` and :meth:`item_retry` tell what became of each)."""

    def run_waiting(self, run: RunInfo, reason: str, seconds: float) -> None:
        """The run's starts were held back for ``seconds`` while a worker was free:
        ``reason`` is ``"rate_limit"`` (told when the wait for the rate limiter ends) or
        ``"pause"`` (a retry decision paused the run, e.g. on a ``Retry-After``; told when
        decided, with the seconds it adds to any pause under way). A pause asked of a
        shared ``Limiter`` is that limiter's, and shows as ``"rate_limit"`` waits."""

    def run_end(self, run: RunInfo, summary: RunSummary) -> None:
        """The run ended, however it did; as ``pyarallel_run_end``. ``summary.stats`` holds
        its statistics."""
