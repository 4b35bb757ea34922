"""The total ``timeout``, Ctrl-C and closing a stream early: the call returns promptly, every
item is accounted for, queued work never starts afterwards and process workers are stopped.

Blocked work items wait on events (threads) or on a FIFO (processes) that the test releases;
scripts run in subprocesses announce running items with marker lines. After a thread run
the test joins the pool threads (they only exit once the pool is shut down) before checking
that nothing else started; for processes it polls until the workers have exited.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from pyarallel import ItemTimeoutError, PyarallelError, parallel_iter, parallel_map, parallel_starmap

# -- helpers -----------------------------------------------------------------------------------


class Gate:
    """Blocks chosen work items until released, and records what started where."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.started: list[int] = []
        self.threads: set[threading.Thread] = set()

    def enter(self, index: int) -> None:
        with self._lock:
            self.started.append(index)
            self.threads.add(threading.current_thread())

    def block(self) -> None:
        assert self.release.wait(30), "the test never released a blocked item"

    def open_and_join(self) -> None:
        """Release the blocked items and wait for every pool thread that ran an item to
        exit; after that no item of the run can start any more."""
        self.release.set()
        joined: set[threading.Thread] = set()
        while True:  # an item allowed to start late may bring in one more thread
            with self._lock:
                pending = self.threads - joined
            if not pending:
                break
            for thread in pending:
                thread.join(10)
            joined |= pending
        assert not any(thread.is_alive() for thread in joined), "pool threads were not shut down"


def _process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    if Path("/proc/self/stat").exists():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return state in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_until_gone(pids: set[int], limit: float = 10.0) -> set[int]:
    """Poll until every process in ``pids`` has exited; return those still alive at ``limit``."""
    deadline = time.monotonic() + limit
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if not _process_gone(pid)}
        if alive:
            time.sleep(0.05)
    return alive


def _assert_timeouts(result, indices: list[int], timeout: float) -> None:
    failures = dict(result.failures())
    assert sorted(failures) == indices
    for index in indices:
        error = failures[index]
        assert isinstance(error, ItemTimeoutError), (index, error)
        assert isinstance(error, TimeoutError)
        assert isinstance(error, PyarallelError)
        assert error.index == index
        assert f"item {index}" in str(error)
        assert error.timeout == timeout


def _read_until(stream, wanted: set[str], limit: float = 60.0) -> list[str]:
    """Read lines from ``stream`` until every line in ``wanted`` was seen; return all lines."""
    lines: list[str] = []
    deadline = time.monotonic() + limit
    while not wanted <= {line.split(" pid=")[0] for line in lines}:
        assert time.monotonic() < deadline, f"markers not seen: {lines}"
        line = stream.readline()
        assert line, f"the script ended before printing its markers: {lines}"
        lines.append(line.strip())
    return lines


# -- the total timeout on threads --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_timeout_returns_promptly_and_accounts_for_every_item() -> None:
    gate = Gate()
    stuck = {1, 4}

    def item(x: int) -> int:
        gate.enter(x)
        if x in stuck:
            gate.block()
        return x * 10

    progress: list[tuple[int, int]] = []
    timeout = 1.0
    started = time.monotonic()
    try:
        result = parallel_map(
            item, range(7), workers=2, timeout=timeout, on_progress=lambda d, t: progress.append((d, t))
        )
        elapsed = time.monotonic() - started
    finally:
        gate.open_and_join()

    assert elapsed >= timeout * 0.95
    assert elapsed < timeout + 2.0, f"returned {elapsed - timeout:.2f} s after the deadline"
    assert len(result) == 7
    assert not result.ok
    # Finished items keep their values; the stuck ones and those never started time out.
    assert result.successes() == [(0, 0), (2, 20), (3, 30)]
    _assert_timeouts(result, [1, 4, 5, 6], timeout)
    # Every item was reported exactly once: one progress call per item, ending at 7 of 7.
    assert [done for done, _ in progress] == list(range(1, 8))
    assert {total for _, total in progress} == {7}
    # Items 5 and 6 were still waiting when the call returned: they never started.
    assert sorted(gate.started) == [0, 1, 2, 3, 4]


class CountingSequence:
    """A sized input that records how many items were taken from it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.taken = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[int]:
        for index in range(self._size):
            self.taken += 1
            yield index


@pytest.mark.timeout(60)
def test_timeout_with_batch_size_marks_untaken_items_of_a_sized_input() -> None:
    gate = Gate()

    def item(x: int) -> int:
        gate.enter(x)
        if x != 0:
            gate.block()
        return x

    source = CountingSequence(20)
    timeout = 0.5
    started = time.monotonic()
    try:
        result = parallel_map(item, source, workers=2, batch_size=3, timeout=timeout)
        elapsed = time.monotonic() - started
    finally:
        gate.open_and_join()

    assert elapsed < timeout + 2.0
    assert source.taken <= 4, "more than batch_size items were taken ahead of completion"
    assert len(result) == 20
    assert result.successes() == [(0, 0)]
    _assert_timeouts(result, list(range(1, 20)), timeout)
    assert set(gate.started) <= set(range(source.taken))


@pytest.mark.timeout(60)
def test_queued_items_of_a_callers_pool_never_start_after_a_timeout() -> None:
    gate = Gate()

    def item(x: int) -> int:
        gate.enter(x)
        if x == 0:
            gate.block()
        return x

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            # workers=3 on a one-thread pool: items 1 and 2 wait in the pool's own queue.
            result = parallel_map(item, range(3), executor=pool, workers=3, timeout=0.5)
        finally:
            gate.release.set()
        # The pool runs jobs in order: once this job has run, any queued item that was not
        # cancelled would have started.
        assert pool.submit(lambda: "sentinel").result(timeout=10) == "sentinel"

    _assert_timeouts(result, [0, 1, 2], 0.5)
    assert gate.started == [0]


# -- the total timeout on processes ------------------------------------------------------------


def _slowly(x: int) -> int:
    time.sleep(0.05)
    return x


def _wait_for_release(fifo: str, limit: float = 60.0) -> None:
    """Block (in a worker process) until the test writes a byte to the FIFO ``fifo``: the
    kernel wakes the worker at once, there is no polling delay. The FIFO is opened for
    reading and writing so that it never reports end-of-file."""
    fd = os.open(fifo, os.O_RDWR)
    try:
        ready, _, _ = select.select([fd], [], [], limit)
        if ready:
            os.read(fd, 1)
    finally:
        os.close(fd)


def _release(fifo: Path, count: int) -> None:
    """Wake up to ``count`` workers blocked in ``_wait_for_release``, if any is left."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody holds the FIFO open any more (the workers are gone)
        return
    try:
        os.write(fd, b"x" * count)
    finally:
        os.close(fd)


def _blocked_until_released(directory: str, index: int) -> int:
    """Items 0 and 1 block until released; every item records that it started, with its PID."""
    Path(directory, f"started-{index}").write_text(str(os.getpid()))
    if index < 2:
        _wait_for_release(os.path.join(directory, "release"))
    return index


def _started(directory: Path) -> dict[int, int]:
    """Index -> PID of every item that started."""
    return {int(path.name.split("-")[1]): int(path.read_text()) for path in directory.glob("started-*")}


def _run_blocked_items_into_timeout(directory: Path, timeout: float):
    """Items 0 and 1 block in the two workers, items 2..5 wait; the run times out."""
    os.mkfifo(directory / "release")
    started = time.monotonic()
    result = parallel_starmap(
        _blocked_until_released,
        [(str(directory), i) for i in range(6)],
        executor="process",
        workers=2,
        timeout=timeout,
    )
    return result, time.monotonic() - started


@pytest.mark.timeout(120)
def test_timeout_terminates_process_workers_running_timed_out_items(tmp_path: Path) -> None:
    assert parallel_map(_slowly, range(2), executor="process", workers=2) == [0, 1]  # warm pool
    timeout = 1.0  # the warm workers take items 0 and 1 within milliseconds

    result, elapsed = _run_blocked_items_into_timeout(tmp_path, timeout)

    assert elapsed < timeout + 2.0
    _assert_timeouts(result, list(range(6)), timeout)
    running_pids = {pid for index, pid in _started(tmp_path).items() if index < 2}
    assert len(running_pids) == 2, "both workers should have been running an item"
    assert os.getpid() not in running_pids
    assert _wait_until_gone(running_pids) == set(), "workers running timed-out items are still alive"
    # The next call gets working processes again.
    assert parallel_map(_slowly, range(4), executor="process", workers=2) == [0, 1, 2, 3]


class SlowKill:
    """Makes loky's manager thread slow to kill workers, as on a loaded machine: a profile
    hook (set for threads started from now on) holds it at ``kill_workers`` until
    ``proceed`` is set or 10 s pass. Nothing in pyarallel or loky is replaced."""

    def __init__(self) -> None:
        self.proceed = threading.Event()
        self.fired = False

    def hook(self, frame, event, arg):
        if (
            event == "call"
            and frame.f_code.co_name == "kill_workers"
            and frame.f_code.co_filename.endswith(os.path.join("loky", "process_executor.py"))
        ):
            self.fired = True
            self.proceed.wait(10)


def _wait_for_files(paths: list[Path], limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not any(path.exists() for path in paths) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.timeout(120)
def test_timeout_leaves_no_queued_process_item_to_start_later(tmp_path: Path) -> None:
    import loky

    slow_kill = SlowKill()
    # A fresh pool, so that its manager thread starts after the hook is set.
    loky.get_reusable_executor(max_workers=2).shutdown(wait=True)
    threading.setprofile(slow_kill.hook)
    try:
        assert parallel_map(_slowly, range(2), executor="process", workers=2) == [0, 1]
    finally:
        threading.setprofile(None)
    try:
        _run_blocked_items_into_timeout(tmp_path, 3.0)
        if not slow_kill.fired:  # known now: spare the wait for items that must not start
            pytest.skip("loky no longer kills workers in kill_workers: the slow kill cannot be simulated")
        # The call has returned: the running items finish now; a worker still alive would
        # then take a queued item.
        _release(tmp_path / "release", 2)
        _wait_for_files([tmp_path / "started-2", tmp_path / "started-3"])
    finally:
        slow_kill.proceed.set()
    running_pids = {pid for index, pid in _started(tmp_path).items() if index < 2}
    if len(running_pids) != 2 or _wait_until_gone(running_pids):
        pytest.fail("precondition: two workers ran items 0 and 1 and are gone in the end")
    if not slow_kill.fired:
        pytest.skip("loky no longer kills workers in kill_workers: the slow kill cannot be simulated")
    assert sorted(_started(tmp_path)) == [0, 1], "queued items started after the call returned"


STUCK_THREAD_SCRIPT = """
import time

from pyarallel import parallel_map

result = parallel_map(time.sleep, [60], timeout=0.5)
[(index, error)] = result.failures()
print("TIMED OUT", index, type(error).__name__, flush=True)
"""


@pytest.mark.timeout(60)
def test_interpreter_exits_normally_with_a_timed_out_thread_item_still_running(tmp_path: Path) -> None:
    script = tmp_path / "stuck_thread.py"
    script.write_text(STUCK_THREAD_SCRIPT)
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=30
    )
    elapsed = time.monotonic() - started

    assert completed.returncode == 0, completed.stderr
    assert "TIMED OUT 0 ItemTimeoutError" in completed.stdout
    assert elapsed < 10, f"the interpreter took {elapsed:.1f} s to exit"


# -- Ctrl-C ------------------------------------------------------------------------------------

THREAD_INTERRUPT_SCRIPT = """
import json
import sys
import threading

from pyarallel import parallel_map

release = threading.Event()
lock = threading.Lock()
started = []
pool_threads = set()


def work(i):
    with lock:
        started.append(i)
        pool_threads.add(threading.current_thread())
        if i in (1, 2):
            # Item 2 starts in the thread item 0 freed: by then both pool threads exist.
            print(f"RUNNING {i}", flush=True)
    if i in (1, 2):
        release.wait(60)
    return i


try:
    parallel_map(work, range(20), workers=2)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    # Let the running items finish: a queued item would now start in a freed thread. The pool
    # threads exit once the pool is shut down; after that nothing can start.
    release.set()
    for thread in pool_threads:
        thread.join(10)
    print(json.dumps({
        "started": sorted(started),
        "pool_threads_alive": sum(thread.is_alive() for thread in pool_threads),
    }), flush=True)
    sys.exit(0)
print("NOT INTERRUPTED", flush=True)
sys.exit(1)
"""

PROCESS_INTERRUPT_SCRIPT = """
import os
import select
import sys
import threading
import time

from pyarallel import parallel_map

DIRECTORY = sys.argv[1]
RELEASE = os.path.join(DIRECTORY, "release")  # a FIFO: readers wake as soon as a byte comes
kill_may_proceed = threading.Event()
WATCH_SECONDS = 1  # a live worker takes a queued item within ms (25 ms beside a CPU hog)
# Longer than the main thread's watch below: were the call to return without waiting for
# the kill, the kill would still be held while it watches. A call that waits for the kill
# (as it must) is held this long, for nothing can set the event meanwhile.
SLOW_KILL_SECONDS = WATCH_SECONDS + 1


def slow_kill(frame, event, arg):
    # With --slow-kill: loky's manager thread is slow to kill the workers (a loaded machine)
    # until a queued item has had the chance to start.
    if (
        event == "call"
        and frame.f_code.co_name == "kill_workers"
        and frame.f_code.co_filename.endswith(os.path.join("loky", "process_executor.py"))
    ):
        os.write(1, b"SLOW KILL\\n")
        kill_may_proceed.wait(SLOW_KILL_SECONDS)


submitted = []


def count_submits(frame, event, arg):
    # With --slow-kill: say when items 0..3 have all been handed to loky (2 run, 2 queued).
    if (
        event == "return"
        and frame.f_code.co_name == "submit"
        and frame.f_code.co_filename.endswith(os.path.join("loky", "process_executor.py"))
    ):
        submitted.append(arg)
        if len(submitted) == 4:
            os.write(1, b"QUEUED 4\\n")


def work(i):
    open(os.path.join(DIRECTORY, f"started-{i}"), "w").close()
    if i < 2:
        fd = os.open(RELEASE, os.O_RDWR)  # before saying it runs: a release cannot be missed
        os.write(1, f"RUNNING {i} pid={os.getpid()}\\n".encode())  # one write: no interleaving
        if select.select([fd], [], [], 60)[0]:
            os.read(fd, 1)
        os.close(fd)
    return i


if __name__ == "__main__":
    if "--slow-kill" in sys.argv:
        threading.setprofile(slow_kill)
        sys.setprofile(count_submits)
    try:
        parallel_map(work, range(20), executor="process", workers=2)
    except KeyboardInterrupt:
        os.write(1, b"INTERRUPTED\\n")
        # Release the running items: a worker still alive would now finish its item and
        # take a queued one.
        try:
            fd = os.open(RELEASE, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # nobody holds the FIFO open: the workers are gone
            pass
        else:
            os.write(fd, b"xx")
            os.close(fd)
        queued = [os.path.join(DIRECTORY, f"started-{i}") for i in (2, 3)]
        deadline = time.monotonic() + WATCH_SECONDS
        while "--slow-kill" in sys.argv and time.monotonic() < deadline:
            if any(os.path.exists(path) for path in queued):
                break
            time.sleep(0.01)
        kill_may_proceed.set()
        sys.exit(0)
    print("NOT INTERRUPTED", flush=True)
    sys.exit(1)
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(script: Path, markers: set[str], *args: str) -> SimpleNamespace:
    """Run ``script``, send it SIGINT once it printed every line in ``markers``, and wait
    for it to exit."""
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background commands with SIGINT ignored, and
        # Python then never raises KeyboardInterrupt: give the child the default action
        # (one signal() call between fork and exec takes no lock another thread may hold).
        preexec_fn=_default_sigint,  # noqa: PLW1509
    )
    try:
        seen = _read_until(process.stdout, markers)
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        stdout, stderr = process.communicate(timeout=30)
        elapsed = time.monotonic() - interrupted
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return SimpleNamespace(
        markers=seen,
        stdout=stdout.strip().splitlines(),
        stderr=stderr,
        returncode=process.returncode,
        elapsed=elapsed,
    )


@pytest.mark.timeout(90)
def test_ctrl_c_stops_a_thread_run_promptly(tmp_path: Path) -> None:
    script = tmp_path / "interrupt_threads.py"
    script.write_text(THREAD_INTERRUPT_SCRIPT)

    run = _interrupt(script, {"RUNNING 1", "RUNNING 2"})

    assert run.returncode == 0, run.stderr
    assert run.elapsed < 10, f"took {run.elapsed:.1f} s to stop after SIGINT"
    assert run.stdout[0] == "INTERRUPTED"
    report = json.loads(run.stdout[-1])
    assert report["pool_threads_alive"] == 0, "the pool threads were not shut down"
    assert report["started"] == [0, 1, 2], "queued items started after the interrupt"


def _interrupt_process_run(directory: Path, *options: str) -> SimpleNamespace:
    os.mkfifo(directory / "release")
    script = directory / "interrupt_processes.py"
    script.write_text(PROCESS_INTERRUPT_SCRIPT)
    markers = {"RUNNING 0", "RUNNING 1"} | ({"QUEUED 4"} if "--slow-kill" in options else set())
    run = _interrupt(script, markers, str(directory), *options)
    run.worker_pids = {int(line.split("pid=")[1]) for line in run.markers if line.startswith("RUNNING")}
    run.still_alive = _wait_until_gone(run.worker_pids)
    run.started = sorted(int(path.name.split("-")[1]) for path in directory.glob("started-*"))
    return run


@pytest.mark.timeout(120)
def test_ctrl_c_stops_a_process_run_promptly(tmp_path: Path) -> None:
    run = _interrupt_process_run(tmp_path)

    assert run.returncode == 0, run.stderr
    assert run.elapsed < 10, f"took {run.elapsed:.1f} s to stop after SIGINT"
    assert run.stdout[0] == "INTERRUPTED"
    assert len(run.worker_pids) == 2
    assert run.still_alive == set(), "workers kept running after the interrupt"


@pytest.mark.timeout(120)
def test_ctrl_c_leaves_no_queued_process_item_to_start_later(tmp_path: Path) -> None:
    run = _interrupt_process_run(tmp_path, "--slow-kill")

    if run.returncode != 0 or "INTERRUPTED" not in "".join(run.stdout) or run.still_alive:
        pytest.fail(f"precondition: the script was interrupted and its workers are gone: {run}")
    if "SLOW KILL" not in "".join(run.stdout):
        pytest.skip("loky no longer kills workers in kill_workers: the slow kill cannot be simulated")
    assert run.started == [0, 1], "queued items started after the interrupt"


THREAD_LEAK_SCRIPT = """
import json
import sys
import threading

from pyarallel import parallel_map


def ctrl_c_as_a_pool_thread_starts(frame, event, arg):
    # Ctrl-C can arrive at any point; make it arrive as Thread.start() returns for the
    # first pool thread (a profile hook raising KeyboardInterrupt there).
    if (
        event == "return"
        and frame.f_code.co_name == "start"
        and frame.f_code.co_filename == threading.__file__
        and frame.f_locals["self"].name.startswith("pyarallel-thread")
    ):
        sys.setprofile(None)
        raise KeyboardInterrupt


sys.setprofile(ctrl_c_as_a_pool_thread_starts)
try:
    parallel_map(abs, range(6), workers=2)
    print("NOT INTERRUPTED", flush=True)
except KeyboardInterrupt:
    sys.setprofile(None)
    pool_threads = [t for t in threading.enumerate() if t.name.startswith("pyarallel-thread")]
    for thread in pool_threads:
        thread.join(2)
    print(json.dumps({"alive": [t.name for t in pool_threads if t.is_alive()]}), flush=True)
"""


@pytest.mark.timeout(60)
def test_ctrl_c_while_a_pool_thread_starts_leaves_no_thread_behind(tmp_path: Path) -> None:
    script = tmp_path / "thread_leak.py"
    script.write_text(THREAD_LEAK_SCRIPT)
    completed = subprocess.run(
        [sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=30
    )
    if "NOT INTERRUPTED" in completed.stdout:
        pytest.skip("the profile hook could not simulate Ctrl-C on this Python version")
    if completed.returncode != 0:
        pytest.fail(f"the script failed: {completed.stderr}")
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"alive": []}


# -- closing a stream early --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_closing_parallel_iter_early_cancels_queued_work() -> None:
    gate = Gate()
    taken: list[int] = []

    def source() -> Iterator[int]:
        for index in range(100):
            taken.append(index)
            yield index

    def item(x: int) -> int:
        gate.enter(x)
        if x != 0:
            gate.block()
        return x

    stream = parallel_iter(item, source(), workers=2, batch_size=4)
    try:
        first = next(stream)
        stream.close()
    finally:
        gate.open_and_join()

    assert (first.index, first.ok, first.value) == (0, True, 0)
    assert max(taken) <= 3, "items beyond the batch_size window were taken"
    started = set(gate.started)
    # Items 0 and 1 started with the run; item 2 may have started in the thread item 0
    # freed before the stream was closed; item 3 was queued and must never start.
    assert {0, 1} <= started <= {0, 1, 2}
    with pytest.raises(StopIteration):
        next(stream)
