"""Fixtures: one real ``LocalCluster`` of two single-threaded worker processes for the
whole session, and a fresh look at it for each test (both workers up again after a test
that killed one, no default client left behind)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import cloudpickle
import dask
import dask_tasks
import pytest
from distributed import Client, LocalCluster

cloudpickle.register_pickle_by_value(dask_tasks)

# Each worker runs one task at a time and holds no other (so a death is blamed on the
# task it ran alone), and a task is given up on once 2 workers died running it.
CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": 1,
    "distributed.scheduler.worker-saturation": 1.0,
}
WORKERS = 2


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    os.environ.pop("PYARALLEL_DASK_ADDRESS", None)
    with dask.config.set(CLUSTER_CONFIG):
        local = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        yield local
    finally:
        local.close()


@pytest.fixture(scope="session")
def session_client(cluster: LocalCluster) -> Iterator[Client]:
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def client(session_client: Client) -> Client:
    session_client.wait_for_workers(WORKERS, timeout=60)
    _no_default_client()
    return session_client


@pytest.fixture
def worker_pids(client: Client) -> dict[str, int]:
    """Worker address -> pid of its process."""
    pids: dict[str, Any] = client.run(os.getpid)
    return pids


def _no_default_client() -> None:
    from distributed import default_client

    try:
        stray = default_client()
    except ValueError:
        return
    raise AssertionError(f"a test left a default client behind: {stray}")
