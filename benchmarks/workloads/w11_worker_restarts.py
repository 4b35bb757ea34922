"""W11: what a dead worker costs on processes: 1,000 tiny items, 2 workers, warm pool.

Each child warms its pool up, then times the same map three times: without incident,
with one item that ends its worker (``os._exit(1)``, variant "crash"), or with one item
that hangs (sleeps ``hang_s``) under a ``task_timeout`` (variant "timeout"), then without
incident again. The metric is the extra seconds the incident costs: the incident run's
wall time minus the mean of the two clean runs (for "timeout", minus ``task_timeout`` as
well, which the item is allowed to run: what is left is killing the worker, replacing it
and running the rest of the items again). Checked: every item but the culprit succeeds,
and the culprit fails with ``WorkerCrashedError`` ("crash") or a ``TimeoutError``
("timeout").

The baseline is pebble's ``ProcessPool``, scheduling one future per item (the only
contender with per-task crash isolation and timeouts; ``concurrent.futures`` breaks the
whole pool on a crash and cannot stop a running task).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from measure import expect_equal, timed, user_imports
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload

from workloads.pools import PYARALLEL_DEFERRED
from workloads.tasks import increment, nap

BASELINE = "pebble ProcessPool"


def crash_at(culprit: int, x: int) -> int:
    """The "crash" item: ``culprit`` ends its worker process."""
    if x == culprit:
        os._exit(1)
    return x + 1


def hang_at(culprit: int, seconds: float, x: int) -> int:
    """The "timeout" item: ``culprit`` sleeps ``seconds`` (far beyond the timeout)."""
    if x == culprit:
        time.sleep(seconds)
    return x + 1


Outcomes = list[tuple[int, Any]]
MapFn = Callable[[Callable[[int], int], Sequence[int], float | None], Outcomes]
"""``map(fn, items, task_timeout)``: one ``(index, value or exception)`` per item."""


@dataclass(frozen=True, slots=True)
class Pool:
    """One library's way to map with per-item failures: ``map``, ``close``, and the
    exception it reports for an item whose worker died."""

    map: MapFn
    close: Callable[[], None]
    crash_error: type[BaseException]


def _measure(open_pool: Callable[[int], Pool], imports: tuple[str, ...]) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        user_imports(*imports)
        items = list(range(params["items"]))
        culprit = params["culprit"]
        timeout = params["task_timeout_s"] if variant == "timeout" else None
        incident = (
            partial(crash_at, culprit) if variant == "crash" else partial(hang_at, culprit, params["hang_s"])
        )
        pool = open_pool(params["workers"])
        try:
            pool.map(nap, range(2 * params["workers"]), None)  # a warm pool: the restart is timed
            clean, clean_before = timed(lambda: pool.map(increment, items, timeout))
            outcome, incident_s = timed(lambda: pool.map(incident, items, timeout))
            _, clean_after = timed(lambda: pool.map(increment, items, timeout))
        finally:
            pool.close()
        expect_equal("clean results", clean, [(x, x + 1) for x in items])
        failures = [(index, value) for index, value in outcome if isinstance(value, BaseException)]
        expect_equal("failed items", [index for index, _ in failures], [culprit])
        expected = TimeoutError if variant == "timeout" else pool.crash_error
        if not isinstance(failures[0][1], expected):
            raise AssertionError(f"item {culprit} failed with {failures[0][1]!r}, not {expected.__name__}")
        others = [pair for pair in outcome if pair[0] != culprit]
        expect_equal("other results", others, [(x, x + 1) for x in items if x != culprit])
        clean_s = (clean_before + clean_after) / 2
        return Measurement(
            {"extra_s": incident_s - clean_s - (timeout or 0.0)},
            {"clean_before_s": clean_before, "clean_after_s": clean_after, "incident_s": incident_s},
        )

    return run


def _open_pebble(workers: int) -> Pool:
    from pebble import ProcessExpired, ProcessPool

    pool = ProcessPool(max_workers=workers)

    def map_items(fn: Callable[[int], int], items: Sequence[int], timeout: float | None) -> Outcomes:
        futures = [pool.schedule(fn, (x,), timeout=timeout) for x in items]
        outcomes: list[tuple[int, Any]] = []
        for index, future in enumerate(futures):
            try:
                outcomes.append((index, future.result()))
            except Exception as error:
                outcomes.append((index, error))
        return outcomes

    def close() -> None:
        pool.close()
        pool.join()

    return Pool(map_items, close, ProcessExpired)


def _open_pyarallel(workers: int) -> Pool:
    from pyarallel import WorkerCrashedError, parallel_map

    def map_items(fn: Callable[[int], int], items: Sequence[int], timeout: float | None) -> Outcomes:
        result = parallel_map(fn, items, executor="process", workers=workers, task_timeout=timeout)
        outcomes = dict(result.successes())
        outcomes.update(result.failures())
        return sorted(outcomes.items())

    return Pool(map_items, lambda: None, WorkerCrashedError)


PYARALLEL_IMPORTS = ("pyarallel:parallel_map", *PYARALLEL_DEFERRED)


def _within_a_second(value: float, context: TargetContext) -> bool:
    return value <= 1.0


def _within_half_a_second(value: float, context: TargetContext) -> bool:
    return value <= 0.5


WORKLOAD = Workload(
    id="W11",
    title="a worker that crashes or overruns its task_timeout, on processes",
    variants=("crash", "timeout"),
    metrics=(Metric("extra_s", "extra seconds for the incident", "s"),),
    contenders=(
        Contender(BASELINE, _measure(_open_pebble, ("pebble:ProcessPool",)), Role.BASELINE),
        Contender("pyarallel", _measure(_open_pyarallel, PYARALLEL_IMPORTS), Role.SUBJECT),
    ),
    targets=(
        Target("extra_s", "<= 1.0 s", _within_a_second, variants=("crash",)),
        Target("extra_s", "<= 0.5 s", _within_half_a_second, variants=("timeout",)),
    ),
    full_params={
        "items": 1000,
        "culprit": 500,
        "task_timeout_s": 0.5,
        "hang_s": 60.0,
        "workers": 2,
        "timeout_s": 120,
    },
    quick_params={
        "items": 1000,
        "culprit": 500,
        "task_timeout_s": 0.5,
        "hang_s": 60.0,
        "workers": 2,
        "timeout_s": 60,
    },
)
