"""Checkpoints: a run records each finished item as it completes, and a rerun of the same
call skips the items recorded and returns their stored values.

- :class:`Checkpoint` (``spec``): the value object passed as ``checkpoint=``;
- :class:`SQLiteCheckpointStore` (``sqlite_store``): the built-in store, one SQLite file;
- :class:`RecordedFailure` (``failure``): how a failure recorded by an earlier run comes
  back;
- ``integrity``: the secret and the HMAC every record is signed with; ``serializer``: how
  records are pickled.

Names are loaded on first access, so that ``Checkpoint`` costs no ``sqlite3`` import.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pyarallel._checkpoint.failure import RecordedFailure
    from pyarallel._checkpoint.spec import Checkpoint
    from pyarallel._checkpoint.sqlite_store import SQLiteCheckpointStore

__all__ = ["Checkpoint", "RecordedFailure", "SQLiteCheckpointStore"]

_HOMES = {
    "Checkpoint": "pyarallel._checkpoint.spec",
    "RecordedFailure": "pyarallel._checkpoint.failure",
    "SQLiteCheckpointStore": "pyarallel._checkpoint.sqlite_store",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pyarallel._checkpoint' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
