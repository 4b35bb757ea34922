"""Resuming a checkpointed job: which items an earlier run finished, found as the input
is read, and the key each item is recorded under."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from pyarallel._result import ItemResult
from pyarallel.contracts import CheckpointState

__all__ = ["Resume"]


class Resume:
    """What earlier runs of a job finished (``state``), and how items are identified:
    by ``key(item)`` when given (``checkpoint_key=``), else by input index.

    ``restore(index, payload)`` answers an item with its stored result (attempts 0), or
    ``None`` when it must run; a stored failure runs again when ``retry_failed``. For a
    keyed job, the key of every item that runs is kept until its result is recorded
    (``key_of``). A key function that raises fails the run: every item's identity must be
    known before it runs, or a finished item could be run twice.
    """

    __slots__ = ("_errors", "_key", "_keys", "_retry_failed", "_values", "restored")

    def __init__(
        self,
        state: CheckpointState,
        key: Callable[[Any], Hashable] | None,
        *,
        retry_failed: bool,
    ) -> None:
        self._values = state.values
        self._errors = {} if retry_failed else state.errors
        self._key = key
        self._retry_failed = retry_failed
        self._keys: dict[int, Hashable] = {}  # index -> key, for items running (keyed jobs)
        self.restored = 0  # items answered from the store

    @property
    def keyed(self) -> bool:
        """True when items are identified by ``checkpoint_key=``."""
        return self._key is not None

    @property
    def empty(self) -> bool:
        """True when nothing can be restored (a fresh job of index-keyed items)."""
        return not self._values and not self._errors and self._key is None

    def restore(self, index: int, payload: Any) -> ItemResult[Any] | None:
        """The stored result of the item at ``index``, or None if it must run."""
        key: Hashable = index
        if self._key is not None:
            key = self._key(payload)
            hash(key)  # an unhashable key fails here, naming its type
        values = self._values
        if key in values:
            self.restored += 1
            return ItemResult.success(index, values[key], 0, 0.0)
        error = self._errors.get(key)
        if error is not None:
            self.restored += 1
            return ItemResult.failure(index, error, 0, 0.0)
        if self._key is not None:
            self._keys[index] = key
        return None

    def key_of(self, index: int) -> Hashable:
        """The key the item at ``index`` is recorded under (forgotten once asked)."""
        if self._key is None:
            return index
        return self._keys.pop(index, index)
