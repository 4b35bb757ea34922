"""Every example of the API reference (``pyarallel-api-core``), run as a test.

The examples are adapted only as far as needed to run offline: ``fetch`` talks to a real
HTTP server on 127.0.0.1 started by a fixture, and ``process``, ``call_api``, ``save``,
``log_error``, ``db.save``, ``handle`` and ``log`` are small functions that record what
they were given. Delays are scaled down where the example's would make the suite slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import RemoteDisconnected
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pyarallel import (
    ItemResult,
    ParallelFunction,
    ParallelResult,
    RateLimit,
    Retry,
    parallel,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)

WAIT = 10.0  # seconds an event wait may take before a test is considered stuck
SLACK = 0.95  # lower bounds on measured delays allow for clock granularity only


def paced_span(calls: int, interval: float) -> float:
    """The least time ``calls`` rate-limited calls take from the first start to the last:
    pacing is smooth, one call per interval with no initial burst."""
    return max(0, calls - 1) * interval * SLACK


# -- a real HTTP server ---------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    at: float
    auth: str | None


@dataclass
class Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    hits: list[Hit] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)

    def record(self, path: str, auth: str | None) -> None:
        with self.lock:
            self.hits.append(Hit(path, time.monotonic(), auth))

    def count(self, key: str) -> int:
        with self.lock:
            self.served[key] = self.served.get(key, 0) + 1
            return self.served[key]


class Handler(BaseHTTPRequestHandler):
    """``/item/N`` answers ``{"id": N, "double": 2N, "auth": ...}``; ``/flaky/KEY/K`` drops
    the connection without answering the first K times, then answers; anything else is 404."""

    server: Server

    def do_GET(self) -> None:
        log = self.server.log
        auth = self.headers.get("Authorization")
        log.record(self.path, auth)
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "item":
            n = int(parts[1])
            self._json({"id": n, "double": 2 * n, "auth": auth})
        elif len(parts) == 3 and parts[0] == "flaky":
            key, drops = parts[1], int(parts[2])
            attempt = log.count(key)
            if attempt <= drops:
                self.close_connection = True  # hang up without a response: a ConnectionError
                return
            self._json({"key": key, "attempt": attempt, "auth": auth})
        else:
            self.send_error(404)

    def _json(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.log = Log()
        self._keys = itertools.count()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def item_urls(self, n: int) -> list[str]:
        return [self.url(f"/item/{i}") for i in range(n)]

    def flaky_url(self, drops: int) -> str:
        """A URL whose first ``drops`` requests are hung up on."""
        return self.url(f"/flaky/k{next(self._keys)}/{drops}")

    def hits(self, url: str) -> list[Hit]:
        path = url.split(str(self.server_address[1]), 1)[1]
        with self.log.lock:
            return [hit for hit in self.log.hits if hit.path == path]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, name="test-http-server", daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)


def fetch(url: str) -> dict[str, Any]:
    """``requests.get(url).json()`` with the standard library."""
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        return json.load(response)  # type: ignore[no-any-return]


def fetch_with_auth(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return json.load(response)  # type: ignore[no-any-return]


def item(i: int, auth: str | None = None) -> dict[str, Any]:
    """What ``fetch`` returns for ``/item/i``."""
    return {"id": i, "double": 2 * i, "auth": auth}


def test_the_server_behaves_as_the_examples_need(server: Server) -> None:
    assert fetch(server.url("/item/3")) == item(3)
    flaky = server.flaky_url(1)
    with pytest.raises(ConnectionError):
        fetch(flaky)
    with pytest.raises(RemoteDisconnected):
        fetch(server.flaky_url(1))
    assert fetch(flaky)["attempt"] == 2
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        fetch(server.url("/missing"))
    assert excinfo.value.code == 404
    assert not isinstance(excinfo.value, ConnectionError | TimeoutError)


# -- parallel_map --------------------------------------------------------------------------------


def test_parallel_map_signature_and_defaults() -> None:
    parameters = inspect.signature(parallel_map).parameters
    # The seed's parameters, in its order; the options added since follow them.
    assert list(parameters)[:9] == [
        "fn",
        "items",
        "workers",
        "executor",
        "rate_limit",
        "timeout",
        "on_progress",
        "batch_size",
        "retry",
    ]
    assert parameters["fn"].default is inspect.Parameter.empty
    assert parameters["items"].default is inspect.Parameter.empty
    defaults = {name: p.default for name, p in list(parameters.items())[:9] if name not in {"fn", "items"}}
    assert defaults == {
        "workers": None,
        "executor": "thread",
        "rate_limit": None,
        "timeout": None,
        "on_progress": None,
        "batch_size": None,
        "retry": None,
    }
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in defaults)


def test_parallel_map_basic(server: Server) -> None:
    urls = server.item_urls(25)
    hits_before = [len(server.hits(url)) for url in urls]
    results = parallel_map(fetch, urls, workers=10)
    assert isinstance(results, ParallelResult)
    assert results.ok
    assert results == [item(i) for i in range(25)]
    assert [len(server.hits(url)) - before for url, before in zip(urls, hits_before, strict=True)] == [1] * 25


@pytest.mark.parametrize(
    "items",
    [
        pytest.param([1, 2, 3], id="list"),
        pytest.param((1, 2, 3), id="tuple"),
        pytest.param(range(1, 4), id="range"),
        pytest.param({1, 2, 3}, id="set"),
        pytest.param({1: "a", 2: "b", 3: "c"}, id="dict"),
        pytest.param("123", id="str"),
    ],
)
def test_parallel_map_accepts_any_iterable(items: Any) -> None:
    results = parallel_map(int, items)
    assert sorted(results) == [1, 2, 3]
    assert results == [int(x) for x in items]  # in the iterable's own order


def test_parallel_map_accepts_a_generator() -> None:
    results = parallel_map(lambda x: x * 3, (i for i in range(5)), workers=None)
    assert results == [0, 3, 6, 9, 12]


def _square(x: int) -> int:
    return x * x


@pytest.mark.timeout(60)
def test_parallel_map_process_executor() -> None:
    results = parallel_map(_square, range(6), executor="process", workers=2)
    assert results == [0, 1, 4, 9, 16, 25]


# A task that finishes before ``ProcessBackend._launch`` attaches its done-callback makes the
# callback run at once, in the submitting thread, which still holds the backend's lock. On a
# loaded machine that happens by itself now and then; here the thread is held back at that
# point (a trace hook waits until the future is done) so that it happens every time. Run in
# a child process so that a deadlock costs a few seconds instead of the whole suite.
LATE_CALLBACK_SCRIPT = """
import os, sys, threading, time
import concurrent.futures._base as futures_base
from pyarallel import parallel_map

delay = sys.argv[1] == "delay"
delayed = []

def tracer(frame, event, arg):
    if (delay and not delayed and event == "call"
            and frame.f_code is futures_base.Future.add_done_callback.__code__):
        caller = frame.f_back.f_code.co_filename
        if "pyarallel" in caller and "_builtin" in caller:
            delayed.append(True)
            future, deadline = frame.f_locals["self"], time.monotonic() + 5
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.001)
    return None

results = []

def run():
    sys.settrace(tracer)
    results.append(parallel_map(abs, [-1, -2, -3], executor="process", workers=2).values())

thread = threading.Thread(target=run, daemon=True)
thread.start()
thread.join(8)
if thread.is_alive():
    print("DEADLOCK", flush=True)
    os._exit(3)
print(results[0], "delayed" if delayed else "not delayed", flush=True)
"""


def run_late_callback_script(mode: str) -> tuple[int, str]:
    """Run the script in a new session; return its exit code and output. Its worker
    processes (same process group) are killed afterwards, as a hung run leaves them behind."""
    with tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen(
            [sys.executable, "-c", LATE_CALLBACK_SCRIPT, mode],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            returncode = child.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        output.seek(0)
        return returncode, output.read()


@pytest.mark.timeout(90)
def test_process_executor_harness_completes_without_an_injected_delay() -> None:
    """Control for the next test: the child process finishes when nothing is delayed."""
    returncode, output = run_late_callback_script("plain")
    assert returncode == 0, output
    assert output.strip() == "[1, 2, 3] not delayed"


@pytest.mark.timeout(90)
def test_process_executor_survives_a_task_finishing_before_its_callback_is_attached() -> None:
    """Regression test: this hung forever before ad74d76 (the callback ran under the
    backend's non-reentrant lock, which the submitting thread already held)."""
    returncode, output = run_late_callback_script("delay")
    assert returncode == 0, output
    assert output.strip() == "[1, 2, 3] delayed"


def test_parallel_map_with_a_rate_limit_object(server: Server) -> None:
    urls = server.item_urls(3)
    started = time.monotonic()
    results = parallel_map(fetch, urls, rate_limit=RateLimit(100, "minute"))
    elapsed = time.monotonic() - started
    assert results == [item(i) for i in range(3)]
    # 100 per minute is one call every 0.6 s, far slower than 100 per second would be.
    assert elapsed >= paced_span(3, 0.6)
    assert elapsed < 30.0


def test_parallel_map_with_the_rate_limit_shorthand(server: Server) -> None:
    urls = server.item_urls(6)
    started = time.monotonic()
    results = parallel_map(fetch, urls, rate_limit=10)  # 10 per second
    elapsed = time.monotonic() - started
    assert results == [item(i) for i in range(6)]
    assert elapsed >= paced_span(6, 0.1)
    assert elapsed < 20.0


def test_parallel_map_with_timeout_and_progress(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    urls = server.item_urls(8)
    results = parallel_map(fetch, urls, timeout=60.0, on_progress=lambda d, t: print(f"{d}/{t}"))
    assert results == [item(i) for i in range(8)]
    assert capsys.readouterr().out.splitlines() == [f"{d}/8" for d in range(1, 9)]


def counting_generator(n: int, counter: list[int]) -> Iterator[int]:
    """Yields 0..n-1 and keeps ``counter[0]`` at the number of items taken so far."""
    for i in range(n):
        counter[0] += 1
        yield i


def test_parallel_map_batched_reads_an_unsized_input_lazily() -> None:
    n, batch = 20_000, 500
    lock = threading.Lock()
    finished = [0]
    ahead: list[int] = []  # at each pull: items taken from the input and not finished yet

    def million_items() -> Iterator[int]:
        for i in range(n):
            with lock:
                ahead.append(i + 1 - finished[0])
            yield i

    def process(x: int) -> int:
        with lock:
            finished[0] += 1
        return x * 2

    results = parallel_map(process, million_items(), workers=8, batch_size=batch)
    assert results.ok
    assert len(results) == n
    assert results[:5] == [0, 2, 4, 6, 8]
    assert results.values() == [x * 2 for x in range(n)]
    assert len(ahead) == n  # read to the end, one item at a time
    assert max(ahead) <= batch  # never more than one batch taken ahead of the work


def test_without_batch_size_a_generator_is_read_before_work_starts() -> None:
    """Control for the test above: the same probe does see an eager read."""
    n = 2_000
    pulled = [0]
    seen_at_first_call: list[int] = []

    def process(x: int) -> int:
        if x == 0:
            seen_at_first_call.append(pulled[0])
        return x

    assert parallel_map(process, counting_generator(n, pulled), workers=8) == list(range(n))
    assert seen_at_first_call == [n]


def test_progress_total_for_an_unsized_batched_input_is_items_seen_so_far() -> None:
    n, batch = 2_000, 50
    pulled = [0]
    reports: list[tuple[int, int]] = []
    results = parallel_map(
        lambda x: x,
        counting_generator(n, pulled),
        workers=4,
        batch_size=batch,
        on_progress=lambda done, total: reports.append((done, total)),
    )
    assert results.ok
    assert [done for done, _ in reports] == list(range(1, n + 1))  # once per finished item
    totals = [total for _, total in reports]
    assert totals == sorted(totals)  # never goes down
    assert all(1 <= done <= total <= done + batch for done, total in reports)
    assert totals[0] < n  # not a guaranteed final total while running
    assert reports[-1] == (n, n)


def test_progress_total_for_a_sized_input_is_the_final_total() -> None:
    reports: list[tuple[int, int]] = []
    parallel_map(
        lambda x: x,
        list(range(300)),
        workers=4,
        batch_size=20,
        on_progress=lambda d, t: reports.append((d, t)),
    )
    assert reports == [(done, 300) for done in range(1, 301)]


def test_progress_counts_up_by_one_per_call_with_tiny_items(capsys: pytest.CaptureFixture[str]) -> None:
    n = 2_000
    results = parallel_map(lambda x: x, range(n), workers=4, on_progress=lambda d, t: print(f"{d}/{t}"))
    assert results.ok
    assert capsys.readouterr().out.splitlines() == [f"{d}/{n}" for d in range(1, n + 1)]


def test_parallel_map_with_retry_for_flaky_network_calls(server: Server) -> None:
    urls = [*server.item_urls(5), server.flaky_url(drops=1)]
    results = parallel_map(fetch, urls, workers=10, retry=Retry(attempts=3, backoff=1.0))
    assert results.ok
    assert results[:5] == [item(i) for i in range(5)]
    assert results[5]["attempt"] == 2
    assert len(server.hits(urls[5])) == 2


# -- Retry examples ------------------------------------------------------------------------------


def test_retry_basic(server: Server) -> None:
    urls = [server.flaky_url(drops=1), *server.item_urls(3)]
    started = time.monotonic()
    results = parallel_map(fetch, urls, retry=Retry())
    elapsed = time.monotonic() - started
    assert results.ok
    assert results[0]["attempt"] == 2
    assert results[1:] == [item(i) for i in range(3)]
    # One retry with backoff 1.0 and jitter: 0.5 to 1.0 s.
    assert elapsed >= 0.5 * SLACK


def test_retry_only_transient_network_failures(server: Server) -> None:
    flaky, missing = server.flaky_url(drops=1), server.url("/missing-page")
    urls = [flaky, missing, server.url("/item/1")]
    results = parallel_map(fetch, urls, retry=Retry(on=(ConnectionError, TimeoutError)))
    assert results.ok is False
    assert results.successes() == [
        (0, {"key": flaky.split("/")[-2], "attempt": 2, "auth": None}),
        (2, item(1)),
    ]
    [(index, error)] = results.failures()
    assert index == 1
    assert isinstance(error, urllib.error.HTTPError)
    assert error.code == 404
    assert len(server.hits(flaky)) == 2  # a ConnectionError is retried
    assert len(server.hits(missing)) == 1  # an HTTP 404 is not


def test_retry_with_custom_caps_and_deterministic_delays(server: Server) -> None:
    flaky = server.flaky_url(drops=2)
    urls = [flaky, server.url("/item/7")]
    started = time.monotonic()
    results = parallel_map(
        fetch,
        urls,
        retry=Retry(attempts=5, backoff=0.5, max_delay=5.0, jitter=False),
    )
    elapsed = time.monotonic() - started
    assert results.ok
    assert results[0]["attempt"] == 3
    assert results[1] == item(7)
    times = [hit.at for hit in server.hits(flaky)]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.5 * SLACK  # after failed attempt 1: 0.5 s
    assert times[2] - times[1] >= 1.0 * SLACK  # after failed attempt 2: 1.0 s
    assert 1.5 * SLACK <= elapsed < 15.0


def test_retry_rate_limit_and_batch_the_full_production_stack(server: Server) -> None:
    flaky = server.flaky_url(drops=1)
    calls: list[int] = []

    def call_api(record_id: int) -> dict[str, Any]:
        calls.append(record_id)
        return fetch(flaky if record_id == 2 else server.url(f"/item/{record_id}"))

    ids = [1, 2, 3]
    started = time.monotonic()
    results = parallel_map(
        call_api,
        ids,
        workers=10,
        rate_limit=RateLimit(100, "minute"),
        retry=Retry(attempts=3, backoff=1.0),
        batch_size=500,
    )
    elapsed = time.monotonic() - started
    assert results.ok
    assert results[0] == item(1)
    assert results[1]["attempt"] == 2
    assert results[2] == item(3)
    assert sorted(calls) == [1, 2, 2, 3]
    # Every attempt, the retry included, draws from the rate limit: 4 calls at one per 0.6 s.
    assert elapsed >= paced_span(4, 0.6)
    assert elapsed < 30.0


def test_retry_construction_example() -> None:
    retry = Retry(attempts=3, backoff=1.0)
    assert (retry.attempts, retry.backoff, retry.max_delay, retry.jitter, retry.on) == (
        3,
        1.0,
        60.0,
        True,
        None,
    )


def test_backoff_behavior_gaps_grow_one_then_two_times_the_backoff() -> None:
    """With backoff B, attempts=3 and no jitter: attempt 1 at once, attempt 2 after B,
    attempt 3 after 2B. Scaled to B = 0.5 s; upper bounds are generous for a loaded CI."""
    backoff = 0.5
    started = time.monotonic()
    attempt_times: list[float] = []

    def flaky(x: int) -> int:
        attempt_times.append(time.monotonic())
        if len(attempt_times) < 3:
            raise ConnectionError(f"attempt {len(attempt_times)}")
        return x

    results = parallel_map(flaky, [42], retry=Retry(attempts=3, backoff=backoff, jitter=False))
    assert results == [42]
    assert len(attempt_times) == 3
    first_gap = attempt_times[1] - attempt_times[0]
    second_gap = attempt_times[2] - attempt_times[1]
    assert attempt_times[0] - started < 2.0  # attempt 1: immediate
    assert backoff * SLACK <= first_gap < 2 * backoff * SLACK  # 1x, clearly not 2x
    assert 2 * backoff * SLACK <= second_gap < 4 * backoff * SLACK  # 2x, clearly not 1x or 4x


def test_backoff_gives_up_after_the_last_attempt_with_its_error() -> None:
    attempts: list[int] = []

    def always_fails(x: int) -> int:
        attempts.append(x)
        raise ConnectionError(f"attempt {len(attempts)}")

    results = parallel_map(always_fails, [1], retry=Retry(attempts=3, backoff=0.01, jitter=False))
    assert len(attempts) == 3
    [(index, error)] = results.failures()
    assert index == 0
    assert str(error) == "attempt 3"


# -- @parallel -----------------------------------------------------------------------------------


def test_parallel_decorator_signature_example() -> None:
    parameters = inspect.signature(parallel).parameters
    assert parameters["workers"].default is None
    assert parameters["executor"].default == "thread"
    assert parameters["rate_limit"].default is None

    @parallel(workers=4, executor="thread", rate_limit=None)
    def fn(item: int) -> int:
        """Doubles."""
        return item * 2

    assert isinstance(fn, ParallelFunction)
    assert fn(21) == 42
    assert str(inspect.signature(fn)) == "(item: 'int') -> 'int'"
    assert fn.__name__ == "fn"
    assert fn.__doc__ == "Doubles."
    assert fn.map([1, 2]) == [2, 4]


def test_parallel_decorator_usage(server: Server) -> None:
    @parallel(workers=8)
    def fetch(url: str) -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return json.load(response)  # type: ignore[no-any-return]

    urls = server.item_urls(12)
    expected = [item(i) for i in range(12)]

    # Normal call — returns dict
    data = fetch(server.url("/item/5"))
    assert type(data) is dict
    assert data == item(5)

    # Parallel — returns ParallelResult
    results = fetch.map(urls)
    assert isinstance(results, ParallelResult)
    assert results == expected
    assert fetch.map(urls, workers=16) == expected  # override workers
    assert fetch.map(urls, rate_limit=100) == expected  # override rate limit
    assert fetch.map(urls, timeout=30.0) == expected  # add timeout
    progress: list[tuple[int, int]] = []
    assert fetch.map(urls, on_progress=lambda d, t: progress.append((d, t))) == expected  # add progress
    assert progress == [(d, 12) for d in range(1, 13)]


def test_map_workers_override_runs_more_calls_at_once() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    @parallel(workers=8)
    def tracked(x: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return x
        finally:
            with lock:
                running[0] -= 1

    assert tracked.map(range(200)) == list(range(200))
    assert 1 <= peak[0] <= 8

    barrier = threading.Barrier(16, timeout=WAIT)

    @parallel(workers=8)
    def meets_all(x: int) -> int:
        barrier.wait()  # passes only if 16 calls run at the same time
        return x

    results = meets_all.map(range(16), workers=16)
    assert results.failures() == []
    assert results == list(range(16))


def test_map_rate_limit_override_paces_calls() -> None:
    @parallel(workers=4)
    def echo(x: int) -> int:
        return x

    started = time.monotonic()
    assert echo.map(range(11), rate_limit=100) == list(range(11))
    assert time.monotonic() - started >= paced_span(11, 0.01)
    started = time.monotonic()
    assert echo.map(range(3), rate_limit=RateLimit(5)) == [0, 1, 2]
    assert time.monotonic() - started >= paced_span(3, 0.2)


def test_map_timeout_override_fails_unfinished_items() -> None:
    release = threading.Event()

    @parallel(workers=2)
    def slow(x: int) -> int:
        if x == 1:
            release.wait(WAIT)
        return x

    try:
        started = time.monotonic()
        results = slow.map([0, 1], timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert results.successes() == [(0, 0)]
    [(index, error)] = results.failures()
    assert index == 1
    assert isinstance(error, TimeoutError)
    assert elapsed < WAIT / 2


@pytest.mark.timeout(60)
def test_decorator_with_the_process_executor() -> None:
    @parallel(workers=2, executor="process")
    def cube(x: int) -> int:
        return x**3

    assert cube(3) == 27
    assert cube.map([1, 2, 3]) == [1, 8, 27]
    assert cube.map([4], executor="thread") == [64]


def test_bare_decorator_uses_all_defaults() -> None:
    @parallel
    def process(x: int) -> int:
        return x * 2

    assert isinstance(process, ParallelFunction)
    assert process(21) == 42
    assert process.map([1, 2, 3]) == [2, 4, 6]
    assert repr(process.map([1, 2, 3])) == "ParallelResult([2, 4, 6])"


# -- method support ------------------------------------------------------------------------------


class Service:
    def __init__(self, prefix: str = "svc") -> None:
        self.prefix = prefix

    def transform(self, item: int) -> str:
        return f"{self.prefix}:{item}"

    @parallel(workers=4)
    def process(self, item: int) -> str:
        return self.transform(item)

    @staticmethod
    @parallel(workers=4)
    def compute(x: int) -> int:
        return x**2


def test_method_support() -> None:
    svc = Service()
    items = [1, 2, 3]
    assert svc.process.map(items) == ["svc:1", "svc:2", "svc:3"]  # instance method
    assert Service.compute.map([1, 2, 3]) == [1, 4, 9]  # static method


def test_method_support_binds_each_instance_and_keeps_plain_calls() -> None:
    first, second = Service("a"), Service("b")
    assert first.process(1) == "a:1"
    assert second.process.map([1, 2]) == ["b:1", "b:2"]
    assert first.process.map([3]) == ["a:3"]
    assert first.process.starmap([(4,), (5,)]) == ["a:4", "a:5"]
    assert sorted(r.value for r in second.process.stream([6, 7])) == ["b:6", "b:7"]  # type: ignore[type-var]
    assert Service.compute(5) == 25
    assert first.compute.map([4]) == [16]


# -- parallel_starmap ----------------------------------------------------------------------------


def add(a: int, b: int) -> int:
    return a + b


def test_parallel_starmap_takes_the_same_options_as_parallel_map() -> None:
    map_options = list(inspect.signature(parallel_map).parameters)
    star_parameters = inspect.signature(parallel_starmap).parameters
    assert list(star_parameters) == map_options
    map_defaults = {k: v.default for k, v in inspect.signature(parallel_map).parameters.items()}
    assert {k: v.default for k, v in star_parameters.items()} == map_defaults


def test_parallel_starmap_example() -> None:
    results = parallel_starmap(add, [(1, 2), (3, 4), (5, 6)])
    assert results == [3, 7, 11]


def test_parallel_starmap_with_retry(server: Server) -> None:
    urls = [*server.item_urls(4), server.flaky_url(drops=1)]
    token = "s3cret"
    results = parallel_starmap(
        fetch_with_auth, [(url, token) for url in urls], workers=10, retry=Retry(attempts=3)
    )
    assert results.ok
    assert results[:4] == [item(i, auth="Bearer s3cret") for i in range(4)]
    assert results[4]["attempt"] == 2
    assert results[4]["auth"] == "Bearer s3cret"


def test_decorated_starmap_example() -> None:
    @parallel(workers=4)
    def add(a: int, b: int) -> int:
        return a + b

    result = add.starmap([(1, 2), (3, 4)])
    assert repr(result) == "ParallelResult([3, 7])"
    assert result == [3, 7]


# -- parallel_iter and .stream -------------------------------------------------------------------


@dataclass
class Database:
    saved: list[Any] = field(default_factory=list)

    def save(self, value: Any) -> None:
        self.saved.append(value)


def test_parallel_iter_signature_has_no_timeout_or_progress() -> None:
    parameters = inspect.signature(parallel_iter).parameters
    assert list(parameters)[:7] == ["fn", "items", "workers", "executor", "rate_limit", "batch_size", "retry"]
    assert "timeout" not in parameters
    assert "on_progress" not in parameters
    assert {k: p.default for k, p in list(parameters.items())[:7] if k not in {"fn", "items"}} == {
        "workers": None,
        "executor": "thread",
        "rate_limit": None,
        "batch_size": None,
        "retry": None,
    }


def test_parallel_iter_example() -> None:
    db = Database()
    logged: list[tuple[int, Exception]] = []

    def log_error(index: int, error: Exception) -> None:
        logged.append((index, error))

    def fn(x: int) -> int:
        if x % 7 == 3:
            raise ValueError(f"bad item {x}")
        return x * x

    items = range(3_000)
    for item in parallel_iter(fn, items, workers=4, batch_size=1000):
        if item.ok:
            db.save(item.value)
        else:
            log_error(item.index, item.error)  # type: ignore[arg-type]

    bad = [x for x in items if x % 7 == 3]
    assert sorted(db.saved) == sorted(x * x for x in items if x % 7 != 3)
    assert sorted(index for index, _ in logged) == bad
    assert all(isinstance(error, ValueError) and str(error) == f"bad item {i}" for i, error in logged)


def test_parallel_iter_yields_in_completion_order() -> None:
    n = 5
    delivered = [threading.Event() for _ in range(n)]

    def work(i: int) -> int:
        # Item i may only finish once item i + 1 has reached the consumer.
        if i + 1 < n and not delivered[i + 1].wait(WAIT):
            raise TimeoutError(f"item {i + 1} was never delivered")
        return i

    order = []
    for result in parallel_iter(work, range(n), workers=n):
        assert result.ok, result.error
        order.append(result.index)
        delivered[result.index].set()
    assert order == [4, 3, 2, 1, 0]


def test_parallel_iter_reads_a_generator_lazily() -> None:
    pulled = [0]
    results = parallel_iter(lambda x: x, counting_generator(10_000, pulled), workers=2, batch_size=100)
    first = next(results)
    assert first.ok
    assert pulled[0] <= 100 + 1
    results.close()  # type: ignore[attr-defined]
    assert pulled[0] < 10_000


def test_stream_example() -> None:
    db = Database()
    logged: list[tuple[int, Exception]] = []

    def log_error(index: int, error: Exception) -> None:
        logged.append((index, error))

    @parallel(workers=8)
    def process(item: int) -> int:
        if item == 4_321:
            raise KeyError(item)
        return item + 1

    huge_list = list(range(5_000))
    for item in process.stream(huge_list, batch_size=1000):
        if item.ok:
            db.save(item.value)
        else:
            log_error(item.index, item.error)  # type: ignore[arg-type]

    assert sorted(db.saved) == [x + 1 for x in huge_list if x != 4_321]
    assert [(index, type(error)) for index, error in logged] == [(4_321, KeyError)]


# -- ItemResult and ParallelResult examples -----------------------------------------------------


def test_item_result_example() -> None:
    handled: dict[int, Any] = {}
    logged: dict[int, Exception] = {}

    def handle(index: int, value: Any) -> None:
        handled[index] = value

    def log(index: int, error: Exception) -> None:
        logged[index] = error

    def process(x: int) -> int | None:
        if x == 2:
            raise RuntimeError("two")
        return None if x == 3 else x * 10

    items = [0, 1, 2, 3, 4]
    for item in parallel_iter(process, items, workers=4):
        assert isinstance(item, ItemResult)
        if item.ok:
            handle(item.index, item.value)
        else:
            log(item.index, item.error)  # type: ignore[arg-type]

    assert handled == {0: 0, 1: 10, 3: None, 4: 40}  # None is a legitimate value
    assert list(logged) == [2]
    assert isinstance(logged[2], RuntimeError)


def test_item_results_come_from_the_async_stream_too() -> None:
    from pyarallel import async_parallel_iter

    async def process(x: int) -> int:
        if x == 1:
            raise ValueError(x)
        return x * 2

    async def consume() -> list[ItemResult[int]]:
        return [item async for item in async_parallel_iter(process, [0, 1, 2])]

    results = sorted(asyncio.run(consume()), key=lambda r: r.index)
    assert all(isinstance(r, ItemResult) for r in results)
    assert [(r.index, r.ok, r.value) for r in results] == [(0, True, 0), (1, False, None), (2, True, 4)]
    assert isinstance(results[1].error, ValueError)


def test_parallel_result_example_when_every_task_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    def process(x: int) -> str:
        return f"value-{x}"

    items = [1, 2, 3]
    result = parallel_map(process, items, workers=4)

    if result.ok:
        for value in result:
            print(value)
    else:
        pytest.fail("every task should have succeeded")

    assert capsys.readouterr().out.splitlines() == ["value-1", "value-2", "value-3"]


def test_parallel_result_example_when_some_tasks_fail() -> None:
    saved: list[tuple[int, Any]] = []
    logged: list[tuple[int, Exception]] = []

    def save(index: int, value: Any) -> None:
        saved.append((index, value))

    def log(index: int, error: Exception) -> None:
        logged.append((index, error))

    def process(x: int) -> int:
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x + 1

    items = [5, -1, 7, -3]
    result = parallel_map(process, items, workers=4)

    if result.ok:
        pytest.fail("two tasks should have failed")
    else:
        for idx, value in result.successes():
            save(idx, value)
        for idx, error in result.failures():
            log(idx, error)

    assert saved == [(0, 6), (2, 8)]
    assert [(i, str(e)) for i, e in logged] == [(1, "negative: -1"), (3, "negative: -3")]
    assert len(result) == 4
    assert bool(result) is True
    with pytest.raises(ExceptionGroup, match="2 of 4 items failed"):
        result.values()


# -- RateLimit examples --------------------------------------------------------------------------


def test_rate_limit_examples() -> None:
    assert RateLimit(10).per_second == 10.0  # 10 per second
    assert RateLimit(100, "minute").per_second == pytest.approx(100 / 60)  # 100 per minute
    assert RateLimit(1000, "hour").per_second == pytest.approx(1000 / 3600)  # 1000 per hour
    rate = RateLimit(10, per="second")
    assert (rate.count, rate.per) == (10, "second")


@pytest.mark.parametrize("rate_limit", [10, RateLimit(10)], ids=["shorthand", "RateLimit(10)"])
def test_rate_limit_shorthand_is_the_same_as_the_object(rate_limit: float | RateLimit) -> None:
    starts: list[float] = []

    def fn(x: int) -> int:
        starts.append(time.monotonic())
        return -x

    items = range(5)
    started = time.monotonic()
    results = parallel_map(fn, items, rate_limit=rate_limit)  # same as RateLimit(10)
    elapsed = time.monotonic() - started
    assert results == [0, -1, -2, -3, -4]
    assert elapsed >= paced_span(5, 0.1)
    assert elapsed < 15.0


def test_rate_limit_never_allows_more_than_count_per_interval() -> None:
    """``count``: operations allowed per interval. With RateLimit(1) ("1 per second") a
    second call must not start within a second of the first."""
    started = time.monotonic()
    results = parallel_map(lambda x: x, [0, 1], rate_limit=RateLimit(1))
    elapsed = time.monotonic() - started
    assert results == [0, 1]
    assert elapsed >= 1.0 * SLACK
