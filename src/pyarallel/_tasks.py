"""The function the scheduler sends to a backend: it runs the user's function on one
task's items and returns one outcome per item, so a failing item never hides the others.

It runs wherever the backend puts it (a thread, another process, another machine), so it
imports nothing heavy and returns only picklable values.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

__all__ = [
    "PROGRESS_SLOT",
    "ChunkClaim",
    "RemoteFailure",
    "RemoteTraceback",
    "StoppableClaim",
    "TaskFunction",
    "TaskReport",
    "received",
    "run_task",
]

# What a task sends back: ``values`` holds one entry per item that ran, in order: the
# item's return value, or the exception it failed with; ``failed`` lists the positions
# holding an exception (empty when every item succeeded, the common case, which the
# scheduler then settles as a whole). Last, the seconds the task took where it ran. A task
# that stopped early (see ``TaskFunction.budget``) reports only its first items.
TaskReport = tuple[list[Any], list[int], float]

# Where a worker process records which item of its task is running, so that the backend
# can tell, if the worker dies, which item was running (see ``_worker``): a view of
# shared memory and the position of the task's slot in it. Set by the worker around one
# task; a task clears it for the calls it makes, so nested runs never write to it.
PROGRESS_SLOT: ContextVar[tuple[memoryview, int] | None] = ContextVar("pyarallel_progress_slot", default=None)


class TaskFunction:
    """What every task of one run calls: the user's ``fn`` (called as ``fn(*payload)``
    when ``star``) with the run's settings, applied to one task's payloads.

    The same object serves every task of a run, so a backend that sends tasks to other
    processes can send it once per worker and keep it there (see ``Backend.submit``).
    ``remote`` is the backend's word that tasks run outside the scheduler's process
    (``not Capabilities.in_caller_process``): a failure's traceback would be lost on the
    way back, so it travels along as text. ``budget``: a
    task of several items running elsewhere stops starting items once it has run that
    many seconds (far longer than planned: an item in it turned out slow), and reports
    what ran; the scheduler sends the rest elsewhere.

    ``portable`` is what travels in place of ``fn`` when the task function is pickled: an
    object that calls ``fn`` and pickles where ``fn`` itself cannot (a ``@parallel``
    function stands for the function it wraps, whose module-level name it has taken).

    ``init`` (the call's ``worker_init``) runs once in each thread that runs this run's
    tasks (in a worker process: its thread running tasks), before its first item; if it
    raises, the task fails with ``WorkerInitError`` and the scheduler ends the run.
    """

    __slots__ = ("_initialized", "budget", "fn", "init", "portable", "remote", "star")

    def __init__(  # noqa: PLR0917
        self,
        fn: Callable[..., Any],
        star: bool,
        remote: bool,
        budget: float | None = None,
        portable: Callable[..., Any] | None = None,
        init: Callable[[], object] | None = None,
    ) -> None:
        self.fn = fn
        self.star = star
        self.remote = remote
        self.budget = budget
        self.portable = fn if portable is None else portable
        self.init = init
        self._initialized = threading.local() if init is not None else None

    def __call__(
        self,
        payloads: Sequence[Any],
        claim: ChunkClaim | None = None,
        *,
        stop: Callable[[], bool] | None = None,
    ) -> TaskReport:
        """Run ``fn`` on each payload and report every outcome (see ``run_task``); ``stop``
        is asked before each item after the first (see ``pyarallel.worker.run_task``)."""
        if self._initialized is not None and not getattr(self._initialized, "done", False):
            self._initialize()
        if stop is not None and claim is None and len(payloads) > 1:
            claim = StoppableClaim(len(payloads), self.budget, stop)
        return run_task(self.fn, self.star, payloads, self.remote, claim=claim, budget=self.budget)

    def _initialize(self) -> None:
        """Run ``init`` in this thread, once (see the class docstring)."""
        from pyarallel._errors import WorkerInitError

        assert self.init is not None
        assert self._initialized is not None
        try:
            self.init()
        except BaseException as error:
            where = f"process {os.getpid()}, thread {threading.current_thread().name}"
            label = function_label(self.init)
            failure = WorkerInitError(f"worker_init {label} raised in a worker ({where}): {error!r}")
            if not self.remote:
                raise failure from error
            import traceback  # the traceback would be lost on the way back: send it as text

            raise failure from RemoteTraceback("".join(traceback.format_exception(error)))
        self._initialized.done = True

    def __reduce__(self) -> tuple[object, ...]:
        return (TaskFunction, (self.portable, self.star, self.remote, self.budget, None, self.init))


def run_task(
    fn: Callable[..., Any],
    star: bool,
    payloads: Sequence[Any],
    remote: bool,
    *,
    claim: ChunkClaim | None = None,
    budget: float | None = None,
) -> TaskReport:
    """Call ``fn`` on each payload (``fn(*payload)`` when ``star``) and report every outcome.

    The task's own duration, measured where it runs, lets the scheduler size the next
    tasks. With a ``claim`` (tasks run in the scheduler's process), payloads are taken one
    at a time through it, and only the ones taken are run and reported. Without one, a
    task of several items stops soon after ``budget`` seconds have passed.
    """
    started = time.perf_counter()
    slot = PROGRESS_SLOT.get()
    if slot is not None:
        PROGRESS_SLOT.set(None)  # not for the runs fn itself may start
    # With a claim, the report is shared so the scheduler can settle items while we run.
    values: list[Any] = [] if claim is None else claim.values
    failed: list[int] = [] if claim is None else claim.failed
    if claim is not None:
        _run_items(fn, star, _claimed(payloads, claim), values, failed, remote, slot)
    elif budget is None or len(payloads) < 2:
        _run_items(fn, star, payloads, values, failed, remote, slot)
    else:
        stop_at, clock = started + budget, time.perf_counter
        for batch in _batches(payloads, clock):
            _run_items(fn, star, batch, values, failed, remote, slot)
            if clock() >= stop_at:
                break
    return values, failed, time.perf_counter() - started


def _run_items(  # noqa: PLR0917 - the hot loop: no object per task
    fn: Callable[..., Any],
    star: bool,
    payloads: Iterable[Any],
    values: list[Any],
    failed: list[int],
    remote: bool,
    slot: tuple[memoryview, int] | None,
) -> None:
    """Run ``payloads`` one after the other, appending each outcome to ``values`` (and the
    position of each exception to ``failed``); record each start in ``slot`` if given."""
    append = values.append
    if slot is None:
        # The two loops differ only in the call: one test per item less, where a trivial
        # item costs ~50 ns (sequential=True is held to twice a plain loop).
        if star:
            for payload in payloads:
                try:
                    append(fn(*payload))
                except BaseException as error:  # SystemExit, KeyboardInterrupt too: they fail this item only
                    _record_failure(error, values, failed, remote)
        else:
            for payload in payloads:
                try:
                    append(fn(payload))
                except BaseException as error:
                    _record_failure(error, values, failed, remote)
        return
    view, word = slot
    for started, payload in enumerate(payloads, len(values) + 1):
        view[word] = started  # this many items have started
        try:
            append(fn(*payload) if star else fn(payload))
        except BaseException as error:
            _record_failure(error, values, failed, remote)


def _record_failure(error: BaseException, values: list[Any], failed: list[int], remote: bool) -> None:
    """The item about to be appended to ``values`` failed with ``error``."""
    if not remote and type(error) is KeyboardInterrupt and _in_main_thread():
        raise error  # Ctrl-C landed in an item running in the caller's thread (inline)
    failed.append(len(values))
    values.append(_sendable(error, remote))


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _sendable(error: BaseException, remote: bool) -> Any:
    """``error``, or what travels for it to another process (see ``RemoteFailure``)."""
    return _with_remote_traceback(error) if remote else error


def received(value: Any) -> Any:
    """A failure as the scheduler receives it: a ``RemoteFailure`` that was never pickled
    (a backend that ran its task in this process after all) becomes its exception."""
    return _rebuild_failure(value.error, value.chain) if isinstance(value, RemoteFailure) else value


BATCH_SECONDS = 0.002  # how often a task with a budget reads the clock, at most
MAX_BATCH = 1024


def _batches(payloads: Sequence[Any], clock: Callable[[], float]) -> Iterator[Sequence[Any]]:
    """``payloads`` in batches of about ``BATCH_SECONDS`` of work each (by the time per item
    measured so far; the first batch is one item), so that the caller can read the clock
    between them without reading it for every item."""
    start, size, began = 0, 1, clock()
    while start < len(payloads):
        yield payloads[start : start + size]
        start += size
        per_item = (clock() - began) / start
        size = max(1, min(MAX_BATCH, int(BATCH_SECONDS / max(per_item, 1e-9))))


class ChunkClaim:
    """Hands out a chunk's items one at a time, and lets the scheduler stop that and take
    back the items not started yet. Only meaningful when tasks share this process."""

    __slots__ = ("_limit", "_lock", "_next", "failed", "values")

    def __init__(self, size: int) -> None:
        self.values: list[Any] = []  # appended by the task as its items finish
        self.failed: list[int] = []  # positions in ``values`` that hold an exception
        self._lock = threading.Lock()
        self._next = 0
        self._limit = size

    def take(self) -> int | None:
        """The position of the next item to run, or None when the chunk is done."""
        with self._lock:
            position = self._next
            if position >= self._limit:
                return None
            self._next = position + 1
            return position

    def revoke(self) -> int:
        """Hand out nothing more; return how many items were taken (they will be reported)."""
        with self._lock:
            self._limit = self._next
            return self._next


class StoppableClaim(ChunkClaim):
    """A claim for a task running outside the scheduler's process: it hands the items out
    until ``stop()`` says the task was cancelled, or the task has run for ``budget``
    seconds (the first item always runs)."""

    __slots__ = ("_stop", "_stop_at")

    def __init__(self, size: int, budget: float | None, stop: Callable[[], bool]) -> None:
        super().__init__(size)
        self._stop_at = None if budget is None else time.perf_counter() + budget
        self._stop = stop

    def take(self) -> int | None:
        if self.values:
            if self._stop():
                return None
            if self._stop_at is not None and time.perf_counter() >= self._stop_at:
                return None
        return super().take()


def _claimed(payloads: Sequence[Any], claim: ChunkClaim) -> Iterator[Any]:
    while (position := claim.take()) is not None:
        yield payloads[position]


# -- failures that travel back from another process -------------------------------------

MAX_CHAINED = 32  # how many exceptions chained to a failure (causes, contexts) travel with it

# One exception of a failure's chain, as it travels (see ``RemoteFailure``): the exception
# pickled on its own, so that one which cannot make the trip loses only itself (None for
# the failure itself, which travels as it is, and for one that could not be pickled);
# its description (its repr, and why it could not be pickled if so); its traceback where
# it was raised, as the text of a note ("" if it was never raised); the positions in the
# chain of its ``__cause__`` and its ``__context__`` (-1: none, or one past MAX_CHAINED);
# its ``__suppress_context__``.
ChainLink = tuple[bytes | None, str, str, int, int, bool]


class RemoteTraceback(Exception):
    """Stands, in the chain of a failure from another process, for a ``__cause__`` or
    ``__context__`` that could not travel itself (it could not be pickled there, or not
    unpickled here). Its message is that exception's repr and what went wrong; the
    traceback it had there is its note, as for every exception that travelled."""


class RemoteFailure:
    """An exception raised in another process, on its way back: it pickles as the
    exception itself, which arrives with its ``__cause__``/``__context__`` chain rebuilt
    (each chained exception rebuilt the same way) and, on each, the traceback it had
    there as a note and as ``remote_traceback``.

    ``chain`` holds a ``ChainLink`` for the exception itself, first, then one for each
    exception chained to it, nearest first; links point at each other by position.
    """

    __slots__ = ("chain", "error")

    def __init__(self, error: BaseException, chain: tuple[ChainLink, ...]) -> None:
        self.error = error
        self.chain = chain

    @property
    def note(self) -> str:
        """The exception's traceback where it was raised ("" if none)."""
        return self.chain[0][2] if self.chain else ""

    def standing_in(self, error: BaseException) -> RemoteFailure:
        """``error`` travelling instead of this failure (which cannot), with its note."""
        return RemoteFailure(error, ((None, "", self.note, -1, -1, False),))

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_failure, (self.error, self.chain))


def _with_remote_traceback(error: BaseException) -> RemoteFailure:
    """``error`` ready to travel to another process (see ``RemoteFailure``): tracebacks
    cannot be pickled, so each becomes text here."""
    import traceback  # only failures in another process need it

    header = f"Traceback in worker process {os.getpid()} (most recent call last):\n"
    exceptions = _chained(error)
    positions = {id(exception): position for position, exception in enumerate(exceptions)}
    chain: list[ChainLink] = []
    for position, exception in enumerate(exceptions):
        frames = exception.__traceback__
        if position == 0 and frames is not None and frames.tb_frame.f_code is _run_items.__code__:
            frames = frames.tb_next or frames  # leave out the frame of ours that called fn
        note = "" if frames is None else header + "".join(traceback.format_tb(frames)).rstrip("\n")
        blob, description = (None, "") if position == 0 else _pickled(exception)
        cause = -1 if exception.__cause__ is None else positions.get(id(exception.__cause__), -1)
        context = -1 if exception.__context__ is None else positions.get(id(exception.__context__), -1)
        chain.append((blob, description, note, cause, context, exception.__suppress_context__))
    return RemoteFailure(error, tuple(chain))


def _chained(error: BaseException) -> list[BaseException]:
    """``error``, then the exceptions chained to it as causes or contexts, breadth first:
    each once (chains can loop), at most ``MAX_CHAINED`` of them."""
    exceptions, seen, position = [error], {id(error)}, 0
    while position < len(exceptions):
        for linked in (exceptions[position].__cause__, exceptions[position].__context__):
            if linked is not None and id(linked) not in seen and len(exceptions) <= MAX_CHAINED:
                seen.add(id(linked))
                exceptions.append(linked)
        position += 1
    return exceptions


def _pickled(exception: BaseException) -> tuple[bytes | None, str]:
    """A chained exception pickled on its own (None if it cannot be), and its description."""
    import cloudpickle

    try:
        description = repr(exception)
    except Exception:
        description = f"<{type(exception).__qualname__} whose repr failed>"
    try:
        return cloudpickle.dumps(exception), description
    except Exception as error:
        return None, f"{description} (it could not be pickled in worker process {os.getpid()}: {error!r})"


def _rebuild_failure(error: Any, chain: tuple[ChainLink, ...]) -> Any:
    """The receiving end of ``RemoteFailure``: ``error`` with its chain and notes back."""
    if not isinstance(error, BaseException) or not chain:
        return error
    exceptions = [error, *(_rebuild_link(link[0], link[1]) for link in chain[1:])]
    count = len(exceptions)
    for exception, (_, _, note, cause, context, suppress) in zip(exceptions, chain, strict=True):
        if note:
            _add_remote_traceback(exception, note)
        exception.__cause__ = exceptions[cause] if 0 <= cause < count else None
        exception.__context__ = exceptions[context] if 0 <= context < count else None
        exception.__suppress_context__ = suppress
    return error


def _rebuild_link(blob: bytes | None, description: str) -> BaseException:
    """A chained exception, unpickled, or a ``RemoteTraceback`` standing for it."""
    if blob is not None:
        import pickle  # what cloudpickle wrote, pickle reads

        try:
            linked = pickle.loads(blob)
        except Exception as error:
            description = f"{description} (it could not be unpickled here: {error!r})"
        else:
            if isinstance(linked, BaseException):
                return linked
            description = f"{description} (unpickled, it was no exception: {linked!r})"
    return RemoteTraceback(description)


def _add_remote_traceback(exception: BaseException, note: str) -> None:
    try:
        exception.add_note(note)
        exception.remote_traceback = note  # type: ignore[attr-defined]
    except Exception:  # a class that refuses notes or attributes: it still arrives
        return


def function_label(fn: object) -> str:
    """How messages name the user's function behind ``fn`` (a ``TaskFunction``, or the
    function itself): its qualified name, or its type for another callable object."""
    if isinstance(fn, TaskFunction):
        fn = fn.fn
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else f"(a {type(fn).__qualname__} object)"
