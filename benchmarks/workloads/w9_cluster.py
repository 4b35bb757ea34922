"""W9: pyarallel on a Dask cluster (the ``pyarallel-dask`` plugin) against Dask's own API.

Every child starts one ``LocalCluster`` of 2 single-threaded worker processes (the
scheduler in the child's process, as ``LocalCluster`` does) and warms it up with a map of
its own kind (one ``nap`` item per worker and as many again) before the clock starts;
the cluster's start and shutdown are never timed. Three cases:

- "tiny": 10,000 ``x * x`` items; items/s. ``client.map`` + ``client.gather`` make one
  Dask task per item, pyarallel groups them into tasks of ~50 ms.
- "cpu": 32 items of ~50 ms of pure-Python CPU (the loop count calibrated once in the
  parent, as in W4); speed-up = the serial loop's time (timed before and after the
  parallel map in the same child, the mean used) / the parallel map's time.
- "rate": 300 calls at 100 calls/s; each call returns ``time.time()`` as it starts on
  its worker; achieved rate = (calls - 1) / (last start - first start), and the most
  starts in any 100 ms window. The baseline sleeps until ``t0 + i / rate`` before each
  ``client.submit`` (an open loop: it never waits for a result).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from measure import expect_equal, max_in_window, timed, user_imports
from model import Contender, Measurement, Metric, Params, Role, Target, TargetContext, Workload

from workloads.pools import PYARALLEL_DEFERRED
from workloads.tasks import burn, nap, square

BASELINE = "client.map"
SUBJECT = "pyarallel[dask]"
PROBE_LOOPS = 200_000
IMPORTS = ("distributed:Client", "distributed:LocalCluster", "pyarallel:parallel_map", *PYARALLEL_DEFERRED)


def started_at(x: int) -> float:
    """The "rate" item: when it started, on the worker's clock (the same machine's)."""
    return time.time()


def calibrate(params: Params) -> Params:
    """Set ``loops`` so that ``burn(loops)`` takes about ``item_s`` (best of 3 probes)."""
    if "loops" not in params:
        best = min(timed(lambda: burn(PROBE_LOOPS))[1] for _ in range(3))
        params["loops"] = max(1, round(PROBE_LOOPS * params["item_s"] / best))
        params["calibrated_at"] = time.time()
    return params


@contextlib.contextmanager
def _cluster(params: Params) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=params["workers"], threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster, set_as_default=False)
    try:
        client.wait_for_workers(params["workers"], timeout=60)
        yield client
    finally:
        client.close()
        cluster.close()


MapFn = Callable[[Any, Callable[[Any], Any], list[Any]], list[Any]]


def _client_map(client: Any, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    return list(client.gather(client.map(fn, items, pure=False)))


def _pyarallel_map(client: Any, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    from pyarallel import parallel_map

    return list(parallel_map(fn, items, executor=client))


def _paced_client(client: Any, params: Params) -> list[float]:
    rate = params["rate"]
    futures = []
    t0 = time.perf_counter()
    for i in range(params["calls"]):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        futures.append(client.submit(started_at, i, pure=False))
    return list(client.gather(futures))


def _paced_pyarallel(client: Any, params: Params) -> list[float]:
    from pyarallel import parallel_map

    return list(parallel_map(started_at, range(params["calls"]), executor=client, rate_limit=params["rate"]))


PacedFn = Callable[[Any, Params], list[float]]


def measure(map_fn: MapFn, paced: PacedFn) -> Callable[[str, Params], Measurement]:
    def run(variant: str, params: Params) -> Measurement:
        user_imports(*IMPORTS)
        with _cluster(params) as client:
            map_fn(client, nap, list(range(2 * params["workers"])))  # warm-up, not timed
            if variant == "tiny":
                items = list(range(params["tiny_items"]))
                results, seconds = timed(lambda: map_fn(client, square, items))
                expect_equal("results", results, [x * x for x in items])
                return Measurement({"items_per_s": len(items) / seconds}, {"wall_s": seconds})
            if variant == "cpu":
                items = [params["loops"]] * params["cpu_items"]
                serial, serial_before = timed(lambda: [burn(x) for x in items])
                results, seconds = timed(lambda: map_fn(client, burn, items))
                _, serial_after = timed(lambda: [burn(x) for x in items])
                expect_equal("results", results, serial)
                serial_s = (serial_before + serial_after) / 2
                return Measurement(
                    {"speedup": serial_s / seconds},
                    {"serial_before_s": serial_before, "serial_after_s": serial_after, "parallel_s": seconds},
                )
            starts = sorted(paced(client, params))
            expect_equal("number of calls started", len(starts), params["calls"])
            span = starts[-1] - starts[0]
            return Measurement(
                {
                    "rate": (len(starts) - 1) / span,
                    "max_in_window": float(max_in_window(starts, params["window_s"])),
                },
                {"span_s": span},
            )

    return run


def _thrice_client_map(value: float, context: TargetContext) -> bool | None:
    base = context.median(BASELINE, "items_per_s")
    return None if base is None else value >= 3 * base


def _near_client_map_speedup(value: float, context: TargetContext) -> bool | None:
    base = context.median(BASELINE, "speedup")
    return None if base is None else value >= 0.9 * base


def _rate_within_1pct(value: float, context: TargetContext) -> bool:
    return abs(value / float(context.params["rate"]) - 1) <= 0.01


WORKLOAD = Workload(
    id="W9",
    title="pyarallel on a Dask LocalCluster (2 single-threaded workers) vs client.map",
    variants=("tiny", "cpu", "rate"),
    metrics=(
        Metric("items_per_s", "throughput", "items/s"),
        Metric("speedup", "speed-up vs serial", "x"),
        Metric("rate", "achieved rate", "calls/s", digits=4),
        Metric("max_in_window", "max starts in 100 ms", "", ratio=False),
    ),
    contenders=(
        Contender(BASELINE, measure(_client_map, _paced_client), Role.BASELINE),
        Contender(SUBJECT, measure(_pyarallel_map, _paced_pyarallel), Role.SUBJECT),
    ),
    targets=(
        Target("items_per_s", f">= 3 x {BASELINE}", _thrice_client_map, variants=("tiny",)),
        Target("speedup", f">= 0.9 x {BASELINE}", _near_client_map_speedup, variants=("cpu",)),
        Target("rate", "within 1% of 100/s", _rate_within_1pct, variants=("rate",)),
    ),
    full_params={
        "workers": 2,
        "tiny_items": 10_000,
        "cpu_items": 32,
        "item_s": 0.05,
        "calls": 300,
        "rate": 100,
        "window_s": 0.1,
        "timeout_s": 180,
    },
    quick_params={
        "workers": 2,
        "tiny_items": 2_000,
        "cpu_items": 8,
        "item_s": 0.025,
        "calls": 100,
        "rate": 100,
        "window_s": 0.1,
        "timeout_s": 90,
    },
    prepare=calibrate,
)
