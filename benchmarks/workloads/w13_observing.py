"""W13: what watching a run costs on trivial items (``x + 1``), 50,000 of them on 4 threads.

overhead per item = (wall time of ``parallel_map(..., workers=4)`` - time of a plain serial
loop) / items, as in W1, for three contenders, each in its own child:

- the reference: the call as it is (no bar; the ``pyarallel`` logger unconfigured, so no
  ``RunLogger`` is attached; the statistics every run gathers are included);
- ``progress=``: the same call drawing a real ``tqdm`` bar on ``os.devnull``
  (``progress=functools.partial(tqdm, file=devnull)``; its final count is checked);
- logger at INFO: the same call with a real ``logging.StreamHandler`` on a ``StringIO``
  attached to the ``pyarallel`` logger at INFO (the run's summary record is checked).

Target: each watched call's overhead at most 1.3 x the reference's, **measured in the same
child**: after warming the call up (imports, the pool, tqdm), every child alternates
``rounds`` reference calls with ``rounds`` watched ones and reports the median overhead
of each series; the judged "in-child ratio" is watched / reference. The reference's own
child compares two reference series, so its row shows the noise floor. The usual
``vs base`` column (a subject child's median over the reference child's) is shown too but
not judged: on a shared 2-core machine the overhead (~0.5 us/item, ~25 ms per call) varies
by +/-30% from one interpreter to the next, more than the 30% being measured.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from measure import expect_equal, timed
from model import Contender, Measurement, Metric, Params, Role, RunFn, Target, TargetContext, Workload

from workloads.tasks import increment

REFERENCE = "parallel_map (no bar, no log)"
PROGRESS = "pyarallel progress=tqdm"
LOGGING = "pyarallel logger at INFO"
TARGET_RATIO = 1.3

Setup = Callable[[], Any]  # a context manager factory: what is watching the call, if anything


@contextmanager
def _unwatched() -> Iterator[dict[str, Any]]:
    yield {}


@contextmanager
def _with_bar() -> Iterator[dict[str, Any]]:
    from tqdm import tqdm

    with open(os.devnull, "w") as devnull:
        bars: list[Any] = []
        make = functools.partial(tqdm, file=devnull)

        def factory(**kwargs: Any) -> Any:
            bars.append(make(**kwargs))
            return bars[-1]

        yield {"progress": factory, "bars": bars}


@contextmanager
def _with_logger() -> Iterator[dict[str, Any]]:
    logger = logging.getLogger("pyarallel")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield {"stream": stream}
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


SETUPS: dict[str, Setup] = {REFERENCE: _unwatched, PROGRESS: _with_bar, LOGGING: _with_logger}


def _one_call(items: list[int], workers: int, setup: Setup) -> tuple[float, float]:
    """One watched (or not) call: (wall seconds, serial-loop seconds measured just before)."""
    from pyarallel import parallel_map

    _, serial_s = timed(lambda: [increment(x) for x in items])
    with setup() as watching:
        result, seconds = timed(
            lambda: parallel_map(increment, items, workers=workers, progress=watching.get("progress", False))
        )
        if "bars" in watching:
            expect_equal("the bar's final count", watching["bars"][-1].n, len(items))
        if "stream" in watching:
            expect_equal("summary lines logged", watching["stream"].getvalue().count("completed in"), 1)
    expect_equal("sum of results", sum(result.values()), sum(items) + len(items))
    return seconds, serial_s


def measure(setup: Setup) -> RunFn:
    def run(variant: str, params: Params) -> Measurement:
        n, workers, rounds = params["items"], params["workers"], params["rounds"]
        items = list(range(n))
        _one_call(items[:1000], workers, setup)  # imports, the pool, tqdm
        _one_call(items[:1000], workers, _unwatched)
        plain: list[float] = []
        watched: list[float] = []
        walls: list[float] = []
        for _ in range(rounds):
            for series, current in ((plain, _unwatched), (watched, setup)):
                seconds, serial_s = _one_call(items, workers, current)
                series.append((seconds - serial_s) / n * 1e6)
                if current is setup:
                    walls.append(seconds)
        overhead = statistics.median(watched)
        reference = statistics.median(plain)
        return Measurement(
            {"overhead_us": overhead, "in_child_ratio": overhead / reference if reference > 0 else 0.0},
            {"watched_us": watched, "reference_us": plain, "wall_s": walls},
        )

    return run


def _within_target(value: float, context: TargetContext) -> bool | None:
    return value <= TARGET_RATIO


WORKLOAD = Workload(
    id="W13",
    title="observing a run on trivial items: progress= bar, pyarallel logger at INFO",
    metrics=(
        Metric("overhead_us", "overhead/item", "us"),
        Metric("in_child_ratio", "in-child ratio", "x", ratio=False),
    ),
    contenders=(
        Contender(REFERENCE, measure(_unwatched), Role.BASELINE),
        Contender(PROGRESS, measure(_with_bar), Role.SUBJECT),
        Contender(LOGGING, measure(_with_logger), Role.SUBJECT),
    ),
    targets=(Target("in_child_ratio", f"<= {TARGET_RATIO} x reference (same child)", _within_target),),
    full_params={"items": 50_000, "workers": 4, "rounds": 15, "timeout_s": 180},
    quick_params={"items": 50_000, "workers": 4, "rounds": 7, "timeout_s": 60},
)
