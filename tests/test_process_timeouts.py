"""``task_timeout`` on the "process" executor: the backend kills the worker running an
overdue item (``Capabilities.kills_overdue_tasks``); and warming the pool up front and
shutting it down. Real worker processes, real ``SIGKILL``s.

Items that must stay running until the test is done with them block in ``time.sleep``
(C code, as a stuck extension would); items tell the test they have started through
marker files in ``tmp_path``, and the test polls for those markers. The clocks compared
are ``time.monotonic()``, which is one clock for every process on Linux.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

import pyarallel
from pyarallel import TaskTimeoutError, WorkerCrashedError, parallel_iter, parallel_map, parallel_starmap
from pyarallel._builtin._process_backend import ProcessBackend
from pyarallel._builtin._process_pools import process_alive
from pyarallel._errors import TaskLostError
from pyarallel._tasks import TaskFunction

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="deaths are told from /proc")

WORKERS = 2
HANG = 120.0  # an overdue item would sleep this long: a test that passes did not wait for it

# -- work items (module level; the workers import them from this module) --------------------


def _hang_at(directory: str, culprit: int, x: int) -> tuple[int, int]:
    """Item ``culprit`` records its pid and start time, then hangs; the others are quick."""
    if x == culprit:
        Path(directory, "culprit").write_text(f"{os.getpid()} {time.monotonic()}")
        time.sleep(HANG)
    return x, os.getpid()


def _marked(directory: str, item: tuple[str, float]) -> tuple[str, int]:
    """Touch the marker ``name``, then sleep ``seconds``."""
    name, seconds = item
    Path(directory, name).touch()
    time.sleep(seconds)
    return name, os.getpid()


def _wait_for_file(path: Path, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.005)


def _wait_until_dead(pid: int, limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- through parallel_map / parallel_iter ---------------------------------------------------


@pytest.mark.timeout(60)
def test_an_overdue_item_fails_soon_after_its_timeout_and_its_worker_is_killed(tmp_path: Path) -> None:
    from functools import partial

    timeout = 1.0
    failed_at: dict[int, float] = {}
    results = {}
    for result in parallel_iter(
        partial(_hang_at, str(tmp_path), 5),
        range(12),
        executor="process",
        workers=WORKERS,
        task_timeout=timeout,
    ):
        results[result.index] = result
        if not result.ok:
            failed_at[result.index] = time.monotonic()

    assert sorted(results) == list(range(12))
    assert list(failed_at) == [5]
    error = results[5].error
    assert isinstance(error, TaskTimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.index == 5
    assert all(results[i].ok and results[i].value[0] == i for i in range(12) if i != 5)
    pid_text, started_text = (tmp_path / "culprit").read_text().split()
    overran = failed_at[5] - float(started_text)
    print(f"the overdue item failed {overran:.3f} s after it started (task_timeout {timeout} s)")
    assert timeout <= overran <= timeout + 1.0  # the target is timeout + 0.5 s; measured ~ +0.1
    assert _wait_until_dead(int(pid_text)), "the worker running the overdue item is still alive"


@pytest.mark.timeout(60)
def test_items_grouped_with_an_overdue_one_are_not_stuck_behind_it(tmp_path: Path) -> None:
    # 2,000 tiny items go out in groups: the one that hangs is in a group with others,
    # which run again elsewhere; nothing is counted as a crash.
    from functools import partial

    started = time.monotonic()
    result = parallel_map(
        partial(_hang_at, str(tmp_path), 700),
        range(2000),
        executor="process",
        workers=WORKERS,
        task_timeout=1.0,
    )
    seconds = time.monotonic() - started

    [(index, error)] = result.failures()
    assert index == 700
    assert isinstance(error, TaskTimeoutError)
    assert not isinstance(error, WorkerCrashedError)
    assert [i for i, (value, _) in result.successes()] == [i for i in range(2000) if i != 700]
    assert all(value == i for i, (value, _) in result.successes())
    assert seconds < 1.0 + 5.0, f"the run took {seconds:.1f} s"


# -- the backend itself ---------------------------------------------------------------------


def _task_function(tmp_path: Path) -> TaskFunction:
    from functools import partial

    return TaskFunction(partial(_marked, str(tmp_path)), False, True)


@pytest.mark.timeout(60)
def test_the_backend_reports_which_item_overran_and_the_other_tasks_as_innocent(tmp_path: Path) -> None:
    backend = ProcessBackend(WORKERS, None, task_timeout=0.5)
    try:
        fn = _task_function(tmp_path)
        bystander = backend.submit(fn, [(f"bystander-{i}", 0.3) for i in range(20)])
        _wait_for_file(tmp_path / "bystander-0")
        overdue = backend.submit(fn, [("a", 0.0), ("b", 0.0), ("stuck", HANG), ("never", 0.0)])
        _wait_for_file(tmp_path / "stuck")
        with pytest.raises(TaskLostError) as lost:
            overdue.result(timeout=10)
        verdict = (lost.value.started, lost.value.overdue, lost.value.crashed, lost.value.finished)
        assert verdict == (3, True, False, False)
        assert "task_timeout" in str(lost.value)
        # loky replaces the whole pool when a worker dies: the other task is lost too,
        # innocent (it runs again, uncounted), never blamed as overdue or crashed
        with pytest.raises(TaskLostError) as other:
            bystander.result(timeout=10)
        assert (other.value.overdue, other.value.crashed) == (False, False)
        assert not (tmp_path / "never").exists()
        again = backend.submit(fn, [("again", 0.0)])  # a fresh pool takes over
        assert again.result(timeout=30)[1] == []
    finally:
        backend.close(abort=True)


def _watchdogs() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "pyarallel-task-timeout"]


@pytest.mark.timeout(60)
def test_the_watchdog_runs_only_while_a_run_with_a_task_timeout_lasts(tmp_path: Path) -> None:
    fn = _task_function(tmp_path)
    for leftover in _watchdogs():  # the runs of earlier tests have closed: theirs end
        leftover.join(5)
    plain = ProcessBackend(WORKERS, None)
    try:
        assert plain.submit(fn, [("plain", 0.0)]).result(timeout=30)[1] == []
        assert _watchdogs() == []  # no task_timeout: no thread at all
    finally:
        plain.close(abort=False)
    timed = ProcessBackend(WORKERS, None, task_timeout=5.0)
    try:
        assert timed.submit(fn, [("timed", 0.0)]).result(timeout=30)[1] == []
        [watchdog] = _watchdogs()
    finally:
        timed.close(abort=False)
    watchdog.join(5)
    assert not watchdog.is_alive()


# -- warm-up and shutdown ---------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_warmed_pool_serves_the_next_call_and_shutdown_stops_it() -> None:
    pyarallel.shutdown()  # no warm pool of earlier tests
    pyarallel.warm_up("process", workers=WORKERS)
    started = time.monotonic()
    pids = set(parallel_starmap(os.getpid, [()] * 8, executor="process", workers=WORKERS).values())
    first_call = time.monotonic() - started
    again = set(parallel_starmap(os.getpid, [()] * 8, executor="process", workers=WORKERS).values())
    pids |= again  # tiny items travel in groups: one call may see one worker only
    assert len(pids) <= WORKERS  # both calls ran on the warm pool's workers
    assert first_call < 1.0, f"the first call after warm_up took {first_call:.2f} s"
    pyarallel.shutdown()
    assert all(_wait_until_dead(pid) for pid in pids), "shutdown() left warm workers running"
    fresh = set(parallel_starmap(os.getpid, [()] * 4, executor="process", workers=WORKERS).values())
    assert fresh.isdisjoint(pids)  # a call after shutdown starts new workers


def test_warm_up_refuses_an_unknown_executor() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        pyarallel.warm_up("nope")


def _mark_and_nap(directory: str, x: int) -> int:
    Path(directory, f"ran-{x}").touch()
    time.sleep(0.05)
    return x


@pytest.mark.timeout(60)
def test_a_stopped_process_run_never_reports_an_item_that_ran_as_cancelled(tmp_path: Path) -> None:
    # The backend's futures cannot be cancelled once submitted (loky may have started the
    # task): every task submitted finishes, and only items never submitted are cancelled.
    from functools import partial

    stop = pyarallel.StopToken()
    results = list(
        parallel_iter(
            partial(_mark_and_nap, str(tmp_path)),
            range(40),
            executor="process",
            workers=WORKERS,
            stop=stop,
            on_result=lambda result: stop.stop(),
        )
    )
    assert sorted(result.index for result in results) == list(range(40))
    ran = {int(path.name.split("-")[1]) for path in tmp_path.glob("ran-*")}
    cancelled = {result.index for result in results if isinstance(result.error, pyarallel.ItemCancelledError)}
    assert cancelled, "the stop came after every item had started"
    assert ran.isdisjoint(cancelled), f"items reported cancelled ran: {sorted(ran & cancelled)}"
    assert {result.index for result in results if result.ok} == ran
