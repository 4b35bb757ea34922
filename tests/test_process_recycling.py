"""``max_tasks_per_worker`` on the "process" executor: no worker process runs more items
than that, grouped or not, and no item is lost or run twice. Real worker processes."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from pyarallel import parallel_map


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
