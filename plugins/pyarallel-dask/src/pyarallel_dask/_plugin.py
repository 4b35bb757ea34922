"""The plugin pyarallel finds through the ``pyarallel`` entry-point group: it answers
``executor="dask"`` and ``executor=<a distributed.Client>``.

Importing it costs nothing: ``distributed`` is imported only when a run uses Dask (an
object can be a ``distributed.Client`` only once ``distributed`` has been imported).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyarallel import hookimpl

if TYPE_CHECKING:
    from pyarallel_dask._backend import DaskBackend

__all__ = ["pyarallel_executor", "pyarallel_executor_names"]


@hookimpl
def pyarallel_executor_names() -> Sequence[str]:
    return ("dask",)


@hookimpl
def pyarallel_executor(executor: object, workers: int | None, total: int | None) -> DaskBackend | None:
    if isinstance(executor, str):
        if executor != "dask":
            return None
        from pyarallel_dask._backend import DaskBackend

        return DaskBackend(None, workers, total)
    distributed = sys.modules.get("distributed")
    if distributed is None or not isinstance(executor, distributed.Client):
        return None
    from pyarallel_dask._backend import DaskBackend

    return DaskBackend(executor, workers, total)
