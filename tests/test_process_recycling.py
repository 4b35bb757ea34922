"""Worker lifecycle on the "process" executor: with ``max_tasks_per_worker`` no worker
process runs more items than that, grouped or not, and no item is lost or run twice;
``worker_init`` runs once in each worker. Real worker processes."""

from __future__ import annotations

import os
import traceback
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from pyarallel import WorkerInitError, parallel_map


def _pid_of(x: int) -> tuple[int, int]:
    return x, os.getpid()


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("limit", "items"), [(2, 10), (40, 240)])
def test_no_worker_runs_more_items_than_max_tasks_per_worker(limit: int, items: int) -> None:
    result = parallel_map(_pid_of, range(items), executor="process", workers=2, max_tasks_per_worker=limit)
    assert result.ok
    values = result.values()
    assert [x for x, _ in values] == list(range(items))  # each item once, in order
    per_worker = Counter(pid for _, pid in values)
    assert max(per_worker.values()) <= limit, per_worker
    assert len(per_worker) >= -(-items // limit), per_worker  # the workers were replaced
    assert os.getpid() not in per_worker


@pytest.mark.timeout(60)
def test_a_warm_pool_that_ran_items_is_not_reused_past_the_limit() -> None:
    parallel_map(_pid_of, range(20), executor="process", workers=2)  # leaves a warm pool
    warm = {pid for _, pid in parallel_map(_pid_of, range(20), executor="process", workers=2).values()}
    limited = parallel_map(_pid_of, range(6), executor="process", workers=2, max_tasks_per_worker=3)
    per_worker = Counter(pid for _, pid in limited.values())
    assert max(per_worker.values()) <= 3
    assert warm.isdisjoint(per_worker), "workers that had run 20 items each took more"


def _record_init(directory: str) -> None:
    with open(os.path.join(directory, f"init-{os.getpid()}"), "a") as file:
        file.write("x")


def _failing_init() -> None:
    raise RuntimeError("no model file")


@pytest.mark.timeout(60)
def test_worker_init_runs_once_in_each_worker_process_before_its_items(tmp_path: Path) -> None:
    def ran_after_init(x: int) -> tuple[int, bool]:
        return os.getpid(), (tmp_path / f"init-{os.getpid()}").exists()

    result = parallel_map(
        ran_after_init,
        range(200),
        executor="process",
        workers=2,
        worker_init=partial(_record_init, str(tmp_path)),
    )
    pids = {pid for pid, _ in result.values()}
    assert all(initialised for _, initialised in result.values())
    inits = {path.name: path.read_text() for path in tmp_path.iterdir()}
    assert inits == {f"init-{pid}": "x" for pid in pids}  # once per worker, no more


@pytest.mark.timeout(60)
def test_a_failing_worker_init_fails_the_call_with_its_traceback() -> None:
    with pytest.raises(WorkerInitError, match="no model file") as caught:
        parallel_map(abs, range(10), executor="process", workers=2, worker_init=_failing_init)
    assert "_failing_init" in "".join(traceback.format_exception(caught.value))
