"""A long job's worst day, end to end, against a local HTTP API that counts the requests
it gets for each item:

1. a checkpointed run is killed with SIGKILL mid-flight and rerun: no finished item is
   requested again;
2. ``max_errors`` against a dead endpoint: the job gives up after about N + workers calls;
3. a hung item on worker processes is killed by ``task_timeout`` while the rest complete;
4. a ``StopToken`` triggered from another thread returns a CANCELLED result promptly;
5. Ctrl-C in a job run under ``stop_on_signals``: once stops gracefully, twice at once.

Run it with ``python examples/long_job.py``; each part prints what it measured.
"""

from __future__ import annotations

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
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pyarallel import (
    ItemAbortedError,
    ItemResult,
    StopToken,
    TaskTimeoutError,
    parallel_map,
)

ITEMS = 400
KILL_AFTER = 150


class CountingAPI(ThreadingHTTPServer):
    """``GET /items/<n>`` answers ``{"double": 2n}``; ``GET /dead/<n>`` always 503s.
    Every request is counted per path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests(self, kind: str) -> Counter[int]:
        with self.lock:
            return Counter(
                {int(path.rsplit("/", 1)[1]): n for path, n in self.counts.items() if kind in path}
            )


class _Handler(BaseHTTPRequestHandler):
    server: CountingAPI

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.counts[self.path] += 1
        time.sleep(0.005)  # a little work, so that requests overlap
        if self.path.startswith("/dead/"):
            self._answer(503, b'{"error": "down"}')
        else:
            self._answer(200, json.dumps({"double": 2 * int(self.path.rsplit("/", 1)[1])}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed mid-request

    def log_message(self, format: str, *args: object) -> None:
        pass


def fetch(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(json.loads(response.read())["double"])


# -- the child jobs (this file run with --child ...) --------------------------------------


def child_checkpointed(base: str, db: str, kill_after: int) -> None:
    done = restored = 0

    def finished(result: ItemResult[int]) -> None:
        nonlocal done, restored
        done += 1  # a result reaches on_result once it is recorded in the checkpoint
        restored += result.attempts == 0  # answered from the checkpoint, not requested
        if kill_after and done >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    urls = [f"{base}/items/{item}" for item in range(ITEMS)]
    result = parallel_map(fetch, urls, workers=8, checkpoint=db, on_result=finished)
    print(json.dumps({"status": result.status.value, "ok": result.ok, "restored": restored}))


def child_ctrl_c() -> None:
    from pyarallel import stop_on_signals

    def slow(item: int) -> int:
        if item == 0:
            print("started", flush=True)  # items are running: Ctrl-C may come
        time.sleep(0.2)
        return item

    with stop_on_signals() as stop:
        stop_seen = threading.Thread(target=lambda: stop.wait() and print("stopping", flush=True))
        stop_seen.start()
        result = parallel_map(slow, range(200), workers=4, stop=stop)
    print(f"status {result.status.value}: {len(result.successes())} finished", flush=True)


# -- the parts ----------------------------------------------------------------------------


def _child(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, __file__, "--child", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def part_checkpoint(api: CountingAPI, directory: Path) -> None:
    db = str(directory / "job.db")
    killed = _child("checkpointed", api.url, db, str(KILL_AFTER))
    before = api.requests("/items/")
    resumed = _child("checkpointed", api.url, db, "0")
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    after = api.requests("/items/")
    twice = sorted(item for item, count in after.items() if count > 1)
    print("1. checkpoint and resume after SIGKILL")
    signal_number, requested = -killed.returncode, sum(before.values())
    print(f"   first run killed by signal {signal_number} after {KILL_AFTER} results; requests: {requested}")
    print(f"   rerun: status {report['status']}, {report['restored']} items restored from the checkpoint")
    print(f"   requests after the rerun: {sum(after.values())} for {len(after)} items")
    print(f"   items requested twice: {len(twice)} (only those in flight at the kill: {twice})")


def part_max_errors(api: CountingAPI) -> None:
    urls = [f"{api.url}/dead/{item}" for item in range(2_000)]
    workers, limit = 8, 10
    result = parallel_map(fetch, urls, workers=workers, max_errors=limit)
    calls = sum(api.requests("/dead/").values())
    aborted = sum(isinstance(error, ItemAbortedError) for _, error in result.failures())
    print("2. max_errors against a dead endpoint")
    status = result.status.value
    print(f"   status {status}: {calls} calls for {len(urls)} items (N + workers = {limit + workers})")
    print(f"   {aborted} items aborted without a call")


def hang_on_seven(item: int) -> int:
    if item == 7:
        time.sleep(3600)  # hung for good: only killing its worker ends it
    return item * item


def part_task_timeout() -> None:
    started = time.monotonic()
    result = parallel_map(hang_on_seven, range(40), executor="process", workers=2, task_timeout=1.0)
    elapsed = time.monotonic() - started
    ((index, error),) = result.failures()
    print("3. task_timeout on worker processes")
    print(f"   item {index} failed with {type(error).__name__}: {isinstance(error, TaskTimeoutError)}")
    print(f"   {len(result.successes())} other items succeeded; the call took {elapsed:.1f} s")


def part_stop_token() -> None:
    stop = StopToken()
    stopped_at: list[float] = []

    def trigger() -> None:
        time.sleep(0.3)
        stopped_at.append(time.monotonic())
        stop.stop()

    threading.Thread(target=trigger).start()
    result = parallel_map(lambda item: time.sleep(0.05), range(1_000), workers=4, stop=stop)
    latency = time.monotonic() - stopped_at[0]
    print("4. StopToken from another thread")
    finished, status = len(result.successes()), result.status.value
    print(f"   status {status}: {finished} finished, returned {latency * 1000:.0f} ms after stop()")


def part_ctrl_c() -> None:
    print("5. Ctrl-C under stop_on_signals")
    for presses in (1, 2):
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", "ctrl-c"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,  # noqa: PLW1509 - only resets a signal, before exec
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        if presses == 2:
            assert child.stdout.readline().strip() == "stopping"
            child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
        seconds = time.monotonic() - started
        ending = out.strip().splitlines()[-1] if child.returncode == 0 else err.strip().splitlines()[-1]
        print(f"   {presses} Ctrl-C: exit code {child.returncode} after {seconds:.1f} s: {ending}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> None:
    os.environ.setdefault("PYARALLEL_CHECKPOINT_SECRET", "long-job example")  # no key file in the home
    api = CountingAPI()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as directory:
        part_checkpoint(api, Path(directory))
    part_max_errors(api)
    part_task_timeout()
    part_stop_token()
    part_ctrl_c()
    api.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        if sys.argv[2] == "checkpointed":
            child_checkpointed(sys.argv[3], sys.argv[4], int(sys.argv[5]))
        else:
            child_ctrl_c()
    else:
        main()
