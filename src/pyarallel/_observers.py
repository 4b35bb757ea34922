"""Tells the observers of one run what happens: the per-run observers plugins return from
``pyarallel_run_observers`` (pyarallel's statistics, progress bar and log among them),
and the observer hooks every run calls.

Resolved once when a run starts: for each event, the list of methods that want it, so an
unobserved event costs nothing and no observer is ever asked about another run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from pyarallel import _plugins
from pyarallel._errors import TaskLostError
from pyarallel._result import ItemResult
from pyarallel.contracts import FinishedItems, RunInfo, RunObserver, RunSummary

__all__ = ["Observers"]


class Observers:
    """The observers of one run, by event: the bound methods that override
    :class:`RunObserver`'s, then the observer hooks that have implementations (empty
    lists for events nobody watches)."""

    def __init__(self, run: RunInfo, first: Sequence[RunObserver] = ()) -> None:
        observers = [*first, *_requested_observers(run)]
        self.run_start = _overriding(observers, "run_start")
        self.item_retry = _overriding(observers, "item_retry")
        self.items_finished = _overriding(observers, "items_finished")
        self.item_result = _overriding(observers, "item_result")
        self.task_lost = _overriding(observers, "task_lost")
        self.run_waiting = _overriding(observers, "run_waiting")
        self.run_end = _overriding(observers, "run_end")
        _add_hook_callers(self)

    def start(self, run: RunInfo) -> None:
        """Tell every observer the run starts. If one raises, the run does not start: the
        per-run observers are told it ended (outcome ``"error"``), so that what they
        opened (a bar) is closed, and the exception propagates."""
        try:
            for method in self.run_start:
                method(run)
        except BaseException as error:
            summary = RunSummary("error", 0, 0, 0, 0.0, error)
            for method in self.run_end:
                if getattr(method, "__self__", None) is not None:  # an observer's, not a hook's
                    with contextlib.suppress(Exception):
                        method(run, summary)
            raise

    def end(self, run: RunInfo, summary: RunSummary) -> None:
        """Tell every observer, even after one raised; then raise the first exception."""
        failure: BaseException | None = None
        for method in self.run_end:
            try:
                method(run, summary)
            except BaseException as error:
                failure = failure or error
        if failure is not None:
            raise failure

    def finished(self, run: RunInfo, finished: FinishedItems, done: int, seen: int) -> None:
        for method in self.items_finished:
            method(run, finished, done, seen)

    def retry(self, run: RunInfo, index: int, attempt: int, error: BaseException, delay: float) -> None:
        for method in self.item_retry:
            method(run, index, attempt, error, delay)

    def lost(self, run: RunInfo, indexes: Sequence[int], error: TaskLostError) -> None:
        for method in self.task_lost:
            method(run, indexes, error)

    def waited(self, run: RunInfo, reason: str, seconds: float) -> None:
        for method in self.run_waiting:
            method(run, reason, seconds)

    def result(self, run: RunInfo, result: ItemResult[Any], done: int, seen: int) -> None:
        for method in self.item_result:
            method(run, result, done, seen)


def _requested_observers(run: RunInfo) -> list[RunObserver]:
    """The observers plugins return for ``run`` from ``pyarallel_run_observers``."""
    answers = _plugins.plugin_manager().hook.pyarallel_run_observers(run=run)
    observers: list[RunObserver] = []
    for answer in answers:
        given = (answer,) if isinstance(answer, RunObserver) else answer
        wrong: object = answer if not isinstance(given, Sequence) or isinstance(given, str) else None
        if wrong is None:
            wrong = next((observer for observer in given if not isinstance(observer, RunObserver)), None)
        if wrong is not None:
            raise TypeError(
                "pyarallel_run_observers must return a RunObserver, a sequence of them, or None;"
                f" a plugin returned {wrong!r}"
            )
        observers.extend(given)
    return observers


def _overriding(observers: Sequence[RunObserver], name: str) -> list[Callable[..., None]]:
    base = getattr(RunObserver, name)
    return [getattr(observer, name) for observer in observers if getattr(type(observer), name) is not base]


def _add_hook_callers(observers: Observers) -> None:
    """Append a call of each observer hook that has implementations (pyarallel_run_start
    & co.) to the methods ``observers`` calls for its event."""
    hook = _plugins.plugin_manager().hook
    if hook.pyarallel_run_start.get_hookimpls():
        start = hook.pyarallel_run_start
        observers.run_start.append(lambda run: start(run=run))
    if hook.pyarallel_item_retry.get_hookimpls():
        retry = hook.pyarallel_item_retry
        observers.item_retry.append(
            lambda run, index, attempt, error, delay: retry(
                run=run, index=index, attempt=attempt, error=error, delay=delay
            )
        )
    if hook.pyarallel_item_result.get_hookimpls():
        result = hook.pyarallel_item_result
        observers.item_result.append(
            lambda run, item, done, seen: result(run=run, result=item, done=done, seen=seen)
        )
    if hook.pyarallel_run_end.get_hookimpls():
        end = hook.pyarallel_run_end
        observers.run_end.append(lambda run, summary: end(run=run, summary=summary))
