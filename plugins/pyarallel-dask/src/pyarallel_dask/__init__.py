"""pyarallel-dask: run pyarallel's ``parallel_map`` & co. on a Dask distributed cluster.

Installing the package is all it takes: pyarallel finds the plugin through its entry
points, and then ``executor="dask"`` (the current default ``distributed.Client``, else the
scheduler at ``$PYARALLEL_DASK_ADDRESS``, else a ``LocalCluster`` started on first use) or
``executor=client`` (a ``distributed.Client`` of yours, never closed by pyarallel) runs
the items on the cluster. Rate limiting, retries, timeouts, the input window and progress
stay with pyarallel, in the calling process. See the README for the details.

``import pyarallel_dask`` imports neither ``distributed`` nor ``dask``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyarallel_dask._backend import DaskBackend
    from pyarallel_dask._clients import owned_cluster

__version__ = "0.1.0"
__all__ = ["ADDRESS_ENV", "DaskBackend", "__version__", "owned_cluster"]

ADDRESS_ENV = "PYARALLEL_DASK_ADDRESS"
"""The environment variable naming the scheduler ``executor="dask"`` connects to when no
default client exists, e.g. ``tcp://10.0.0.5:8786``."""

_HOMES = {"DaskBackend": "pyarallel_dask._backend", "owned_cluster": "pyarallel_dask._clients"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pyarallel_dask' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
