"""The registry of workloads, in the order the suite runs them.

To add a workload, write a module with a ``WORKLOAD`` (see ``model.Workload``) and list it
here. To add a contender (for example pyarallel on another executor), add it to the
workload's ``contenders``: W1-W4 and W6 have a ``pyarallel_contender(executor=..., name=...)``
for exactly that, W5 a ``pyarallel_sync(executor)``.
"""

from __future__ import annotations

from model import Workload

from workloads import (
    w1_overhead,
    w2_sleep,
    w3_tiny_cpu,
    w4_heavy_cpu,
    w5_rate_limit,
    w6_streaming,
    w7_import,
    w8_large_function,
    w9_cluster,
    w10_quotas,
    w11_worker_restarts,
    w12_long_jobs,
    w13_observing,
)

__all__ = ["REGISTRY", "get"]

REGISTRY: dict[str, Workload] = {
    module.WORKLOAD.id: module.WORKLOAD
    for module in (
        w1_overhead,
        w2_sleep,
        w3_tiny_cpu,
        w4_heavy_cpu,
        w5_rate_limit,
        w6_streaming,
        w7_import,
        w8_large_function,
        w9_cluster,
        w10_quotas,
        w11_worker_restarts,
        w12_long_jobs,
        w13_observing,
    )
}


def get(workload_id: str) -> Workload:
    try:
        return REGISTRY[workload_id.upper()]
    except KeyError:
        raise KeyError(f"unknown workload {workload_id!r}; known: {', '.join(REGISTRY)}") from None
