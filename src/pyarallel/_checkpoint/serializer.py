"""The serializer of checkpoint records: the standard ``pickle``, at its highest protocol.

A batch of successes is one blob, the pickle of ``(keys, values)`` as given (the keys of
an index-keyed run come as a ``range``, which pickles in a few bytes). A batch that cannot
be pickled whole is pickled item by item, leaving out the items whose key or value cannot
be pickled. A failure is the pickle of its key and three strings (see
:func:`~pyarallel._checkpoint.failure.describe_failure`), never of the exception.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable, Sequence
from typing import Any

from pyarallel._checkpoint.failure import RecordedFailure, describe_failure

__all__ = ["PROTOCOL", "Skipped", "pack_failure", "pack_successes", "unpack_failure", "unpack_successes"]

PROTOCOL = pickle.HIGHEST_PROTOCOL

Skipped = tuple[Hashable, str]
"""An item that was not recorded: its key and why."""


def pack_successes(keys: Sequence[Hashable], values: Sequence[Any]) -> tuple[bytes | None, list[Skipped]]:
    """The blob recording that ``keys`` succeeded with ``values`` (``None`` if no item of
    them can be recorded), and the items left out because they cannot be pickled."""
    try:
        return pickle.dumps((keys, values), PROTOCOL), []
    except Exception:
        return _pack_each(keys, values)


def _pack_each(keys: Sequence[Hashable], values: Sequence[Any]) -> tuple[bytes | None, list[Skipped]]:
    kept_keys: list[Hashable] = []
    kept_values: list[Any] = []
    skipped: list[Skipped] = []
    for key, value in zip(keys, values, strict=False):
        reason = _why_unpicklable(key, value)
        if reason is None:
            kept_keys.append(key)
            kept_values.append(value)
        else:
            skipped.append((key, reason))
    if not kept_keys:
        return None, skipped
    try:
        return pickle.dumps((kept_keys, kept_values), PROTOCOL), skipped
    except Exception as error:  # each pickles alone, but not together: record none of them
        reason = f"the batch cannot be pickled: {_reason(error)}"
        return None, skipped + [(key, reason) for key in kept_keys]


def _why_unpicklable(key: Hashable, value: Any) -> str | None:
    try:
        pickle.dumps(key, PROTOCOL)
    except Exception as error:
        return f"its key cannot be pickled: {_reason(error)}"
    try:
        pickle.dumps(value, PROTOCOL)
    except Exception as error:
        return f"its value cannot be pickled: {_reason(error)}"
    return None


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def unpack_successes(blob: bytes) -> tuple[Sequence[Hashable], Sequence[Any]]:
    """The keys and values a blob of :func:`pack_successes` holds. Unpickles: call it
    only on a blob whose HMAC has been verified."""
    keys, values = pickle.loads(blob)
    return keys, values


def pack_failure(key: Hashable, error: BaseException) -> tuple[bytes | None, str | None]:
    """The blob recording that ``key`` failed with ``error``, or ``None`` and the reason
    when its key cannot be pickled."""
    try:
        return pickle.dumps((key, *describe_failure(error)), PROTOCOL), None
    except Exception as failure:
        return None, f"its key cannot be pickled: {_reason(failure)}"


def unpack_failure(blob: bytes) -> tuple[Hashable, RecordedFailure]:
    """The key and the :class:`RecordedFailure` a blob of :func:`pack_failure` holds.
    Unpickles: call it only on a blob whose HMAC has been verified."""
    key, error_type, message, traceback = pickle.loads(blob)
    return key, RecordedFailure(error_type, message, traceback, key=key)
