"""How the process backend judges a broken pool: from what each worker wrote in its task's
slot (its pid; how many items it started; minus its pid once the task was done) and from
whether that worker is still alive. Real slot files in shared memory, real processes that
are alive or dead; only the moment of the break is arranged by hand (loky cannot be made
to break at a chosen instant), by writing the slots as workers would and calling the
backend's judgement.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from pyarallel._builtin import _process_backend
from pyarallel._builtin._process_backend import ProcessBackend, _Task
from pyarallel._builtin._process_pools import process_alive
from pyarallel._errors import TaskLostError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="deaths are told from /proc")


@pytest.fixture
def backend() -> Iterator[ProcessBackend]:
    backend = ProcessBackend(2)
    yield backend
    backend.close(abort=False)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _task(backend: ProcessBackend, pid: int, started: int, *, done: bool = False) -> _Task:
    """A task in flight on the backend's pool whose worker wrote its slot like this."""
    pool = backend._usable_pool()
    slot = pool.slots.acquire()
    assert slot is not None
    view = memoryview(pool.slots._map).cast("q")
    view[2 * slot] = -pid if done else pid
    view[2 * slot + 1] = started
    view.release()
    task = _Task(Future(), pool, slot)
    backend._tasks[Future()] = task
    return task


def _judge(backend: ProcessBackend, *tasks: _Task) -> list[TaskLostError]:
    first, *_ = tasks
    for key, task in list(backend._tasks.items()):
        if task is first:
            del backend._tasks[key]
    backend._judge_break(first.pool, None, first)
    verdicts = [task.lost for task in tasks]
    assert all(verdict is not None for verdict in verdicts)
    backend._tasks.clear()
    return verdicts  # type: ignore[return-value]


def test_the_task_running_in_the_dead_worker_crashed_it(backend: ProcessBackend) -> None:
    dead, alive = _dead_pid(), os.getpid()
    assert process_alive(dead) is False
    assert process_alive(alive) is True
    culprit = _task(backend, dead, started=3)
    bystander = _task(backend, alive, started=1)
    queued = _task(backend, 0, started=0)
    verdicts = _judge(backend, culprit, bystander, queued)
    assert [(v.started, v.finished, v.crashed) for v in verdicts] == [
        (3, False, True),
        (1, False, False),
        (0, False, False),
    ]


def test_a_task_its_worker_finished_before_dying_elsewhere_is_innocent(backend: ProcessBackend) -> None:
    # The worker finished this task (its outcome was lost in the break), took another one
    # and died running that: the other task crashed it, not this one.
    dead = _dead_pid()
    finished = _task(backend, dead, started=1, done=True)
    culprit = _task(backend, dead, started=1)
    verdicts = _judge(backend, finished, culprit)
    assert [(v.started, v.finished, v.crashed) for v in verdicts] == [(1, True, False), (1, False, True)]


def test_without_knowing_who_died_the_running_items_are_only_suspects(
    backend: ProcessBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_process_backend, "process_alive", lambda pid: None)  # as outside Linux
    running = _task(backend, _dead_pid(), started=2)
    finished = _task(backend, os.getpid(), started=4, done=True)
    verdicts = _judge(backend, running, finished)
    assert [(v.started, v.finished, v.crashed) for v in verdicts] == [(2, False, None), (4, True, False)]


def _exit_at(culprits: frozenset[int], x: int) -> int:
    if x in culprits:
        os._exit(1)
    return x


@pytest.mark.timeout(120)
@pytest.mark.parametrize("count", [12, 400])
def test_real_crashes_without_knowing_who_died_still_fail_only_the_culprits(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    # As outside Linux: every item running at a crash becomes a suspect and runs alone,
    # until the culprit kills its worker again. Real workers, real crashes; the 400 fast
    # items put the culprits inside groups.
    from functools import partial

    from pyarallel import WorkerCrashedError, parallel_map

    monkeypatch.setattr(_process_backend, "process_alive", lambda pid: None)
    culprits = frozenset({count // 3, 2 * count // 3})
    result = parallel_map(
        partial(_exit_at, culprits), range(count), executor="process", workers=2, timeout=90
    )
    assert [index for index, _ in result.failures()] == sorted(culprits)
    assert all(isinstance(error, WorkerCrashedError) for _, error in result.failures())
    assert [index for index, _ in result.successes()] == [i for i in range(count) if i not in culprits]
