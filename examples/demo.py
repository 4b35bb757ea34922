"""pyarallel demo: fan calls out over threads and processes.

Part 1 fetches 400 users from a local, rate-limited, flaky JSON API (see
``_demo_server.py``) on 16 threads, paced just under the server's quota, retrying the
transient errors (429, 503) and reporting the permanent ones (404) by type.

Part 2 runs pure-Python CPU work on worker processes and compares it with a serial run.

Run it with ``make demo`` or ``python examples/demo.py``; it needs nothing beyond
pyarallel and the standard library. ``--quick`` (for the test suite) makes part 2
smaller: items sized for ~0.04 s instead of ~0.06 s (still long enough for each to travel
to a worker alone) and one timed round instead of three; the same runs, the same report.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from _demo_server import BROKEN_USERS, DELETED_USERS, UserAPIServer, running_server

from pyarallel import ParallelResult, RateLimit, Retry, parallel_map

USER_IDS = range(1, 401)
SERVER_QUOTA = 40  # accepted requests per sliding window...
SERVER_WINDOW = 0.25  # ...of this many seconds: 160 requests/s
CLIENT_RATE = RateLimit(150)  # per second, just under the quota; every attempt counts
WORKERS = 16

CPU_ITEMS = 16
CPU_SECONDS_PER_ITEM = 0.06
CPU_ROUNDS = 3  # timings on a shared machine are noisy: report the best of a few runs
# With --quick: items still twice as long as a task of grouped items (~0.02 s), one round.
QUICK_CPU_SECONDS_PER_ITEM = 0.04
QUICK_CPU_ROUNDS = 1

T = TypeVar("T")


# -- part 1: an HTTP client --------------------------------------------------------------


class TransientHTTPError(Exception):
    """The server answered 429 or 503: the same request may well succeed later."""

    def __init__(self, user_id: int, status: int, retry_after: str | None) -> None:
        # Retry waits out its own backoff (there is no way to hand it Retry-After), so the
        # header only goes into the message.
        suffix = f" (Retry-After: {retry_after} s)" if retry_after else ""
        super().__init__(f"user {user_id}: HTTP {status}{suffix}")
        self.status = status


class UserNotFoundError(LookupError):
    """The server answered 404: retrying cannot help."""


# Only transient errors are retried; a 404 fails its item at the first attempt.
RETRY = Retry(attempts=4, backoff=0.05, on=(TransientHTTPError, ConnectionError, TimeoutError))


class UserAPIClient:
    """Fetches users with ``urllib`` and turns HTTP errors into exceptions ``Retry`` can sort."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # No proxies: an http_proxy variable in the environment must not capture 127.0.0.1.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._lock = threading.Lock()
        self.calls = 0

    def fetch_user(self, user_id: int) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        try:
            with self._opener.open(f"{self.base_url}/users/{user_id}", timeout=5) as response:
                user: dict[str, Any] = json.load(response)
                return user
        except urllib.error.HTTPError as error:
            error.close()
            if error.code in (429, 503):
                raise TransientHTTPError(user_id, error.code, error.headers.get("Retry-After")) from None
            if error.code == 404:
                raise UserNotFoundError(f"user {user_id}: HTTP 404") from None
            raise


class Progress:
    """An ``on_progress`` callback: one line redrawn in place on a terminal, or a line
    every 10% when the output is a file or a pipe."""

    def __init__(self, label: str, stream: TextIO = sys.stdout) -> None:
        self.label = label
        self.stream = stream
        self.redraw = stream.isatty()
        self.tenths_shown = 0
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        tenths = done * 10 // total if total else 10
        if not self.redraw and tenths <= self.tenths_shown:
            return
        self.tenths_shown = tenths
        elapsed = time.perf_counter() - self.started
        bar = "#" * tenths + "." * (10 - tenths)
        line = f"  {self.label} [{bar}] {done:>4}/{total} {elapsed:5.2f} s"
        if self.redraw:
            self.stream.write("\r" + line + ("\n" if done == total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def fetch_users(server: UserAPIServer) -> None:
    client = UserAPIClient(server.url)
    print(f"API at {server.url}, quota {SERVER_QUOTA} requests per {SERVER_WINDOW:g} s (sliding window)")
    print(
        f"fetching {len(USER_IDS)} users on {WORKERS} threads at {CLIENT_RATE.per_second:g} requests/s, "
        f"up to {RETRY.attempts} attempts each"
    )
    started = time.perf_counter()
    result: ParallelResult[dict[str, Any]] = parallel_map(
        client.fetch_user,
        USER_IDS,
        workers=WORKERS,
        rate_limit=CLIENT_RATE,
        retry=RETRY,
        on_progress=Progress("users"),
    )
    wall = time.perf_counter() - started

    successes, failures = result.successes(), result.failures()
    example = f", e.g. {successes[0][1]}" if successes else ""
    print(f"  succeeded: {len(successes)} of {len(result)}{example}")
    print(f"  failed:    {len(failures)}")
    by_type: dict[str, list[int]] = {}
    for index, error in failures:
        by_type.setdefault(type(error).__name__, []).append(USER_IDS[index])
    for name, ids in sorted(by_type.items()):
        print(f"    {name:<19} x{len(ids)}  user ids {ids}")
    print(f"    (by design: 404 for users {sorted(DELETED_USERS)}, always 503 for {sorted(BROKEN_USERS)})")

    statuses = ", ".join(f"{int(code)}: {count}" for code, count in sorted(server.statuses.items()))
    print(f"  server saw {server.requests} requests ({statuses}), {server.retries} of them retries")
    print(
        f"  client made {client.calls} calls in {wall:.2f} s = {client.calls / wall:.1f} requests/s "
        f"(limit {CLIENT_RATE.per_second:g}/s, server quota {SERVER_QUOTA / SERVER_WINDOW:g}/s)"
    )
    print("  pyarallel's own account of the run (result.stats):")
    print(textwrap.indent(str(result.stats), "    "))


# -- part 2: CPU-bound work on processes --------------------------------------------------


def spin(seed: int, loops: int) -> int:
    """Pure-Python busy work: it holds the GIL throughout, so threads could not speed it up."""
    total = seed
    for i in range(loops):
        total = (total * 31 + i) % 1_000_003
    return total


def calibrate(seconds: float) -> int:
    """The number of ``spin`` loops that takes about ``seconds`` on this machine."""
    loops = 100_000
    fastest = min(timed(lambda: spin(0, loops))[1] for _ in range(3))
    return max(1, round(loops * seconds / fastest))


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """``run()``'s result and how many seconds it took."""
    started = time.perf_counter()
    value = run()
    return value, time.perf_counter() - started


def crunch_numbers(seconds_per_item: float = CPU_SECONDS_PER_ITEM, rounds: int = CPU_ROUNDS) -> None:
    cpus = os.cpu_count() or 1
    # A container or taskset may let this process use fewer CPUs than the machine has.
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    loops = calibrate(seconds_per_item)
    seeds = range(CPU_ITEMS)
    print(
        f"\nCPU-bound: {CPU_ITEMS} items of pure-Python work, sized for ~{seconds_per_item:.2f} s each; "
        f"os.cpu_count() = {cpus}" + (f", {usable} usable by this process" if usable != cpus else "")
    )
    if hasattr(os, "getloadavg"):
        # Other busy processes share the cores and shrink the speed-up: say so up front.
        print(f"  load average before the runs: {os.getloadavg()[0]:.2f} (1 min)")

    def serially() -> list[int]:
        return [spin(seed, loops) for seed in seeds]

    def on_processes() -> list[int]:
        # A lambda closing over ``loops``: cloudpickle ships it to the worker processes.
        work = parallel_map(lambda seed: spin(seed, loops), seeds, executor="process", workers=usable)
        return work.values()

    expected = serially()
    # The first call starts the worker processes; later calls reuse them (loky keeps the pool warm).
    # Serial and warm runs alternate so that both see the same background noise.
    outputs = []
    output, cold = timed(on_processes)
    outputs.append(output)
    serial_times: list[float] = []
    warm_times: list[float] = []
    for _ in range(rounds):
        serial_times.append(timed(serially)[1])
        output, seconds = timed(on_processes)
        outputs.append(output)
        warm_times.append(seconds)
    if any(output != expected for output in outputs):
        raise RuntimeError("the worker processes computed different results from the serial run")

    # The fastest run is the one least disturbed by whatever else the machine was doing.
    serial, warm = min(serial_times), min(warm_times)
    per_item = f"{serial / CPU_ITEMS * 1000:.0f} ms per item"
    _row("serial", serial, f"({per_item}; best of {rounds} runs: {_listing(serial_times)})")
    _row(f"{usable} processes, first call", cold, f"= {serial / cold:.2f}x serial (starts the pool)")
    _row(
        f"{usable} processes, warm pool",
        warm,
        f"= {serial / warm:.2f}x serial (best of {rounds} runs: {_listing(warm_times)})",
    )


def _row(label: str, seconds: float, note: str) -> None:
    print(f"  {label + ':':<28}{seconds:5.2f} s  {note}")


def _listing(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in sorted(times))


def main() -> None:
    if sys.argv[1:] not in ([], ["--quick"]):
        sys.exit(f"usage: {sys.argv[0]} [--quick]")
    quick = sys.argv[1:] == ["--quick"]
    started = time.perf_counter()
    with running_server(quota=SERVER_QUOTA, window=SERVER_WINDOW) as server:
        fetch_users(server)
    print("  API server shut down")
    if quick:
        crunch_numbers(QUICK_CPU_SECONDS_PER_ITEM, QUICK_CPU_ROUNDS)
    else:
        crunch_numbers()
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
