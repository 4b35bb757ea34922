"""The "process" executor with real loky workers: what can be sent to a worker, pool reuse,
pickling failures, remote exceptions and worker crashes.

Cross-process synchronisation goes through marker files in ``tmp_path``: work items poll
for them (sleeping inside a work item is fine); the test itself never sleeps to wait.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

from pyarallel import (
    ItemError,
    ItemResult,
    SerializationError,
    WorkerCrashedError,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)

WORKERS = 2

# -- work items (module level; cloudpickle sends them to the workers) -------------------------


def _wait_for(predicate, limit: float = 30.0) -> bool:
    """Poll ``predicate`` inside a work item until it is true or ``limit`` seconds pass."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _slowly(value):
    """Return ``value`` after a short pause, so items are not instantaneous."""
    time.sleep(0.05)
    return value


def _rendezvous(directory: str, expected: int) -> int | None:
    """Register this worker's PID and wait until ``expected`` distinct workers have done so:
    every call returns a PID only if ``expected`` items ran at the same time on different
    worker processes."""
    Path(directory, str(os.getpid())).touch()
    if not _wait_for(lambda: len(os.listdir(directory)) >= expected):
        return None
    return os.getpid()


def _crash(mode: str) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file for a deliberate crash
    if mode == "exit":
        os._exit(1)
    if mode == "segfault":
        import ctypes

        ctypes.string_at(0)  # a real invalid memory read: SIGSEGV
    raise AssertionError(f"unknown crash mode {mode!r}")


def _crash_item(args: tuple[int, str, dict[int, str]]) -> tuple[int, int]:
    """Item 0 is slow, and in flight when a crasher dies: the crashers (index -> crash mode)
    wait until item 0 is running. The other items are quick. Every attempt is logged as
    ``start <index> <pid>``, a crash as ``crash <index> <pid>``."""
    index, directory, crashers = args
    log_path = os.path.join(directory, "attempts.log")
    with open(log_path, "a") as log:
        log.write(f"start {index} {os.getpid()}\n")
    if index == 0:
        Path(directory, "slow-item-running").touch()
        time.sleep(0.8)
    elif index in crashers:
        _wait_for(lambda: os.path.exists(os.path.join(directory, "slow-item-running")))
        with open(log_path, "a") as log:
            log.write(f"crash {index} {os.getpid()}\n")
        _crash(crashers[index])
    else:
        time.sleep(0.05)
    return index * 10, os.getpid()


def _read_log(directory: Path) -> list[tuple[str, int, int]]:
    words = (directory / "attempts.log").read_text().split()
    return [(words[i], int(words[i + 1]), int(words[i + 2])) for i in range(0, len(words), 3)]


def _collect_stream(fn, items, **options) -> dict[int, list[ItemResult]]:
    """Run ``parallel_iter`` and group every yielded result by index."""
    by_index: dict[int, list[ItemResult]] = {}
    for result in parallel_iter(fn, items, **options):
        by_index.setdefault(result.index, []).append(result)
    return by_index


# -- what can be sent to a worker --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_closures_run_in_other_processes() -> None:
    offset = 1000
    captured = {"scale": 3}

    def closure(x: int) -> tuple[int, int]:
        time.sleep(0.02)
        return x * captured["scale"] + offset, os.getpid()

    result = parallel_map(closure, range(6), executor="process", workers=WORKERS)

    assert result.ok
    assert [value for value, _ in result] == [x * 3 + 1000 for x in range(6)]
    assert os.getpid() not in {pid for _, pid in result}


@pytest.mark.timeout(60)
def test_lambdas_run_in_other_processes() -> None:
    result = parallel_map(
        lambda x: (time.sleep(0.02), x**2, os.getpid())[1:], range(5), executor="process", workers=WORKERS
    )

    assert [value for value, _ in result] == [0, 1, 4, 9, 16]
    assert os.getpid() not in {pid for _, pid in result}


MAIN_SCRIPT = """
import json
import os
import time

from pyarallel import parallel_map


class Box:
    def __init__(self, value):
        self.value = value


def triple(box):
    time.sleep(0.02)
    return Box(box.value * 3), os.getpid()


if __name__ == "__main__":
    result = parallel_map(triple, [Box(i) for i in range(5)], executor="process", workers=2)
    print(json.dumps({
        "ok": result.ok,
        "values": [box.value for box, _ in result],
        "in_other_process": all(pid != os.getpid() for _, pid in result),
    }))
"""


@pytest.mark.timeout(90)
def test_functions_and_classes_defined_in_main_work(tmp_path: Path) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(MAIN_SCRIPT)
    completed = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"ok": True, "values": [0, 3, 6, 9, 12], "in_other_process": True}


@pytest.mark.timeout(90)
def test_pool_is_reused_across_calls_with_the_same_worker_count(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()

    first = parallel_starmap(
        _rendezvous, [(str(first_dir), WORKERS)] * WORKERS, executor="process", workers=WORKERS
    )
    second = parallel_starmap(
        _rendezvous, [(str(second_dir), WORKERS)] * WORKERS, executor="process", workers=WORKERS
    )

    first_pids, second_pids = set(first), set(second)
    assert None not in first_pids, "the first call's items did not run at the same time"
    assert None not in second_pids, "the second call's items did not run at the same time"
    assert len(first_pids) == WORKERS
    assert os.getpid() not in first_pids
    assert second_pids == first_pids, "the second call did not run on the same worker processes"


# -- pickling failures ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_item_whose_argument_cannot_be_pickled_fails_alone() -> None:
    items: list[object] = [0, 1, threading.Lock(), 3, 4]

    result = parallel_map(_slowly, items, executor="process", workers=WORKERS)

    assert result.successes() == [(0, 0), (1, 1), (3, 3), (4, 4)]
    [(index, error)] = result.failures()
    assert index == 2
    assert isinstance(error, SerializationError)
    assert isinstance(error, ItemError)
    assert error.index == 2
    message = str(error)
    assert "item 2" in message
    assert "pickle" in message.lower()
    assert "lock" in message.lower()
    # Documented: ``__cause__`` holds the pickling error.
    assert isinstance(error.__cause__, Exception)
    assert "lock" in str(error.__cause__).lower()


@pytest.mark.timeout(60)
def test_item_whose_result_cannot_be_pickled_fails_alone() -> None:
    def make(x: int) -> object:
        time.sleep(0.02)
        return threading.Lock() if x == 3 else x * 2

    result = parallel_map(make, range(6), executor="process", workers=WORKERS)

    assert result.successes() == [(0, 0), (1, 2), (2, 4), (4, 8), (5, 10)]
    [(index, error)] = result.failures()
    assert index == 3
    assert isinstance(error, SerializationError)
    assert error.index == 3
    message = str(error)
    assert "item 3" in message
    assert "pickle" in message.lower()
    assert "lock" in message.lower()


# -- exceptions raised by the function -----------------------------------------------------------


def _reject_odd_numbers(x: int) -> int:
    time.sleep(0.02)
    if x % 2:
        raise ValueError(f"odd input rejected: {x}")
    return x


@pytest.mark.timeout(60)
def test_worker_exception_keeps_type_message_and_remote_traceback() -> None:
    result = parallel_map(_reject_odd_numbers, range(4), executor="process", workers=WORKERS)

    assert result.successes() == [(0, 0), (2, 2)]
    failures = dict(result.failures())
    assert sorted(failures) == [1, 3]
    for index, error in failures.items():
        assert type(error) is ValueError
        assert str(error) == f"odd input rejected: {index}"
        assert error.__cause__ is None  # it had none in the worker
        remote_text = error.remote_traceback  # type: ignore[attr-defined]
        assert remote_text.startswith("Traceback in worker process ")
        assert "_reject_odd_numbers" in remote_text
        assert 'raise ValueError(f"odd input rejected: {x}")' in remote_text
        assert error.__notes__[-1] == remote_text
        # Printing the failure shows where it happened in the worker.
        assert "_reject_odd_numbers" in "".join(traceback.format_exception(error))


# -- worker crashes ------------------------------------------------------------------------------


def _assert_crash_run(tmp_path: Path, crashers: dict[int, str], total: int = 5) -> None:
    items = [(i, str(tmp_path), crashers) for i in range(total)]

    by_index = _collect_stream(_crash_item, items, executor="process", workers=WORKERS)

    # Every item is reported exactly once.
    assert sorted(by_index) == list(range(total))
    assert all(len(results) == 1 for results in by_index.values()), by_index
    results = {index: results[0] for index, results in by_index.items()}

    # Only the crashers fail, each with WorkerCrashedError naming its own index.
    failed = {index for index, result in results.items() if not result.ok}
    assert failed == set(crashers), {i: results[i].error for i in failed}
    for index in crashers:
        error = results[index].error
        assert isinstance(error, WorkerCrashedError)
        assert error.index == index
        assert f"item {index}" in str(error)
    for index in set(range(total)) - set(crashers):
        assert results[index].value[0] == index * 10

    # Item 0 was running on the same pool when the first crasher died, and still succeeded.
    log = _read_log(tmp_path)
    first_crash = next(position for position, (kind, _, _) in enumerate(log) if kind == "crash")
    assert ("start", 0) in {(kind, index) for kind, index, _ in log[:first_crash]}
    # The run went on in fresh worker processes: every item after item 0 that succeeded did
    # so on a process that was not alive before the first crash (loky replaces the pool).
    pids_before_crash = {pid for _, _, pid in log[: first_crash + 1]}
    for index in set(range(2, total)) - set(crashers):
        assert results[index].value[1] not in pids_before_crash, index

    # The next call works.
    assert parallel_map(_slowly, range(4), executor="process", workers=WORKERS) == [0, 1, 2, 3]


@pytest.mark.timeout(90)
def test_worker_exiting_fails_only_its_item(tmp_path: Path) -> None:
    _assert_crash_run(tmp_path, {1: "exit"})


@pytest.mark.timeout(120)
def test_two_crashing_items_both_fail_and_nothing_else(tmp_path: Path) -> None:
    # Item 1 exits and item 2 segfaults; both are in flight with item 0 (and item 3 queued)
    # when the first worker dies.
    _assert_crash_run(tmp_path, {1: "exit", 2: "segfault"})


# -- races between a task finishing and the backend attaching its callback -------------------------

# A loky task can finish before the thread that submitted it gets to attach a callback (the
# thread is preempted right after loky accepted the task). These scripts make that happen
# every time: a profile hook, active in chosen threads only, waits on return from loky's
# ``submit`` until the returned future is done. Nothing in pyarallel or loky is replaced.
STALL_HOOK = """
import concurrent.futures
import os
import sys
import threading
import time

stalls = []  # one entry per stalled submit, to check that the hook took effect

def stall_after_loky_submit(frame, event, arg):
    if (
        event == "return"
        and frame.f_code.co_name == "submit"
        and frame.f_code.co_filename.endswith(os.path.join("loky", "process_executor.py"))
        and isinstance(arg, concurrent.futures.Future)
        and threading.current_thread().name.startswith(STALLED_THREADS)
    ):
        stalls.append(concurrent.futures.wait([arg], timeout=10).done == {arg})

def watchdog(seconds):
    time.sleep(seconds)
    print("HUNG", flush=True)
    os._exit(3)
"""

SUBMIT_RACE_SCRIPT = (
    STALL_HOOK
    + """
from pyarallel import parallel_map

STALLED_THREADS = "MainThread"

if __name__ == "__main__":
    assert parallel_map(abs, [-1, -2], executor="process", workers=2) == [1, 2]  # warm pool
    threading.Thread(target=watchdog, args=(30,), daemon=True).start()
    sys.setprofile(stall_after_loky_submit)
    result = parallel_map(abs, [-1, -2, -3, -4], executor="process", workers=2)
    sys.setprofile(None)
    print("STALLED", sum(stalls), flush=True)
    print("RESULT", list(result), flush=True)
"""
)


@pytest.mark.timeout(90)
def test_task_finishing_before_its_callback_is_attached_does_not_hang(tmp_path: Path) -> None:
    script = tmp_path / "submit_race.py"
    script.write_text(SUBMIT_RACE_SCRIPT)
    completed = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert "HUNG" not in completed.stdout, "parallel_map deadlocked"
    assert completed.returncode == 0, completed.stderr
    assert "RESULT [1, 2, 3, 4]" in completed.stdout
    # Every task finished before pyarallel could attach its callback.
    assert "STALLED 4" in completed.stdout


RECOVERY_RACE_SCRIPT = (
    STALL_HOOK
    + """
import json
from pyarallel import parallel_iter, parallel_map

STALLED_THREADS = "MainThread"
DIRECTORY = sys.argv[1]
CRASHED = os.path.join(DIRECTORY, "item-0-crashed")

def work(i):
    marker = os.path.join(DIRECTORY, "item-1-running")
    if i == 0:  # crashes while item 1 is in flight on the same pool
        deadline = time.monotonic() + 30
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        open(CRASHED, "w").close()
        os._exit(1)
    if i == 1:
        open(marker, "w").close()
        time.sleep(0.8)
    else:
        time.sleep(0.05)
    return i

if __name__ == "__main__":
    assert parallel_map(abs, [-1, -2], executor="process", workers=2) == [1, 2]  # warm pool
    thread_errors = []
    threading.excepthook = lambda args: thread_errors.append(
        f"{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}"
    )
    threading.Thread(target=watchdog, args=(60,), daemon=True).start()
    def stall_after_the_crash(frame, event, arg):  # every submit once item 0 has crashed
        if os.path.exists(CRASHED):
            stall_after_loky_submit(frame, event, arg)

    sys.setprofile(stall_after_the_crash)
    results = {r.index: [r.ok, type(r.error).__name__] for r in parallel_iter(work, range(6),
               executor="process", workers=2)}
    sys.setprofile(None)
    assert parallel_map(abs, [-5, -6], executor="process", workers=2) == [5, 6]
    print(json.dumps({"results": results, "thread_errors": thread_errors, "stalls": sum(stalls)}), flush=True)
"""
)


@pytest.mark.timeout(120)
def test_tasks_resubmitted_after_a_crash_may_finish_before_their_callbacks(tmp_path: Path) -> None:
    # Item 0 kills its worker while item 1 runs; every task submitted after the crash (item
    # 1 again, and the items not run yet) finishes before pyarallel attaches its callback.
    # Only item 0 fails, nothing hangs, and no thread dies with an error (an outcome
    # delivered twice would raise InvalidStateError in loky's thread).
    script = tmp_path / "recovery_race.py"
    script.write_text(RECOVERY_RACE_SCRIPT)
    completed = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
    )
    assert "HUNG" not in completed.stdout, "the run hung"
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    expected = {str(i): [True, "NoneType"] for i in range(1, 6)}
    expected["0"] = [False, "WorkerCrashedError"]
    assert report["results"] == expected
    assert report["thread_errors"] == []
    assert report["stalls"] >= 2, "tasks submitted after the crash should finish before their callbacks"
