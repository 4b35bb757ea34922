"""Built-in plugin: the store that ``checkpoint=`` gives a call.

A path (``str`` or ``os.PathLike``) or a :class:`~pyarallel.Checkpoint` becomes a new
:class:`~pyarallel._checkpoint.SQLiteCheckpointStore` on that file; an object that already
fulfils :class:`~pyarallel.contracts.CheckpointStore` is used as it is. Nothing of SQLite is
imported until a call asks for a checkpoint.
"""

from __future__ import annotations

import os

from pyarallel.hookspecs import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeGuard

    from pyarallel.contracts import CheckpointStore

_STORE_METHODS = ("open", "record_successes", "record_failure", "close")


@hookimpl
def pyarallel_checkpoint_store(checkpoint: object) -> CheckpointStore | None:
    """The store for ``checkpoint``, or ``None`` for anything this plugin does not handle.

    A path is validated here, before any work starts: ``ValueError`` if its directory does
    not exist or it names a directory. The file is not created or opened until the run
    starts (``open()``).
    """
    from pyarallel._checkpoint.spec import Checkpoint

    if isinstance(checkpoint, Checkpoint):
        from pyarallel._checkpoint.sqlite_store import SQLiteCheckpointStore

        return SQLiteCheckpointStore.from_checkpoint(checkpoint)
    if isinstance(checkpoint, str | os.PathLike):
        from pyarallel._checkpoint.sqlite_store import SQLiteCheckpointStore

        return SQLiteCheckpointStore.from_checkpoint(Checkpoint.from_argument(checkpoint))
    if is_checkpoint_store(checkpoint):
        return checkpoint
    return None


def is_checkpoint_store(candidate: object) -> TypeGuard[CheckpointStore]:
    """True when ``candidate`` has the four callable methods of a ``CheckpointStore``."""
    return all(callable(getattr(candidate, name, None)) for name in _STORE_METHODS)
