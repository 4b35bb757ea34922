"""pyarallel: fan a function out over many items on threads or processes, with rate
limiting, per-item retry, timeouts, progress and structured results.

The whole public API is re-exported here; plugin authors also use
:mod:`pyarallel.hookspecs` and :mod:`pyarallel.contracts`.
"""

from pyarallel._api import parallel_iter, parallel_map, parallel_starmap
from pyarallel._async_api import async_parallel_iter, async_parallel_map, async_parallel_starmap
from pyarallel._decorator import AsyncParallelFunction, ParallelFunction, async_parallel, parallel
from pyarallel._errors import (
    ItemError,
    ItemTimeoutError,
    PyarallelError,
    SerializationError,
    TaskTimeoutError,
    WorkerCrashedError,
)
from pyarallel._options import RateLimit, Retry
from pyarallel._plugins import PluginInfo, list_plugins, register_plugin, unregister_plugin
from pyarallel._result import ItemResult, ParallelResult
from pyarallel.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "AsyncParallelFunction",
    "ItemError",
    "ItemResult",
    "ItemTimeoutError",
    "ParallelFunction",
    "ParallelResult",
    "PluginInfo",
    "PyarallelError",
    "RateLimit",
    "Retry",
    "SerializationError",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "async_parallel",
    "async_parallel_iter",
    "async_parallel_map",
    "async_parallel_starmap",
    "hookimpl",
    "list_plugins",
    "parallel",
    "parallel_iter",
    "parallel_map",
    "parallel_starmap",
    "register_plugin",
    "unregister_plugin",
]
