"""How each library maps a function over a list with a pool of N workers, under one timing
rule shared by W1-W4.

The clock starts before the pool is created ("cold"), or, when the job asks for a warm
pool, after the pool has been created and has run one warm-up map (one ``nap`` item per
worker and as many again). It stops when the results are in hand, so shutting the pool
down is not timed (mpire, without ``keep_alive``, stops its workers inside ``map``).
Libraries are imported when a pool is opened, never at module import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from measure import user_imports

from workloads.tasks import nap

__all__ = [
    "JOBLIB_LOKY",
    "JOBLIB_THREADS",
    "MPIRE_PROCESSES",
    "MPIRE_THREADS",
    "PEBBLE_PROCESSES",
    "PEBBLE_THREADS",
    "PPE",
    "TPE",
    "MapJob",
    "MapRun",
    "PoolAdapter",
    "pyarallel_pool",
]

ItemFn = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class MapJob:
    """Map ``fn`` over ``items`` with ``workers`` workers; ``warm``: start the pool first."""

    fn: ItemFn
    items: Sequence[Any]
    workers: int
    warm: bool = False


@dataclass(frozen=True, slots=True)
class MapRun:
    results: list[Any]
    seconds: float


def _no_close(pool: Any) -> None:
    pass


@dataclass(frozen=True, slots=True)
class PoolAdapter:
    """One library's pool: ``open(workers, warm)`` returns a handle, ``map(handle, fn,
    items)`` the results as a list, ``close(handle)`` releases it. ``imports`` are what a
    user's script imports at its top (see ``measure.user_imports``): done before the clock."""

    imports: tuple[str, ...]
    open: Callable[[int, bool], Any]
    map: Callable[[Any, ItemFn, Sequence[Any]], list[Any]]
    close: Callable[[Any], None] = _no_close

    def run(self, job: MapJob) -> MapRun:
        user_imports(*self.imports)
        start = time.perf_counter()
        pool = self.open(job.workers, job.warm)
        try:
            if job.warm:
                self.map(pool, nap, range(2 * job.workers))
                start = time.perf_counter()
            results = self.map(pool, job.fn, job.items)
            seconds = time.perf_counter() - start
        finally:
            self.close(pool)
        return MapRun(results, seconds)


# -- concurrent.futures ------------------------------------------------------------------


def _open_tpe(workers: int, warm: bool) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers)


def _open_ppe(workers: int, warm: bool) -> Any:
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)


def _executor_map(executor: Any, fn: ItemFn, items: Sequence[Any]) -> list[Any]:
    return list(executor.map(fn, items))


def _ppe_map(executor: Any, fn: ItemFn, items: Sequence[Any]) -> list[Any]:
    # Hand-picked chunking: about four chunks per worker (20,000 items, 2 workers: 2,500).
    chunksize = max(1, len(items) // (executor._max_workers * 4))
    return list(executor.map(fn, items, chunksize=chunksize))


def _shutdown(executor: Any) -> None:
    executor.shutdown(wait=True)


TPE = PoolAdapter(("concurrent.futures:ThreadPoolExecutor",), _open_tpe, _executor_map, _shutdown)
PPE = PoolAdapter(("concurrent.futures:ProcessPoolExecutor",), _open_ppe, _ppe_map, _shutdown)


# -- joblib --------------------------------------------------------------------------------


def _joblib_opener(backend: str) -> Callable[[int, bool], Any]:
    def open_joblib(workers: int, warm: bool) -> Any:
        from joblib import Parallel

        return Parallel(n_jobs=workers, backend=backend)

    return open_joblib


def _joblib_map(parallel: Any, fn: ItemFn, items: Sequence[Any]) -> list[Any]:
    from joblib import delayed

    return list(parallel(delayed(fn)(x) for x in items))


JOBLIB_THREADS = PoolAdapter(("joblib:Parallel",), _joblib_opener("threading"), _joblib_map)
# loky is joblib's default process backend; batching is joblib's automatic one.
JOBLIB_LOKY = PoolAdapter(("joblib:Parallel",), _joblib_opener("loky"), _joblib_map)


# -- mpire ---------------------------------------------------------------------------------


def _mpire_opener(start_method: str | None) -> Callable[[int, bool], Any]:
    def open_mpire(workers: int, warm: bool) -> Any:
        from mpire.pool import WorkerPool

        if start_method is None:
            return WorkerPool(n_jobs=workers, keep_alive=warm)
        return WorkerPool(n_jobs=workers, start_method=start_method, keep_alive=warm)

    return open_mpire


def _mpire_map(pool: Any, fn: ItemFn, items: Sequence[Any]) -> list[Any]:
    return list(pool.map(fn, items))


def _mpire_close(pool: Any) -> None:
    pool.stop_and_join()


MPIRE_THREADS = PoolAdapter(("mpire.pool:WorkerPool",), _mpire_opener("threading"), _mpire_map, _mpire_close)
# mpire's default start method (fork on Linux); chunking is mpire's automatic one.
MPIRE_PROCESSES = PoolAdapter(("mpire.pool:WorkerPool",), _mpire_opener(None), _mpire_map, _mpire_close)


# -- pebble --------------------------------------------------------------------------------


def _open_pebble_threads(workers: int, warm: bool) -> Any:
    from pebble import ThreadPool

    return ThreadPool(max_workers=workers)


def _open_pebble_processes(workers: int, warm: bool) -> Any:
    from pebble import ProcessPool

    return ProcessPool(max_workers=workers)


def _pebble_map(pool: Any, fn: ItemFn, items: Sequence[Any]) -> list[Any]:
    return list(pool.map(fn, items).result())  # pebble's default chunksize (1)


def _pebble_close(pool: Any) -> None:
    pool.close()
    pool.join()


PEBBLE_THREADS = PoolAdapter(("pebble:ThreadPool",), _open_pebble_threads, _pebble_map, _pebble_close)
PEBBLE_PROCESSES = PoolAdapter(("pebble:ProcessPool",), _open_pebble_processes, _pebble_map, _pebble_close)


# -- pyarallel -----------------------------------------------------------------------------


def pyarallel_pool(executor: str) -> PoolAdapter:
    """pyarallel's ``parallel_map`` with ``executor`` ("thread", "process", or any executor
    plugin's name). pyarallel keeps no pool between calls except what the executor keeps
    (the "process" executor's loky pool stays warm), so the handle is just the worker count."""

    def open_pyarallel(workers: int, warm: bool) -> Any:
        return workers

    def map_pyarallel(workers: Any, fn: ItemFn, items: Sequence[Any]) -> list[Any]:
        from pyarallel import parallel_map

        result = parallel_map(fn, items, workers=workers, executor=executor)
        failures = result.failures()
        if failures:
            index, error = failures[0]
            raise RuntimeError(f"{len(failures)} item(s) failed; item {index}: {error!r}") from error
        return list(result)

    return PoolAdapter(("pyarallel:parallel_map", *PYARALLEL_DEFERRED), open_pyarallel, map_pyarallel)


# The modules ``from pyarallel import parallel_map`` leaves to the first call (since issue 9
# made the statement cheap). The call workloads import them before the clock, where the
# statement used to: they time calls, not start-up, which W7's first-call case measures.
PYARALLEL_DEFERRED = ("pyarallel._plan", "pyarallel._sync_driver")
