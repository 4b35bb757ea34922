"""pyarallel: fan a function out over many items on threads, processes or an event loop,
with rate limiting, per-item retry, timeouts, progress and structured results.

The whole public API is re-exported here; plugin authors also use
:mod:`pyarallel.hookspecs` and :mod:`pyarallel.contracts`.

Names are loaded on first access, so ``import pyarallel`` costs almost nothing and the
process machinery (loky, cloudpickle) and asyncio are imported only when used.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would double the import time
if TYPE_CHECKING:
    from typing import Any

    from pyarallel._api import parallel_iter, parallel_map, parallel_starmap
    from pyarallel._async_api import async_parallel_iter, async_parallel_map, async_parallel_starmap
    from pyarallel._async_decorator import AsyncParallelClassMethod, AsyncParallelFunction, async_parallel
    from pyarallel._async_stream import AsyncResultStream
    from pyarallel._checkpoint.failure import RecordedFailure
    from pyarallel._checkpoint.spec import Checkpoint
    from pyarallel._decorator import ParallelClassMethod, ParallelFunction, parallel
    from pyarallel._errors import (
        CheckpointError,
        IncompleteRunError,
        ItemAbortedError,
        ItemCancelledError,
        ItemError,
        ItemTimeoutError,
        PyarallelError,
        RateLimitCostError,
        SerializationError,
        TaskTimeoutError,
        WorkerCrashedError,
        WorkerInitError,
    )
    from pyarallel._lifecycle import shutdown, warm_up
    from pyarallel._limiting import Limiter
    from pyarallel._options import RateLimit, Retry
    from pyarallel._plugins import PluginInfo, list_plugins, register_plugin, unregister_plugin
    from pyarallel._result import ItemResult, ParallelResult, RunStatus
    from pyarallel._stats import RunStats
    from pyarallel._stopping import StopToken, stop_on_signals
    from pyarallel.hookspecs import hookimpl

__version__ = "0.1.0"

_HOMES = {
    "parallel_map": "pyarallel._api",
    "parallel_starmap": "pyarallel._api",
    "parallel_iter": "pyarallel._api",
    "async_parallel_map": "pyarallel._async_api",
    "async_parallel_starmap": "pyarallel._async_api",
    "async_parallel_iter": "pyarallel._async_api",
    "parallel": "pyarallel._decorator",
    "ParallelFunction": "pyarallel._decorator",
    "ParallelClassMethod": "pyarallel._decorator",
    "async_parallel": "pyarallel._async_decorator",
    "AsyncParallelFunction": "pyarallel._async_decorator",
    "AsyncParallelClassMethod": "pyarallel._async_decorator",
    "AsyncResultStream": "pyarallel._async_stream",
    "Checkpoint": "pyarallel._checkpoint.spec",
    "RecordedFailure": "pyarallel._checkpoint.failure",
    "CheckpointError": "pyarallel._errors",
    "IncompleteRunError": "pyarallel._errors",
    "ItemAbortedError": "pyarallel._errors",
    "ItemCancelledError": "pyarallel._errors",
    "ItemError": "pyarallel._errors",
    "ItemTimeoutError": "pyarallel._errors",
    "PyarallelError": "pyarallel._errors",
    "RateLimitCostError": "pyarallel._errors",
    "Limiter": "pyarallel._limiting",
    "SerializationError": "pyarallel._errors",
    "TaskTimeoutError": "pyarallel._errors",
    "WorkerCrashedError": "pyarallel._errors",
    "WorkerInitError": "pyarallel._errors",
    "StopToken": "pyarallel._stopping",
    "stop_on_signals": "pyarallel._stopping",
    "shutdown": "pyarallel._lifecycle",
    "warm_up": "pyarallel._lifecycle",
    "RateLimit": "pyarallel._options",
    "Retry": "pyarallel._options",
    "PluginInfo": "pyarallel._plugins",
    "list_plugins": "pyarallel._plugins",
    "register_plugin": "pyarallel._plugins",
    "unregister_plugin": "pyarallel._plugins",
    "ItemResult": "pyarallel._result",
    "ParallelResult": "pyarallel._result",
    "RunStatus": "pyarallel._result",
    "RunStats": "pyarallel._stats",
    "hookimpl": "pyarallel.hookspecs",
}

__all__ = [
    "AsyncParallelClassMethod",
    "AsyncParallelFunction",
    "AsyncResultStream",
    "Checkpoint",
    "CheckpointError",
    "IncompleteRunError",
    "ItemAbortedError",
    "ItemCancelledError",
    "ItemError",
    "ItemResult",
    "ItemTimeoutError",
    "Limiter",
    "ParallelClassMethod",
    "ParallelFunction",
    "ParallelResult",
    "PluginInfo",
    "PyarallelError",
    "RateLimit",
    "RateLimitCostError",
    "RecordedFailure",
    "Retry",
    "RunStats",
    "RunStatus",
    "SerializationError",
    "StopToken",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "WorkerInitError",
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
    "shutdown",
    "stop_on_signals",
    "unregister_plugin",
    "warm_up",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pyarallel' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
