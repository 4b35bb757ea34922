"""What recording into the SQLite checkpoint store costs (not part of the suite).

    .venv/bin/python benchmarks/checkpoint_store_bench.py [--items 100000] [--batch 1000]
        [--singles 1000] [--repeat 5] [--dir DIR]

Measures, on a real file in a temporary directory (or ``--dir``, to measure another file
system), the best of ``--repeat`` runs of:

- recording ``--items`` ints in batches of ``--batch`` (keys as a ``range``, as an
  index-keyed run gives them): the cost per item;
- ``--singles`` calls recording one item each (a list key, as a keyed run gives them):
  the cost per call;
- ``--singles`` failures: the cost per call;
- ``open()`` reading all of the above back: the cost per item.

A secret is passed, so no key file is read or created.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

from pyarallel._checkpoint import SQLiteCheckpointStore
from pyarallel.contracts import CheckpointJob

JOB = CheckpointJob("bench:record", "map", False)


def best_of(repeat: int, run: Callable[[str], float], directory: str) -> float:
    """The lowest of ``repeat`` timings of ``run`` on a fresh file each time."""
    timings = []
    for attempt in range(repeat):
        path = os.path.join(directory, f"bench-{os.getpid()}-{attempt}.db")
        timings.append(run(path))
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
    return min(timings)


def batches(items: int, batch: int) -> Callable[[str], float]:
    def run(path: str) -> float:
        store = SQLiteCheckpointStore(path, secret=b"bench")
        store.open(JOB)
        values = list(range(batch))
        started = time.perf_counter()
        for start in range(0, items, batch):
            store.record_successes(range(start, start + batch), values)
        elapsed = time.perf_counter() - started
        store.close()
        return elapsed / items

    return run


def singles(calls: int) -> Callable[[str], float]:
    def run(path: str) -> float:
        store = SQLiteCheckpointStore(path, secret=b"bench")
        store.open(JOB)
        started = time.perf_counter()
        for index in range(calls):
            store.record_successes([index], [index])
        elapsed = time.perf_counter() - started
        store.close()
        return elapsed / calls

    return run


def failures(calls: int) -> Callable[[str], float]:
    def run(path: str) -> float:
        store = SQLiteCheckpointStore(path, secret=b"bench")
        store.open(JOB)
        error = ValueError("bench")
        started = time.perf_counter()
        for index in range(calls):
            store.record_failure(index, error)
        elapsed = time.perf_counter() - started
        store.close()
        return elapsed / calls

    return run


def resume(items: int, batch: int, calls: int) -> Callable[[str], float]:
    def run(path: str) -> float:
        store = SQLiteCheckpointStore(path, secret=b"bench")
        store.open(JOB)
        values = list(range(batch))
        for start in range(0, items, batch):
            store.record_successes(range(start, start + batch), values)
        for index in range(calls):
            store.record_successes([items + index], [index])
        store.close()
        started = time.perf_counter()
        state = store.open(JOB)
        elapsed = time.perf_counter() - started
        store.close()
        assert len(state.values) == items + calls
        return elapsed / (items + calls)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temporary directory)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.dir) as directory:
        per_item = best_of(arguments.repeat, batches(arguments.items, arguments.batch), directory)
        per_call = best_of(arguments.repeat, singles(arguments.singles), directory)
        per_failure = best_of(arguments.repeat, failures(arguments.singles), directory)
        per_read = best_of(
            arguments.repeat, resume(arguments.items, arguments.batch, arguments.singles), directory
        )
    print(f"{arguments.items} ints in batches of {arguments.batch}: {per_item * 1e6:.3f} us per item")
    print(f"{arguments.singles} single-item record_successes calls: {per_call * 1e6:.1f} us per call")
    print(f"{arguments.singles} record_failure calls: {per_failure * 1e6:.1f} us per call")
    print(f"open() reading them back: {per_read * 1e6:.3f} us per item")


if __name__ == "__main__":
    main()
