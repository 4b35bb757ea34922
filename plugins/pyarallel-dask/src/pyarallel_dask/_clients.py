"""Which Dask cluster ``executor="dask"`` uses, in this order:

0. inside a Dask task (a task that itself calls ``parallel_map``), the worker's client
   (``distributed.get_client()``): the task's own cluster;
1. the current default ``distributed.Client`` (``Client.current()``: the one made
   current with ``client.as_current()``, else the latest client created with
   ``set_as_default=True``, which is every ``Client(...)`` unless told otherwise);
2. else, when the environment variable ``PYARALLEL_DASK_ADDRESS`` is set, a client
   connected to the scheduler at that address (one per address and process, reused);
3. else a ``LocalCluster`` that pyarallel starts on first use and owns: one per process,
   reused by every later call, closed when the interpreter exits.

The clients made here are never set as the default, so they never change what user code
calling ``distributed.default_client()`` gets.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

from pyarallel_dask import ADDRESS_ENV

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = [
    "ADDRESS_ENV",
    "OWNED_ALLOWED_FAILURES",
    "close_owned",
    "owned_cluster",
    "resolve_client",
]

OWNED_ALLOWED_FAILURES = 1  # the owned cluster's bound on worker deaths per task, minus one
CLOSE_TIMEOUT_SECONDS = 10

_lock = threading.Lock()
_owned: tuple[LocalCluster, Client] | None = None
_connected: dict[str, Client] = {}  # PYARALLEL_DASK_ADDRESS value -> our client
_atexit_registered = False


def resolve_client() -> Client:
    """The client a run of ``executor="dask"`` uses (see the module docstring)."""
    from distributed import default_client, get_client, get_worker

    try:
        get_worker()
    except ValueError:
        pass
    else:  # a Dask task itself fans out: on its own cluster, through the worker's client
        worker_client: Any = get_client
        in_task: Client = worker_client()
        return in_task
    current_client: Any = default_client  # the context's client (as_current), else the default
    try:
        current: Client = current_client()
    except ValueError:
        pass
    else:
        if current.status not in ("closed", "closing"):
            return current
    address = os.environ.get(ADDRESS_ENV, "").strip()
    if address:
        return _connect(address)
    return _owned_client()


def owned_cluster() -> LocalCluster | None:
    """The ``LocalCluster`` pyarallel started in this process, if it has started one."""
    owned = _owned
    return None if owned is None else owned[0]


def close_owned() -> None:
    """Close every client and cluster pyarallel opened in this process (at exit)."""
    global _owned
    with _lock:
        owned, _owned = _owned, None
        connected = list(_connected.values())
        _connected.clear()
    closing: list[Any] = [*connected, *(owned[::-1] if owned is not None else ())]  # client, then cluster
    for resource in closing:
        with contextlib.suppress(Exception):
            resource.close(timeout=CLOSE_TIMEOUT_SECONDS)


def _connect(address: str) -> Client:
    from distributed import Client

    with _lock:
        client = _connected.get(address)
        if client is not None and client.status not in ("closed", "closing"):
            return client
        _register_atexit()
        client = _connected[address] = Client(address, set_as_default=False)  # type: ignore[no-untyped-call]
        return client


def _owned_client() -> Client:
    global _owned
    with _lock:
        if _owned is not None and _owned[1].status not in ("closed", "closing"):
            return _owned[1]
        import dask
        from distributed import Client, LocalCluster

        _register_atexit()
        with dask.config.set(_owned_config()):
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                threads_per_worker=1,  # and one worker process per CPU, as Dask counts them
                processes=True,
                dashboard_address=":0",
            )
        try:
            client = Client(cluster, set_as_default=False)  # type: ignore[no-untyped-call]
        except BaseException:
            cluster.close()
            raise
        _owned = (cluster, client)
        return client


def _owned_config() -> dict[str, Any]:
    """Settings of the owned cluster's scheduler:

    - a task is given up on (``KilledWorker``) once ``OWNED_ALLOWED_FAILURES + 1``
      workers have died while running it, not Dask's default 4, unless the user has
      configured ``distributed.scheduler.allowed-failures`` to something other than the
      default;
    - each single-threaded worker holds only the task it runs (worker-saturation 1.0), so
      a worker's death is blamed on that task alone, never on one merely queued there.
    """
    import dask

    settings: dict[str, Any] = {"distributed.scheduler.worker-saturation": 1.0}
    if dask.config.get("distributed.scheduler.allowed-failures") == 3:  # Dask's default
        settings["distributed.scheduler.allowed-failures"] = OWNED_ALLOWED_FAILURES
    return settings


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(close_owned)
        _atexit_registered = True
