"""What a worker process runs for pyarallel: kept apart from the rest of the package so a
freshly started worker imports only this, ``_tasks`` and ``_errors`` (no pluggy, no
scheduler), which shortens a cold pool's start."""

from __future__ import annotations

from pyarallel._errors import SerializationError

__all__ = ["call_pickled"]


def call_pickled(blob: bytes) -> bytes:
    """Worker side: unpickle ``(fn, args)``, call it, and pickle the result."""
    import cloudpickle

    try:
        fn, args = cloudpickle.loads(blob)
    except Exception as error:
        raise SerializationError(f"the task could not be unpickled in the worker: {error!r}") from error
    result = fn(*args)
    try:
        return cloudpickle.dumps(result)  # type: ignore[no-any-return]
    except Exception as error:
        raise SerializationError(
            "the task's outcome (a value the function returned, or an exception it raised) "
            f"could not be pickled: {error!r}"
        ) from None
