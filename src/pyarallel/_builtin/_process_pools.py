"""The worker process pools of the ``"process"`` executor, and the one place that owns
them: who uses which pool, which idle pools are kept warm, and when they are shut down.

A pool is used by one run at a time: a run takes it, and gives it back when it completes
(``keep``), or kills it when it ends early with work still running (``discard``). So a
crash or a timeout in one run never touches another run's items, and every item that
was running when a pool died belonged to the run that owns the pool.

Between runs, at most ``MAX_IDLE_POOLS`` pools are kept, with at most
``MAX_IDLE_WORKERS`` workers among them (the most recently kept pool always stays); the
oldest are shut down first, and a pool idle for ``IDLE_SECONDS`` is shut down. A forked
child forgets the parent's pools: their workers belong to the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from typing import Any

__all__ = [
    "IDLE_SECONDS",
    "MAX_IDLE_POOLS",
    "SlotFile",
    "WorkerPool",
    "pools",
    "process_alive",
    "shared_memory_dir",
]

IDLE_SECONDS = 300.0
MAX_IDLE_POOLS = 2
MAX_IDLE_WORKERS = 2 * (os.cpu_count() or 1)


def shared_memory_dir() -> str | None:
    """A directory in memory where there is one (Linux), else the default temp dir."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class SlotFile:
    """A small file in shared memory that a pool's workers write and the backend reads.

    It holds two 64-bit words per task slot (the pid of the worker running the task, or
    minus that pid once the task is done, and how many of its items have started)
    followed by ``extra`` words for rendezvous.
    """

    def __init__(self, slots: int, extra: int) -> None:
        self.slots = slots
        self.rendezvous_start = 2 * slots
        words = 2 * slots + extra
        fd, self.path = tempfile.mkstemp(
            prefix=f"pyarallel-{os.getpid()}-", suffix=".slots", dir=shared_memory_dir()
        )
        try:
            os.ftruncate(fd, 8 * words)
            self._map = mmap.mmap(fd, 8 * words)
        finally:
            os.close(fd)
        self._view: memoryview | None = memoryview(self._map).cast("q")
        self._free = list(range(slots - 1, -1, -1))

    def acquire(self) -> int | None:
        """A free slot, cleared, or None if all are taken."""
        if not self._free or self._view is None:
            return None
        slot = self._free.pop()
        self._view[2 * slot] = self._view[2 * slot + 1] = 0
        return slot

    def release(self, slot: int) -> None:
        if self._view is not None:
            self._free.append(slot)

    def first_word(self, slot: int) -> int:
        """The slot's first word, as the worker addresses it."""
        return 2 * slot

    def read(self, slot: int) -> tuple[int, int]:
        """``(pid, items started)`` as the worker last wrote them (a negative pid: the
        task is done)."""
        if self._view is None:
            return 0, 0
        return self._view[2 * slot], self._view[2 * slot + 1]

    def clear_rendezvous(self, count: int) -> None:
        if self._view is not None:
            start = self.rendezvous_start
            self._view[start : start + count] = memoryview(bytes(8 * count)).cast("q")

    def close(self) -> None:
        if self._view is None:
            return
        self._view.release()
        self._view = None
        self._map.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class WorkerPool:
    """A loky executor of ``workers`` processes and the slot file its workers write.

    ``warm`` once a rendezvous has shown every worker up; ``broken`` once it has lost a
    worker (loky then fails every task in flight and the pool is never used again).
    ``items_given`` counts the items of every task submitted to it, for
    ``max_tasks_per_worker``: no worker of the pool has run more than that.
    """

    def __init__(self, workers: int) -> None:
        from loky import ProcessPoolExecutor

        self.workers = workers
        # Tasks in flight never exceed twice the workers (the scheduler's queue-ahead).
        self.slots = SlotFile(2 * workers + 2, workers)
        self.executor = ProcessPoolExecutor(max_workers=workers)
        self.warm = False
        self.warming: Future[None] | None = None
        self.broken = False
        self.items_given = 0

    def warm_up(self) -> Future[None]:
        """Run one rendezvous task per worker; the future is done when they have all
        returned (every worker is up) or failed (the pool broke)."""
        from pyarallel._worker import rendezvous

        if self.warming is not None:
            return self.warming
        count, start = self.workers, self.slots.rendezvous_start
        self.slots.clear_rendezvous(count)
        futures: list[Future[Any]] = []
        try:
            for position in range(count):
                futures.append(self.executor.submit(rendezvous, self.slots.path, start, count, position, 5.0))
        except Exception:  # the pool is broken already
            self.broken = True
        self.warming = _when_all_done(futures)
        self.warming.add_done_callback(self._warmed)
        return self.warming

    def _warmed(self, warming: Future[None]) -> None:
        if warming.exception() is not None:
            self.broken = True
        self.warm = not self.broken

    def shutdown(self, *, kill: bool, wait: bool = False) -> None:
        """Stop the workers (``kill``: at once, and wait until they are gone; ``wait``:
        let them finish, and wait until they are gone) and remove the slot file."""
        if kill:
            self.executor.shutdown(wait=True, kill_workers=True)
        else:
            self.executor.shutdown(wait=wait)
        self.slots.close()


def _when_all_done(futures: list[Future[Any]]) -> Future[None]:
    """A future done once every one of ``futures`` is; its result is None, or the first
    exception among them."""
    done: Future[None] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def arrived(future: Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            errors = [error for error in (f.exception() for f in futures) if error is not None]
            if errors:
                done.set_exception(errors[0])
            else:
                done.set_result(None)

    if not futures:
        done.set_exception(RuntimeError("no rendezvous task could be submitted: the pool is broken"))
    for future in futures:
        future.add_done_callback(arrived)
    return done


class _Pools:
    """Every idle pool of this process, and the rules for keeping them. One daemon
    thread, started with the first idle pool, shuts down those idle too long."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._idle: list[tuple[WorkerPool, float]] = []  # (pool, kept at), oldest first
        self._reaper: threading.Thread | None = None
        self._at_exit_registered = False

    def take(self, workers: int) -> WorkerPool:
        """A pool of ``workers`` processes for one run: the most recently kept idle one of
        that size, or a new one. The caller owns it until it keeps or discards it."""
        with self._changed:
            if not self._at_exit_registered:
                atexit.register(self.shutdown_all)
                self._at_exit_registered = True
                remove_stale_files()
            for position in range(len(self._idle) - 1, -1, -1):
                pool = self._idle[position][0]
                if pool.workers == workers:
                    del self._idle[position]
                    return pool
        return WorkerPool(workers)

    def keep(self, pool: WorkerPool) -> None:
        """``pool``'s run completed (no task is running): keep it warm for a later run."""
        if pool.broken:
            self.discard(pool)
            return
        with self._changed:
            self._idle.append((pool, time.monotonic()))
            evicted = self._over_limits()
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="pyarallel-pool-reaper", daemon=True)
                self._reaper.start()
            self._changed.notify()
        for old in evicted:
            old.shutdown(kill=False)

    def discard(self, pool: WorkerPool, *, kill: bool = True) -> None:
        """``pool`` is done with: shut it down (``kill``: stop what is running, at once)."""
        pool.shutdown(kill=kill)

    def shutdown_all(self, *, wait: bool = False) -> None:
        """Shut every idle pool down (at exit; ``wait``: until their workers are gone, for
        ``pyarallel.shutdown()``)."""
        with self._changed:
            idle, self._idle = self._idle, []
        for pool, _ in idle:
            pool.shutdown(kill=False, wait=wait)

    def forget(self) -> None:
        """In a forked child: the idle pools are the parent's. Drop them without touching
        their workers, pipes or files (kept referenced, so nothing runs at collection)."""
        _forgotten.append(self._idle)
        self._idle = []
        self._changed = threading.Condition()
        self._reaper = None

    def _over_limits(self) -> list[WorkerPool]:
        evicted = []
        while len(self._idle) > 1 and (
            len(self._idle) > MAX_IDLE_POOLS or sum(pool.workers for pool, _ in self._idle) > MAX_IDLE_WORKERS
        ):
            evicted.append(self._idle.pop(0)[0])
        return evicted

    def _reap(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                expired = [pool for pool, kept in self._idle if now - kept >= IDLE_SECONDS]
                self._idle = [entry for entry in self._idle if entry[0] not in expired]
                if not expired:
                    oldest = min((kept for _, kept in self._idle), default=None)
                    self._changed.wait(None if oldest is None else oldest + IDLE_SECONDS - now)
                    continue
            for pool in expired:
                pool.shutdown(kill=False)


_forgotten: list[object] = []
pools = _Pools()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=pools.forget)


def remove_stale_files() -> None:
    """Remove the slot and function files left by pyarallel processes that are gone (a
    process killed outright cannot remove its own)."""
    directory = shared_memory_dir() or tempfile.gettempdir()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if parts[0] != "pyarallel" or len(parts) < 3 or not name.endswith((".slots", ".function")):
            continue
        if parts[1].isdigit() and process_alive(int(parts[1])) is False:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def process_alive(pid: int) -> bool | None:
    """Whether process ``pid`` is still running (a zombie counts as dead), or None where
    that cannot be told cheaply (outside Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            line = stat.read()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    state = line[line.rindex(b")") + 2 : line.rindex(b")") + 3]
    return state not in (b"Z", b"X", b"x")
