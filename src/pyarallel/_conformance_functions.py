"""The work items of the backend conformance kit (:mod:`pyarallel.testing`).

They live at module level in an importable module so that every kind of worker (a
thread, a loky or ``multiprocessing`` process started by fork or spawn, a cluster worker
on this host) receives them by reference. Whatever a test needs to observe across
processes goes through files under a directory the test owns: an item appends its index
to a log (one file per worker thread, so that no two writers share a file), touches a
marker, or polls for a flag file with a deadline. Nothing here sleeps to synchronise;
sleeps only make an item last.

Private: the kit's tests are the only callers, and may change these at will.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

from pyarallel._decorator import parallel

POLL_SECONDS = 0.005  # how often an item looks for a flag file


class ConformanceError(Exception):
    """What the kit's items raise on purpose (pickles by reference to this module)."""


class Unpicklable:
    """An object that refuses to be pickled, whatever the pickler."""

    def __reduce__(self) -> str:
        raise TypeError("a conformance Unpicklable refuses to be pickled")


def expected(index: int) -> int:
    """The value a successful item returns for ``index``."""
    return index * 7 + 3


# -- the files items leave behind --------------------------------------------------------------


def log_attempt(directory: str, index: int) -> None:
    """Record that an attempt of item ``index`` started: append its index to this worker
    thread's log in ``directory`` (one ``write``, so a log is never torn)."""
    name = f"log-{os.getpid()}-{threading.get_ident()}.txt"
    descriptor = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, f"{index}\n".encode())
    finally:
        os.close(descriptor)


def attempts(directory: str) -> Counter[int]:
    """How many attempts of each item :func:`log_attempt` recorded in ``directory``."""
    counts: Counter[int] = Counter()
    for path in Path(directory).glob("log-*.txt"):
        counts.update(int(word) for word in path.read_text().split())
    return counts


def touch(directory: str, name: str) -> None:
    """Create the empty file ``name`` in ``directory`` (a marker or a flag)."""
    Path(directory, name).touch()


def markers(directory: str, prefix: str) -> set[int]:
    """The indices of the markers ``<prefix><index>`` present in ``directory``."""
    return {int(path.name[len(prefix) :]) for path in Path(directory).glob(f"{prefix}*")}


def wait_for_file(path: str, limit: float) -> bool:
    """Poll until ``path`` exists (``True``) or ``limit`` seconds passed (``False``)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


# -- work items --------------------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


@parallel
def decorated_square(x: int) -> int:
    """``square`` under ``@parallel``, for the decorator's ``.map``."""
    return x * x


def late_square(x: int, total: int) -> int:
    """``x * x`` after a pause that shrinks with ``x``: later items finish first."""
    time.sleep(0.01 * (total - x))
    return x * x


def work(directory: str, index: int, seconds: float = 0.0, fail: bool = False) -> int:
    """Log the attempt, last ``seconds``, then raise ``ConformanceError`` (``fail``) or
    return ``expected(index)``."""
    log_attempt(directory, index)
    if seconds:
        time.sleep(seconds)
    if fail:
        raise ConformanceError(f"item {index} failed on purpose")
    return expected(index)


def work_unpacked(args: tuple[str, int, float, bool]) -> int:
    """``work(*args)``, for ``parallel_iter``."""
    return work(*args)


def refuse_some(index: int) -> int:
    """Item 4 raises ``ConformanceError``, item 9 ``LookupError``; others succeed."""
    if index == 4:
        raise ConformanceError("item 4 is refused")
    if index == 9:
        raise LookupError("no entry for item 9")
    return expected(index)


def flaky(directory: str, index: int, failures: int) -> tuple[int, int]:
    """Fail the first ``failures`` attempts of item ``index`` (counted in a file of its
    own, so that attempts in different processes add up); then return ``(index, attempt)``."""
    path = os.path.join(directory, f"attempts-{index}.txt")
    with open(path, "a") as counter:
        counter.write("x")
    attempt = os.path.getsize(path)
    if attempt <= failures:
        raise ConformanceError(f"item {index} attempt {attempt} failed")
    return index, attempt


def first_waits(directory: str, index: int) -> tuple[int, bool]:
    """Item 0 waits (up to 20 s) for the flag ``go`` that the consumer raises once it got
    some other item's result; returns ``(index, whether the flag was seen)``."""
    if index == 0:
        return 0, wait_for_file(os.path.join(directory, "go"), 20.0)
    return index, True


def block(directory: str, index: int, blocked: bool) -> int:
    """A blocked item marks ``blocked-<index>`` and waits (up to 30 s) for the flag
    ``release``; others return at once."""
    if blocked:
        touch(directory, f"blocked-{index}")
        wait_for_file(os.path.join(directory, "release"), 30.0)
    return expected(index)


def start_then_sleep(directory: str, index: int, seconds: float) -> int:
    """Mark ``start-<index>``, then last ``seconds``."""
    touch(directory, f"start-{index}")
    time.sleep(seconds)
    return expected(index)


def start_then_block(directory: str, index: int, quick: int, seconds: float) -> int:
    """Mark ``start-<index>``; the first ``quick`` items then last ``seconds``, the
    others wait (up to 30 s) for the flag ``release``."""
    touch(directory, f"start-{index}")
    if index < quick:
        time.sleep(seconds)
    else:
        wait_for_file(os.path.join(directory, "release"), 30.0)
    return expected(index)


def crash_or_work(directory: str, index: int, crasher: int) -> int:
    """Log the attempt; item ``crasher`` then kills its worker process with
    ``os._exit(1)``, the others last 50 ms and succeed."""
    log_attempt(directory, index)
    if index == crasher:
        os._exit(1)
    time.sleep(0.05)
    return expected(index)


def describe(value: object) -> str:
    """The name of ``value``'s type (takes any argument, picklable or not)."""
    return type(value).__name__


def result_for(index: int, unpicklable: int) -> object:
    """An ``Unpicklable`` for item ``unpicklable``, else ``expected(index)``."""
    return Unpicklable() if index == unpicklable else expected(index)


def start_time(index: int) -> tuple[int, float]:
    """``(index, the wall-clock time the call started)``: comparable across processes."""
    return index, time.time()


def running_interval(index: int, seconds: float) -> tuple[float, float]:
    """Last ``seconds``; return when the call started and ended (wall clock)."""
    started = time.time()
    if seconds:
        time.sleep(seconds)
    return started, time.time()
