"""Plugin objects several test modules use: real backends, limiters and observers that
record what pyarallel asks of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pyarallel import ItemResult, hookimpl
from pyarallel.contracts import Capabilities, RunInfo, RunSummary


class PoolBackend:
    """A backend on a real ``ThreadPoolExecutor`` whose threads carry ``prefix`` in their name."""

    def __init__(self, name: str, workers: int, prefix: str) -> None:
        self.name = name
        self.capacity = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=prefix)

    capabilities = Capabilities(in_caller_process=True)

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def until_ready(self) -> None:
        return None

    def close(self, *, abort: bool) -> None:
        self._pool.shutdown(wait=False, cancel_futures=abort)


@dataclass(frozen=True)
class FixedInterval:
    """A custom rate-limit spec no built-in plugin understands."""

    seconds: float


class SimpleReservation:
    """A reservation of a :class:`SimpleLimiter`: ``try_acquire`` asks the limiter's own
    ``try_acquire``; the rest of its life (cancelled, finished, throttled) is recorded on
    the limiter."""

    def __init__(self, limiter: SimpleLimiter, item: object, lane: Hashable = None) -> None:
        self.limiter = limiter
        self.item = item
        self.lane = lane

    def try_acquire(self) -> float:
        return self.limiter.try_acquire()

    def cancel(self) -> None:
        self.limiter.cancelled.append(self.item)

    def finished(self, result: ItemResult[Any]) -> None:
        self.limiter.finished.append(result)

    def throttled(self, pause: float | None) -> None:
        self.limiter.throttles.append(pause)


class SimpleLimiter:
    """A base for a test's own rate limiter of one budget and no keys, written as the old
    contract's ``try_acquire()``: ``request(item)`` gives a :class:`SimpleReservation` that
    asks it. Records the items requested and what the scheduler told their reservations."""

    def __init__(self) -> None:
        self.requested: list[object] = []
        self.cancelled: list[object] = []
        self.finished: list[ItemResult[Any]] = []
        self.throttles: list[float | None] = []

    def request(self, item: object) -> SimpleReservation:
        self.requested.append(item)
        return SimpleReservation(self, item)

    def try_acquire(self) -> float:
        """``0.0`` to grant one call now, else the seconds to wait (taking nothing)."""
        raise NotImplementedError


class CountingLimiter(SimpleLimiter):
    def __init__(self, spec: FixedInterval) -> None:
        super().__init__()
        self.spec = spec
        self.grants: list[float] = []
        self.denials = 0
        self._next = float("-inf")
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self.denials += 1
                return self._next - now
            self._next = now + self.spec.seconds
            self.grants.append(now)
            return 0.0


class LimiterPlugin:
    def __init__(self) -> None:
        self.limiters: list[CountingLimiter] = []

    @hookimpl
    def pyarallel_rate_limiter(self, rate_limit: object) -> CountingLimiter | None:
        if not isinstance(rate_limit, FixedInterval):
            return None
        limiter = CountingLimiter(rate_limit)
        self.limiters.append(limiter)
        return limiter


class Observer:
    def __init__(self) -> None:
        self.starts: list[RunInfo] = []
        self.results: list[tuple[RunInfo, ItemResult[object], int, int]] = []
        self.retries: list[tuple[RunInfo, int, int, BaseException, float]] = []
        self.ends: list[tuple[RunInfo, RunSummary]] = []
        self.threads: set[int] = set()

    @hookimpl
    def pyarallel_run_start(self, run: RunInfo) -> None:
        self.threads.add(threading.get_ident())
        self.starts.append(run)

    @hookimpl
    def pyarallel_item_result(self, run: RunInfo, result: ItemResult[object], done: int, seen: int) -> None:
        self.threads.add(threading.get_ident())
        self.results.append((run, result, done, seen))

    @hookimpl
    def pyarallel_item_retry(
        self, run: RunInfo, index: int, attempt: int, error: BaseException, delay: float
    ) -> None:
        self.threads.add(threading.get_ident())
        self.retries.append((run, index, attempt, error, delay))

    @hookimpl
    def pyarallel_run_end(self, run: RunInfo, summary: RunSummary) -> None:
        self.threads.add(threading.get_ident())
        self.ends.append((run, summary))
