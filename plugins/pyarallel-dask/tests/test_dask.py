"""pyarallel on real Dask clusters: the session's LocalCluster (conftest), a cluster of
``dask scheduler`` / ``dask worker`` processes, and the LocalCluster the plugin starts
itself (in a subprocess, to see it closed at exit)."""

from __future__ import annotations

import _thread
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import dask.system
import dask_tasks
import pytest
from distributed import Client, LocalCluster, get_task_stream
from pyarallel_dask import _clients
from pyarallel_dask._backend import DaskBackend

import pyarallel
from pyarallel import (
    ItemTimeoutError,
    Retry,
    RunStatus,
    SerializationError,
    WorkerCrashedError,
    parallel,
    parallel_iter,
    parallel_map,
)

VENV_BIN = Path(sys.executable).parent


def our_keys(stream: list[dict[str, object]]) -> set[str]:
    return {str(task["key"]) for task in stream if str(task["key"]).startswith("pyarallel")}


def wait_until(condition: Callable[[], object], seconds: float, what: str) -> None:
    """Poll ``condition()`` (an event in another process: a file, a worker) until true."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def nothing_processing(client: Client) -> bool:
    return not any(client.processing().values())


# -- plugin registration ---------------------------------------------------------------


@pytest.mark.timeout(60)
def test_plugin_is_found_through_its_entry_point_and_imports_nothing_heavy() -> None:
    plugins = {info.name: info for info in pyarallel.list_plugins()}
    assert "dask" in plugins
    assert plugins["dask"].executors == ("dask",)
    script = textwrap.dedent(
        """
        import sys
        import pyarallel, pyarallel_dask
        from pyarallel import parallel_map
        assert list(parallel_map(abs, [-1, -2])) == [1, 2]  # builds the plugin manager
        assert "dask" in {i.name for i in pyarallel.list_plugins()}
        print(sorted(m for m in ("distributed", "dask") if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- running on the session's cluster ----------------------------------------------------


@pytest.mark.timeout(60)
def test_many_tiny_items_are_grouped_and_each_runs_once_in_order(client: Client, tmp_path: Path) -> None:
    n = 3000
    with get_task_stream(client=client) as stream:
        result = parallel_map(partial(dask_tasks.recorded_square, str(tmp_path)), range(n), executor=client)
    assert result.ok
    assert list(result) == [x * x for x in range(n)]
    starts = Counter(item for _, item, _, _ in dask_tasks.events(tmp_path, "start"))
    assert starts == Counter(range(n))  # every item ran exactly once
    tasks = our_keys(stream.data)
    assert 1 <= len(tasks) <= n / 20, f"{len(tasks)} Dask tasks for {n} tiny items: not grouped"
    assert client.status == "running"  # the user's client is never closed


@pytest.mark.timeout(60)
def test_few_slow_items_spread_over_the_workers(client: Client, tmp_path: Path, worker_pids: dict) -> None:
    started = time.monotonic()
    result = parallel_map(partial(dask_tasks.nap_pid, 0.25, str(tmp_path)), range(6), executor=client)
    elapsed = time.monotonic() - started
    assert result.ok
    assert set(result) == set(worker_pids.values())  # both workers took items
    assert elapsed < 6 * 0.25 * 0.85  # they ran side by side
    assert Counter(item for _, item, _, _ in dask_tasks.events(tmp_path, "done")) == Counter(range(6))


@pytest.mark.timeout(60)
def test_executor_dask_uses_the_current_default_client(client: Client, worker_pids: dict) -> None:
    with client.as_current():
        result = parallel_map(dask_tasks.pid, range(40), executor="dask")
    assert result.ok
    assert set(result) <= set(worker_pids.values())
    assert _clients.owned_cluster() is None  # nothing was started for it


@pytest.mark.timeout(60)
def test_executor_dask_connects_to_the_address_in_the_environment(
    cluster: LocalCluster, client: Client, worker_pids: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYARALLEL_DASK_ADDRESS", cluster.scheduler_address)
    try:
        first = parallel_map(dask_tasks.pid, range(20), executor="dask")
        second = parallel_map(dask_tasks.square, range(20), executor="dask")
        assert first.ok
        assert second.ok
        assert set(first) <= set(worker_pids.values())
        assert list(second) == [x * x for x in range(20)]
        assert list(_clients._connected) == [cluster.scheduler_address]  # one client, reused
        assert _clients.owned_cluster() is None
    finally:
        _clients.close_owned()


@pytest.mark.timeout(60)
def test_a_task_that_fans_out_uses_its_own_cluster(client: Client) -> None:
    # One outer task at a time, so that the other worker is free for the inner ones.
    result = parallel_map(dask_tasks.fan_out, [3, 4, 5], executor=client, workers=1)
    assert list(result) == [5, 14, 30]
    assert _clients.owned_cluster() is None


@pytest.mark.timeout(60)
def test_per_item_errors_come_back_with_their_remote_traceback(client: Client) -> None:
    result = parallel_map(dask_tasks.odd_fails, range(10), executor=client)
    assert not result.ok
    assert [x for x, _ in result.successes()] == [0, 2, 4, 6, 8]
    failures = result.failures()
    assert [index for index, _ in failures] == [1, 3, 5, 7, 9]
    for index, error in failures:
        assert isinstance(error, ValueError)
        assert str(error) == f"odd item {index}"
        assert "odd_fails" in error.remote_traceback  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_retry_runs_failed_items_again_on_the_cluster(client: Client, tmp_path: Path) -> None:
    retry = Retry(attempts=3, backoff=0.01, jitter=False)
    result = parallel_map(
        partial(dask_tasks.fails_first, str(tmp_path)), range(8), executor=client, retry=retry
    )
    assert result.ok
    assert list(result) == list(range(8))
    attempts = Counter(item for _, item, _, _ in dask_tasks.events(tmp_path, "attempt"))
    assert attempts == Counter({x: 2 for x in range(8)})


@pytest.mark.timeout(60)
def test_rate_limit_paces_starts_across_the_cluster(client: Client, worker_pids: dict) -> None:
    rate, calls = 20.0, 30
    result = parallel_map(dask_tasks.started_at, range(calls), executor=client, rate_limit=rate)
    assert result.ok
    starts = sorted(result)
    achieved = (calls - 1) / (starts[-1] - starts[0])
    assert achieved == pytest.approx(rate, rel=0.05)
    # No burst: at most one more start than the rate allows in any half second (a start
    # that Dask delivers late shortens the gap to the next one, never more than that).
    window = 0.5
    most = max(sum(1 for t in starts if s <= t < s + window) for s in starts)
    assert most <= rate * window + 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("item_seconds", [0.1, 0.01], ids=["alone", "chunked"])
def test_timeout_cancels_the_run_on_the_cluster(client: Client, tmp_path: Path, item_seconds: float) -> None:
    n, timeout = 400, 0.6
    started = time.monotonic()
    result = parallel_map(
        partial(dask_tasks.nap_pid, item_seconds, str(tmp_path)), range(n), executor=client, timeout=timeout
    )
    returned_at, elapsed = time.time(), time.monotonic() - started
    assert result.status is RunStatus.TIMED_OUT
    assert elapsed < timeout + 1.0  # the call returned promptly
    failures = result.failures()
    assert failures
    assert all(isinstance(error, ItemTimeoutError) for _, error in failures)
    assert len(result.successes()) + len(failures) == n
    wait_until(lambda: nothing_processing(client), 5, "the cluster to drop the run's tasks")
    time.sleep(0.5)  # an observation window: anything still to start would start in it
    starts = dask_tasks.events(tmp_path, "start")
    late = [(item, at - returned_at) for _, item, _, at in starts if at > returned_at]
    assert not late, f"items started after the call returned: {late}"
    assert len(starts) < n / 2


@pytest.mark.timeout(60)
def test_closing_a_stream_early_stops_the_run(client: Client, tmp_path: Path) -> None:
    n = 200
    stream = parallel_iter(partial(dask_tasks.nap_pid, 0.05, str(tmp_path)), range(n), executor=client)
    for count, _ in enumerate(stream, 1):
        if count == 3:
            break
    stream.close()
    closed_at = time.time()
    wait_until(lambda: nothing_processing(client), 5, "the cluster to drop the run's tasks")
    time.sleep(0.5)  # an observation window
    starts = dask_tasks.events(tmp_path, "start")
    assert not [item for _, item, _, at in starts if at > closed_at]
    assert len(starts) < 20


@pytest.mark.timeout(60)
def test_ctrl_c_stops_the_run(client: Client, tmp_path: Path) -> None:
    def interrupt_once_items_run() -> None:
        wait_until(lambda: len(dask_tasks.events(tmp_path, "start")) >= 4, 30, "items to start")
        _thread.interrupt_main()  # what Ctrl-C does

    interrupter = threading.Thread(target=interrupt_once_items_run)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        parallel_map(partial(dask_tasks.nap_pid, 0.05, str(tmp_path)), range(200), executor=client)
    interrupted_at = time.time()
    interrupter.join()
    wait_until(lambda: nothing_processing(client), 5, "the cluster to drop the run's tasks")
    time.sleep(0.5)  # an observation window
    starts = dask_tasks.events(tmp_path, "start")
    assert not [item for _, item, _, at in starts if at > interrupted_at]
    assert len(starts) < 40


@pytest.mark.timeout(60)
def test_workers_caps_the_tasks_in_flight(client: Client, tmp_path: Path) -> None:
    result = parallel_map(
        partial(dask_tasks.nap_pid, 0.1, str(tmp_path)), range(5), executor=client, workers=1
    )
    assert result.ok
    spans = {}
    for event, item, _, at in dask_tasks.events(tmp_path):
        spans.setdefault(item, {})[event] = at
    intervals = sorted((span["start"], span["done"]) for span in spans.values())
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(intervals))


@pytest.mark.timeout(60)
def test_serialization_failures_fail_only_their_items(client: Client) -> None:
    result = parallel_map(dask_tasks.unpicklable_result, range(6), executor=client)
    assert [index for index, _ in result.failures()] == [3]
    error = result.failures()[0][1]
    assert isinstance(error, SerializationError)
    assert error.index == 3
    assert "could not be sent back" in str(error)
    assert [x for _, x in result.successes()] == [0, 1, 2, 4, 5]

    items: list[object] = [1, 2, threading.Lock(), 4]
    result = parallel_map(dask_tasks.identity, items, executor=client)
    assert [index for index, _ in result.failures()] == [2]
    assert isinstance(result.failures()[0][1], SerializationError)
    assert "could not be pickled" in str(result.failures()[0][1])

    lock = threading.Lock()

    def holds_a_lock(x: int) -> int:
        with lock:
            return x

    result = parallel_map(holds_a_lock, range(3), executor=client)
    assert len(result.failures()) == 3
    for _, error in result.failures():
        assert isinstance(error, SerializationError)
        assert "holds_a_lock" in str(error)


# -- worker loss -------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_worker_killed_mid_run_loses_no_item(client: Client, tmp_path: Path, worker_pids: dict) -> None:
    n, directory = 10, str(tmp_path)
    with ThreadPoolExecutor(1) as caller:
        running = caller.submit(
            parallel_map, partial(dask_tasks.nap_pid, 0.4, directory), range(n), executor=client
        )
        wait_until(lambda: dask_tasks.events(tmp_path, "start"), 30, "an item to start")
        _, victim_item, victim, _ = dask_tasks.events(tmp_path, "start")[0]
        assert victim in worker_pids.values()
        os.kill(victim, signal.SIGKILL)
        result = running.result(timeout=60)
    assert result.ok, result.failures()
    assert len(result) == n
    done = Counter(item for _, item, _, _ in dask_tasks.events(tmp_path, "done"))
    assert done == Counter(range(n))  # every item finished exactly once
    assert victim not in set(result)  # no result came from the killed worker...
    reruns = [pid for _, item, pid, _ in dask_tasks.events(tmp_path, "start") if item == victim_item]
    assert reruns[0] == victim  # ...its item ran again, elsewhere
    assert len(reruns) == 2
    assert result[victim_item] != victim


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("culprit", "seconds"), [(5, 0.02), (3, 0.1)], ids=["in-a-chunk", "alone"])
def test_an_item_that_kills_its_workers_fails_alone(client: Client, culprit: int, seconds: float) -> None:
    started = time.monotonic()
    result = parallel_map(partial(dask_tasks.exits_on, culprit, seconds), range(12), executor=client)
    assert time.monotonic() - started < 60
    assert [index for index, _ in result.failures()] == [culprit]
    error = result.failures()[0][1]
    assert isinstance(error, WorkerCrashedError)
    assert "KilledWorker" in str(error)
    assert [x for _, x in result.successes()] == [x for x in range(12) if x != culprit]


# -- the backend on its own ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_backend_contract_on_its_own(client: Client) -> None:
    backend = DaskBackend(client)
    assert backend.name == "dask"
    assert backend.capacity == 2
    caps = backend.capabilities
    assert (caps.queue_ahead, caps.in_caller_process) == (True, False)
    assert caps.task_seconds is not None
    assert 0.01 <= caps.task_seconds <= 0.1
    assert backend.until_ready() is None
    assert backend.submit(dask_tasks.square, 7).result(timeout=30) == 49
    slow = backend.submit(time.sleep, 1)
    (task,) = backend._tasks.values()
    client.cancel([task.dask_future])
    with pytest.raises(CancelledError):
        slow.result(timeout=30)
    backend.close(abort=False)
    assert DaskBackend(client, workers=5, total=3).capacity == 3
    assert client.status == "running"


@pytest.mark.timeout(60)
def test_decorator_validation_builds_the_backend_without_running_anything(client: Client) -> None:
    with get_task_stream(client=client) as stream:

        @parallel(executor=client)
        def double(x: int) -> int:
            return 2 * x

    assert not our_keys(stream.data)
    assert client.status == "running"


@pytest.mark.timeout(60)
def test_until_ready_waits_for_the_first_worker() -> None:
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty,
        Client(empty, set_as_default=False) as client,
    ):
        backend = DaskBackend(client, workers=1)
        waiting = backend.until_ready()
        assert waiting is not None
        assert not waiting.done()
        empty.scale(1)
        waiting.result(timeout=30)
        assert backend.until_ready() is None
        squares = parallel_map(dask_tasks.square, range(5), executor=client, rate_limit=50)
        assert list(squares) == [0, 1, 4, 9, 16]
        backend.close(abort=False)


@pytest.mark.timeout(60)
def test_until_ready_says_busy_while_every_thread_runs_a_task_of_the_run(client: Client) -> None:
    # reports_idle_workers: under a rate limit a token is drawn only for an idle thread,
    # even with more tasks than threads in flight (results on their way back).
    backend = DaskBackend(client)
    assert backend.capabilities.reports_idle_workers
    assert backend.capacity == 2
    assert backend.until_ready() is None
    running = [backend.submit(time.sleep, 0.5) for _ in range(2)]
    busy = backend.until_ready()
    assert busy is not None
    assert not busy.done()
    busy.result(timeout=30)  # one of them finished on the cluster: a thread is idle
    assert backend.until_ready() is None
    for future in running:
        future.result(timeout=30)
    backend.close(abort=False)


# -- other ways to get a cluster -------------------------------------------------------------


@pytest.fixture
def cli_cluster(tmp_path: Path) -> object:
    """A scheduler and two single-threaded workers started with the ``dask`` command."""
    scheduler_file = tmp_path / "scheduler.json"
    dask = str(VENV_BIN / "dask")
    env = {**os.environ, "PYTHONPATH": ""}
    logs = (tmp_path / "scheduler.log").open("w"), (tmp_path / "workers.log").open("w")
    scheduler = subprocess.Popen(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    processes = [scheduler]
    try:
        wait_until(scheduler_file.exists, 60, "the scheduler file")
        workers = subprocess.Popen(
            [
                dask,
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--nthreads",
                "1",
                "--nworkers",
                "2",
                "--no-dashboard",
            ],
            stdout=logs[1],
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        processes.append(workers)
        yield scheduler_file
    finally:
        for process in reversed(processes):
            _end(process)
        for log in logs:
            log.close()


def _end(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.timeout(120)
def test_a_cluster_started_with_the_dask_command(cli_cluster: Path, tmp_path: Path) -> None:
    with Client(scheduler_file=str(cli_cluster), set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2
        result = parallel_map(dask_tasks.square, range(2000), executor=client)
        assert list(result) == [x * x for x in range(2000)]
        slow = parallel_map(partial(dask_tasks.nap_pid, 0.2, str(tmp_path)), range(6), executor=client)
        assert set(slow) == pids
        failing = parallel_map(dask_tasks.odd_fails, range(4), executor=client)
        assert [index for index, _ in failing.failures()] == [1, 3]
        timed_out = parallel_map(
            partial(dask_tasks.nap_pid, 0.1, str(tmp_path)), range(100), executor=client, timeout=0.3
        )
        assert timed_out.status is RunStatus.TIMED_OUT
        wait_until(lambda: nothing_processing(client), 5, "the cluster to drop the run's tasks")
        assert client.status == "running"


OWNED_SCRIPT = """
import atexit, json, os, sys

from pyarallel import parallel_map
import pyarallel_dask

def report_at_exit():  # registered first, so it runs after pyarallel-dask's own handler
    from pyarallel_dask import _clients
    print(json.dumps({"owned_after_exit": _clients.owned_cluster() is not None,
                      "status_after_exit": str(cluster.status)}), flush=True)

def pid(x):
    return os.getpid()

if __name__ == "__main__":  # the worker processes import this module too
    atexit.register(report_at_exit)
    first = parallel_map(pid, range(20), executor="dask")
    cluster = pyarallel_dask.owned_cluster()
    address = cluster.scheduler_address
    second = parallel_map(pid, range(20), executor="dask")
    assert pyarallel_dask.owned_cluster() is cluster
    print(json.dumps({"address": address, "again": cluster.scheduler_address,
                      "pids": sorted(set(first) | set(second)),
                      "workers": len(cluster.workers)}), flush=True)
"""


@pytest.mark.timeout(120)
def test_the_owned_local_cluster_is_started_once_and_closed_at_exit(tmp_path: Path) -> None:
    script = tmp_path / "owned.py"
    script.write_text(OWNED_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYARALLEL_DASK_ADDRESS"}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    run, at_exit = (json.loads(line) for line in out.stdout.strip().splitlines())
    assert run["address"] == run["again"]
    assert run["workers"] == dask.system.CPU_COUNT  # one single-threaded worker per CPU
    assert run["pids"]
    assert os.getpid() not in run["pids"]
    assert at_exit == {"owned_after_exit": False, "status_after_exit": "Status.closed"}
    for worker in run["pids"]:
        wait_until(lambda worker=worker: not _alive(worker), 10, f"worker process {worker} to exit")
    assert "Traceback" not in out.stderr, out.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
