"""The functions the tests map over the Dask workers.

``conftest`` registers this module with cloudpickle to be pickled by value, so that
workers that cannot import it (the ``dask worker`` processes started by a test) still
run these functions. Items record what happened to them in files under a directory the
test gives them: one file per worker process, one line per event,
``<event> <item> <pid> <time.time()>``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def log(directory: str, event: str, x: object) -> None:
    with open(Path(directory) / f"{os.getpid()}.log", "a") as file:
        file.write(f"{event} {x} {os.getpid()} {time.time()!r}\n")


def events(directory: str | Path, event: str | None = None) -> list[tuple[str, int, int, float]]:
    """Every recorded ``(event, item, pid, time)`` (of one kind of event, if given), in
    the order they happened."""
    found = []
    for path in Path(directory).glob("*.log"):
        for line in path.read_text().splitlines():
            kind, item, pid, at = line.split()
            if event is None or kind == event:
                found.append((kind, int(item), int(pid), float(at)))
    return sorted(found, key=lambda event: event[3])


def square(x: int) -> int:
    return x * x


def recorded_square(directory: str, x: int) -> int:
    log(directory, "start", x)
    return x * x


def nap_pid(seconds: float, directory: str, x: int) -> int:
    """Record the start, sleep ``seconds``, record the end; return the worker's pid."""
    log(directory, "start", x)
    time.sleep(seconds)
    log(directory, "done", x)
    return os.getpid()


def started_at(x: int) -> float:
    return time.time()


def odd_fails(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd item {x}")
    return x


def fails_first(directory: str, x: int) -> int:
    """Fails the first attempt of each item (a marker file remembers it), then succeeds."""
    marker = Path(directory) / f"tried-{x}"
    log(directory, "attempt", x)
    if not marker.exists():
        marker.touch()
        raise ConnectionError(f"flaky service for item {x}")
    return x


def exits_on(culprit: int, seconds: float, x: int) -> int:
    """Kill the worker process (as a segfault or the OOM killer would) on ``culprit``."""
    if x == culprit:
        os._exit(1)
    time.sleep(seconds)
    return x


def unpicklable_result(x: int) -> object:
    return threading.Lock() if x == 3 else x


def identity(x: object) -> object:
    return x


def pid(x: object = None) -> int:
    return os.getpid()


def fan_out(x: int) -> int:
    """A task that itself fans out over the cluster it runs on."""
    from pyarallel import parallel_map

    return sum(parallel_map(square, range(x), executor="dask"))
