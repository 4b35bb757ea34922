"""Checkpointed runs end to end: results recorded as items finish, and a rerun of the same
call (also after the process was SIGKILLed mid-run) skips every finished item, proven by
a real HTTP server on 127.0.0.1 that counts the requests for each item."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyarallel
from pyarallel import Checkpoint, CheckpointError, RunStatus, parallel_iter, parallel_map, parallel_starmap

SECRET = "test-secret"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYARALLEL_CHECKPOINT_SECRET", SECRET)  # never the real home's key file


class _Counting(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.counts: Counter[int] = Counter()
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Counting

    def do_GET(self) -> None:
        item = int(self.path.rsplit("/", 1)[-1])
        with self.server.lock:
            self.server.counts[item] += 1
        body = json.dumps({"item": item, "double": 2 * item}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client was killed mid-request

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Counting]:
    httpd = _Counting()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


calls: Counter[int] = Counter()


def counted(x: int) -> int:
    calls[x] += 1
    if x == 7 and calls[x] == 1:
        raise ValueError("seven fails on its first run")
    return x * 10


def other_function(x: int) -> int:
    return x


def test_a_rerun_skips_finished_items_and_retries_failed_ones(tmp_path: Path) -> None:
    calls.clear()
    path = tmp_path / "job.db"
    first = parallel_map(counted, range(20), checkpoint=str(path), workers=4)
    assert first.status is RunStatus.COMPLETED
    assert [index for index, _ in first.failures()] == [7]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    second = parallel_map(counted, range(20), checkpoint=path, workers=4)
    assert second.ok
    assert second.values() == [x * 10 for x in range(20)]
    assert calls == Counter({**dict.fromkeys(range(20), 1), 7: 2})  # only the failed one ran again


def test_restored_results_say_they_ran_no_attempt(tmp_path: Path) -> None:
    calls.clear()
    path = tmp_path / "job.db"
    parallel_map(counted, range(10), checkpoint=path)
    seen = list(parallel_iter(counted, range(10), checkpoint=path))
    assert sorted(result.index for result in seen) == list(range(10))
    assert {result.index: result.attempts for result in seen} == {**dict.fromkeys(range(10), 0), 7: 1}


def test_failures_are_served_when_not_retried(tmp_path: Path) -> None:
    calls.clear()
    path = tmp_path / "job.db"
    parallel_map(counted, range(10), checkpoint=path)
    again = parallel_map(counted, range(10), checkpoint=Checkpoint(path, retry_failed=False))
    ((index, error),) = again.failures()
    assert index == 7
    assert isinstance(error, pyarallel.RecordedFailure)
    assert "seven fails" in str(error)
    assert calls[7] == 1


def test_items_are_found_by_their_key_whatever_their_position(tmp_path: Path) -> None:
    calls.clear()
    path = tmp_path / "job.db"
    parallel_map(counted, [1, 2, 3], checkpoint=path, checkpoint_key=str)
    result = parallel_map(counted, [3, 4, 1, 2], checkpoint=path, checkpoint_key=str)
    assert result.values() == [30, 40, 10, 20]
    assert calls == Counter({1: 1, 2: 1, 3: 1, 4: 1})


def test_a_checkpoint_of_another_job_is_refused_before_any_call(tmp_path: Path) -> None:
    calls.clear()
    path = tmp_path / "job.db"
    parallel_map(other_function, range(3), checkpoint=path)
    with pytest.raises(CheckpointError, match="other_function"):
        parallel_map(counted, range(3), checkpoint=path)
    with pytest.raises(CheckpointError):
        parallel_starmap(other_function, [(1,), (2,)], checkpoint=path)
    with pytest.raises(CheckpointError):
        parallel_map(other_function, range(3), checkpoint=path, checkpoint_key=str)
    assert not calls


def test_a_checkpoint_in_a_missing_directory_is_refused_before_any_call(tmp_path: Path) -> None:
    calls.clear()
    with pytest.raises(ValueError, match="checkpoint") as caught:
        parallel_map(counted, range(3), checkpoint=str(tmp_path / "missing" / "job.db"))
    assert "missing" in str(caught.value)
    assert not calls


def test_items_the_run_ended_are_not_recorded(tmp_path: Path) -> None:
    calls.clear()
    path = tmp_path / "job.db"
    first = parallel_map(counted, range(30), checkpoint=path, max_errors=1, workers=1)
    assert first.status is RunStatus.ABORTED
    second = parallel_map(counted, range(30), checkpoint=path)
    assert second.ok
    assert all(count == 1 for item, count in calls.items() if item != 7)  # none ran twice
    assert set(calls) == set(range(30))


def test_the_async_api_resumes_too(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    ran: list[int] = []

    async def double(x: int) -> int:
        ran.append(x)
        return 2 * x

    async def main() -> tuple[list[int], list[int]]:
        first = await pyarallel.async_parallel_map(double, range(8), checkpoint=path)
        ran.clear()
        second = await pyarallel.async_parallel_map(double, range(12), checkpoint=path)
        return first.values(), second.values()

    first, second = asyncio.run(main())
    assert first == [2 * x for x in range(8)]
    assert second == [2 * x for x in range(12)]
    assert sorted(ran) == list(range(8, 12))


_JOB = """
import json, os, signal, sys, urllib.request
from pyarallel import parallel_map

URL, DB, KILL_AFTER, FINISHED = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def fetch(item):
    with urllib.request.urlopen(f"{URL}/items/{item}", timeout=10) as response:
        return json.loads(response.read())["double"]

done = open(FINISHED, "a")

def finished(result):
    # A result reaches on_result only once it is recorded: write it down, then maybe die.
    done.write(f"{result.index}\\n")
    done.flush()
    if KILL_AFTER and sum(1 for _ in open(FINISHED)) >= KILL_AFTER:
        os.kill(os.getpid(), signal.SIGKILL)

result = parallel_map(fetch, range(300), workers=8, checkpoint=DB, on_result=finished)
print(json.dumps({"status": result.status.value, "values": result.values()}))
"""


def _job(url: str, db: Path, kill_after: int, finished: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYARALLEL_CHECKPOINT_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_JOB), url, str(db), str(kill_after), str(finished)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_job_killed_with_sigkill_resumes_without_requesting_a_finished_item_twice(
    tmp_path: Path, server: _Counting
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    db, finished = tmp_path / "job.db", tmp_path / "finished.txt"
    killed = _job(url, db, 120, finished)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = dict(server.counts)
    finished_before = {int(line) for line in finished.read_text().split()}
    assert len(finished_before) >= 120
    assert len(before) < 300  # it died mid-run

    finished.write_text("")
    resumed = _job(url, db, 0, finished)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report == {"status": "completed", "values": [2 * item for item in range(300)]}
    after = server.counts
    assert set(after) == set(range(300))
    assert all(after[item] == 1 for item in finished_before), "a finished item was requested again"
    assert {int(line) for line in finished.read_text().split()} == set(range(300))  # restored ones too
    assert all(after[item] <= 2 for item in after)  # at most the calls in flight at the kill ran twice
    print(f"requests before the kill: {sum(before.values())}, after the rerun: {sum(after.values())}")


# -- a property over the mix: fast or slow, failing or not, alone or grouped ---------------

_KINDS = st.sampled_from(["fast", "fast", "fast", "slow", "failing"])


class _Job:
    """Items of given kinds; counts every call, and stops the run after ``stop_after``
    results (a stand-in for a kill: what was recorded by then is all a rerun has)."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.calls: Counter[int] = Counter()
        self.lock = threading.Lock()

    def __call__(self, item: int) -> int:
        with self.lock:
            self.calls[item] += 1
        kind = self.kinds[item]
        if kind == "slow":
            threading.Event().wait(0.005)
        elif kind == "failing":
            raise ValueError(item)
        return item * 3


@settings(max_examples=25, deadline=None, database=None)
@given(
    kinds=st.lists(_KINDS, min_size=1, max_size=120),
    stop_after=st.integers(min_value=0, max_value=130),
    mode=st.sampled_from(["threads", "sequential", "stream"]),
    keyed=st.booleans(),
)
def test_property_a_stopped_checkpointed_run_resumes_without_rerunning_a_finished_item(
    kinds: list[str], stop_after: int, mode: str, keyed: bool
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "job.db"
        job = _Job(kinds)
        stop = pyarallel.StopToken()
        seen: list[int] = []

        def count(result: pyarallel.ItemResult[int]) -> None:
            seen.append(result.index)
            if len(seen) >= stop_after:
                stop.stop()

        options: dict[str, object] = {"checkpoint": path, "checkpoint_key": str if keyed else None}
        if mode == "sequential":
            options["sequential"] = True
        else:
            options["workers"] = 4
        items = list(range(len(kinds)))
        if mode == "stream":
            first = {
                result.index: result
                for result in parallel_iter(job, items, stop=stop, on_result=count, **options)
            }
            assert sorted(first) == items
        else:
            result = parallel_map(job, items, stop=stop, on_result=count, **options)
            assert result.status in (RunStatus.COMPLETED, RunStatus.CANCELLED)
        finished_ok = {index for index in seen if kinds[index] != "failing" and job.calls[index]}
        first_calls = Counter(job.calls)

        again = parallel_map(job, items, **options)
        assert again.status is RunStatus.COMPLETED
        assert [index for index, _ in again.failures()] == [
            i for i, kind in enumerate(kinds) if kind == "failing"
        ]
        assert [value for _, value in again.successes()] == [
            3 * i for i, kind in enumerate(kinds) if kind != "failing"
        ]
        for index in finished_ok:  # a success the first run reported was not called again
            assert job.calls[index] == first_calls[index] == 1
        assert all(job.calls[index] >= 1 for index in items)
