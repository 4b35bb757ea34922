"""A checkpointed run's side of the store: opening it for the run's job, and recording
each final result before the caller sees it."""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from pyarallel._errors import ItemAbortedError, ItemCancelledError, ItemTimeoutError
from pyarallel._result import ItemResult, Settled, Successes
from pyarallel._scheduling.resume import Resume
from pyarallel.contracts import CheckpointJob, CheckpointStore

if TYPE_CHECKING:
    from pyarallel._plan import RunPlan

__all__ = ["Recorder", "function_identity", "open_checkpoint"]

# Failures that are the run's doing, not the item's: never recorded, so the item runs on resume.
_RUN_ENDED = (ItemAbortedError, ItemCancelledError, ItemTimeoutError)


def function_identity(fn: object) -> str:
    """``"module:qualified.name"`` of ``fn`` (seen through partials and bound methods): what
    identifies a checkpointed job's function, so that a fixed and reloaded function
    resumes its job."""
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)
    module = getattr(target, "__module__", None) or type(target).__module__
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}:{name}"


def open_checkpoint(plan: RunPlan) -> tuple[Resume | None, Recorder | None]:
    """Open the plan's checkpoint store for its job: what earlier runs finished, and the
    recorder for this run's results (both ``None`` without a checkpoint)."""
    store = plan.checkpoint
    if store is None:
        return None, None
    key = plan.options.checkpoint_key
    job = CheckpointJob(function_identity(plan.fn), plan.form, keyed=key is not None)
    state = store.open(job)
    resume = Resume(state, key, retry_failed=False)  # the store leaves out failures to retry
    return resume, Recorder(store, resume)


class Recorder:
    """Records a run's final results in its store, a task's successes in one write."""

    __slots__ = ("_resume", "_store")

    def __init__(self, store: CheckpointStore, resume: Resume) -> None:
        self._store = store
        self._resume = resume

    def record(self, results: list[Settled]) -> None:
        """Record ``results`` (final ones) that this run produced: successes, and failures
        that are the item's own; not items restored from the store, nor items the run
        ended (timed out, aborted, cancelled), which run again on resume."""
        key_of, store = self._resume.key_of, self._store
        keys: list[Hashable] = []
        values: list[Any] = []
        for result in results:
            if type(result) is Successes:
                start, count = result.start, len(result.values)
                run_keys = range(start, start + count)
                if self._resume.keyed:
                    store.record_successes([key_of(index) for index in run_keys], result.values)
                else:
                    store.record_successes(run_keys, result.values)
                continue
            item: ItemResult[Any] = result  # type: ignore[assignment]
            if item.attempts == 0 and not isinstance(item.error, _RUN_ENDED):
                continue  # restored from the store
            key = key_of(item.index)
            if item.ok:
                keys.append(key)
                values.append(item.value)
            elif not isinstance(item.error, _RUN_ENDED):
                assert item.error is not None
                store.record_failure(key, item.error)
        if keys:
            store.record_successes(keys, values)

    def close(self) -> None:
        self._store.close()
