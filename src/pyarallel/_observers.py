"""Calls the observer hooks of one run, skipping every hook no plugin implements.

Resolved once when a run starts, so an unobserved run makes no pluggy call per item.
"""

from __future__ import annotations

from typing import Any

from pyarallel import _plugins
from pyarallel._result import ItemResult
from pyarallel._scheduling import RetryEvent
from pyarallel.contracts import RunInfo, RunSummary


class Observers:
    """The observer hook callers of one run; ``None`` for hooks nobody implements."""

    def __init__(self) -> None:
        hook = _plugins.plugin_manager().hook
        self._run_start = hook.pyarallel_run_start if hook.pyarallel_run_start.get_hookimpls() else None
        self._item_retry = hook.pyarallel_item_retry if hook.pyarallel_item_retry.get_hookimpls() else None
        self._item_result = hook.pyarallel_item_result if hook.pyarallel_item_result.get_hookimpls() else None
        self._run_end = hook.pyarallel_run_end if hook.pyarallel_run_end.get_hookimpls() else None
        self.watch_items = self._item_retry is not None or self._item_result is not None

    def run_start(self, run: RunInfo) -> None:
        if self._run_start is not None:
            self._run_start(run=run)

    def item_event(self, run: RunInfo, event: ItemResult[Any] | RetryEvent, done: int, seen: int) -> None:
        if isinstance(event, RetryEvent):
            if self._item_retry is not None:
                self._item_retry(
                    run=run,
                    index=event.index,
                    attempt=event.attempt,
                    error=event.error,
                    delay=event.delay,
                )
        elif self._item_result is not None:
            self._item_result(run=run, result=event, done=done, seen=seen)

    def run_end(self, run: RunInfo, summary: RunSummary) -> None:
        if self._run_end is not None:
            self._run_end(run=run, summary=summary)
