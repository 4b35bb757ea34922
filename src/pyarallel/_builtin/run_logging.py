"""Built-in plugin: the ``pyarallel`` logger's account of each run.

Standard :mod:`logging`, silent unless the application configures it: the ``pyarallel``
logger has a ``NullHandler``, and a run is watched only when a record of at least WARNING
would reach a real handler, so an unconfigured application pays nothing. Levels:

- DEBUG: each item that failed for good (its exception); each short wait for the rate
  limiter;
- INFO: each retry (item index, attempt, delay, exception); waits for the rate limiter of
  ``NOTABLE_WAIT_SECONDS`` or more; pauses asked by a retry decision (``Retry-After``);
  recovery after a lost worker (how the items run again ended); a graceful stop; the run
  summary (the run's statistics, one line);
- INFO also: items run again because their (live) worker was replaced with its pool after
  another worker died;
- WARNING: a worker that crashed or was stopped for an item overrunning ``task_timeout``;
  items that failed on ``task_timeout``; a run that timed out, reached ``max_errors``
  (aborted) or ended on an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyarallel._errors import ItemTimeoutError, TaskLostError, TaskTimeoutError
from pyarallel.contracts import FinishedItems, RunInfo, RunObserver, RunSummary
from pyarallel.hookspecs import hookimpl

__all__ = ["LOGGER_NAME", "NOTABLE_WAIT_SECONDS", "RunLogger", "pyarallel_run_observers"]

LOGGER_NAME = "pyarallel"
NOTABLE_WAIT_SECONDS = 1.0
"""A wait for the rate limiter this long or longer is logged at INFO (shorter: DEBUG)."""

logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())  # no "last resort" output for an unconfigured app


@hookimpl
def pyarallel_run_observers(run: RunInfo) -> RunObserver | None:
    """A ``RunLogger`` when someone listens to the ``pyarallel`` logger."""
    return RunLogger() if _listened_to(logger) else None


def _listened_to(watched: logging.Logger) -> bool:
    """True when a WARNING from ``watched`` would reach a handler other than a
    ``NullHandler`` (``logging.lastResort`` aside)."""
    if not watched.isEnabledFor(logging.WARNING):
        return False
    current: logging.Logger | None = watched
    while current is not None:
        if any(not isinstance(handler, logging.NullHandler) for handler in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


class RunLogger(RunObserver):
    """Logs one run (see the module's docstring for what, at which level)."""

    def __init__(self) -> None:
        self._rerunning: list[tuple[set[int], list[int]]] = []  # (items left, [succeeded, failed])
        self._timed_out = 0  # items failed on the run's timeout, logged once at the end

    def item_retry(self, run: RunInfo, index: int, attempt: int, error: BaseException, delay: float) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s: item %d failed attempt %d with %s; retrying in %.2f s",
                run.function,
                index,
                attempt,
                _describe(error),
                delay,
                extra=_extra(run, index=index, attempt=attempt, delay=delay),
            )

    def items_finished(self, run: RunInfo, finished: FinishedItems, done: int, seen: int) -> None:
        if finished.failed:
            self._log_failures(run, finished)
        if self._rerunning:
            self._follow_reruns(run, finished)

    def _log_failures(self, run: RunInfo, finished: FinishedItems) -> None:
        debug = logger.isEnabledFor(logging.DEBUG)
        for result in finished.failures():
            error: BaseException = result.error  # type: ignore[assignment]  # a failure has one
            if isinstance(error, ItemTimeoutError):
                self._timed_out += 1
            elif isinstance(error, TaskTimeoutError):
                logger.warning(
                    "%s: item %d timed out: %s",
                    run.function,
                    result.index,
                    error,
                    extra=_extra(run, index=result.index),
                )
            elif debug:
                logger.debug(
                    "%s: item %d failed for good after %d attempt(s) with %s",
                    run.function,
                    result.index,
                    result.attempts,
                    _describe(error),
                    extra=_extra(run, index=result.index),
                )

    def _follow_reruns(self, run: RunInfo, finished: FinishedItems) -> None:
        """Log, once all the items of a lost task have finished again, how they ended."""
        for result in finished:
            for left, outcome in self._rerunning:
                if result.index in left:
                    left.discard(result.index)
                    outcome[0 if result.ok else 1] += 1
        for _, (succeeded, failed) in [entry for entry in self._rerunning if not entry[0]]:
            logger.info(
                "%s: recovered from a lost worker: of its %d item(s), %d succeeded and %d failed",
                run.function,
                succeeded + failed,
                succeeded,
                failed,
                extra=_extra(run),
            )
        self._rerunning = [entry for entry in self._rerunning if entry[0]]

    def task_lost(self, run: RunInfo, indexes: Sequence[int], error: TaskLostError) -> None:
        self._rerunning.append((set(indexes), [0, 0]))
        if error.crashed is False and not error.overdue:  # a live worker's, as its pool was replaced
            logger.info(
                "%s: item(s) %s run again: their worker was replaced with its pool after another worker died",
                run.function,
                _indexes(indexes),
                extra=_extra(run, indexes=tuple(indexes)),
            )
            return
        if error.overdue:
            what = "was stopped: an item overran task_timeout"
        elif error.crashed:
            what = "crashed"
        else:
            what = "went away"
        logger.warning(
            "%s: a worker running item(s) %s %s (%s); the run goes on: the item at fault "
            "fails, the others run again",
            run.function,
            _indexes(indexes),
            what,
            error,
            extra=_extra(run, indexes=tuple(indexes)),
        )

    def run_waiting(self, run: RunInfo, reason: str, seconds: float) -> None:
        if reason == "pause":
            logger.info(
                "%s: starts paused for %.2f s (a retry decision asked for it, e.g. Retry-After)",
                run.function,
                seconds,
                extra=_extra(run, seconds=seconds),
            )
            return
        level = logging.INFO if seconds >= NOTABLE_WAIT_SECONDS else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "%s: waited %.2f s for the rate limiter",
                run.function,
                seconds,
                extra=_extra(run, seconds=seconds),
            )

    def run_end(self, run: RunInfo, summary: RunSummary) -> None:
        outcome = summary.outcome
        if outcome == "timed_out":
            logger.warning(
                "%s: timed out after %.2f s (timeout=%s): %d unfinished item(s) failed with ItemTimeoutError",
                run.function,
                summary.seconds,
                run.options.get("timeout"),
                self._timed_out,
                extra=_extra(run),
            )
        elif outcome == "aborted":
            logger.warning(
                "%s: aborted: max_errors=%s items failed for good; the items not run failed "
                "with ItemAbortedError",
                run.function,
                run.options.get("max_errors"),
                extra=_extra(run),
            )
        elif outcome == "cancelled":
            logger.info("%s: stopped on request (stop=)", run.function, extra=_extra(run))
        elif outcome == "error" and summary.error is not None:
            logger.warning("%s: ended on %s", run.function, _describe(summary.error), extra=_extra(run))
        if logger.isEnabledFor(logging.INFO) and summary.stats is not None:
            stats = summary.stats
            logger.info(
                "%s: %s",
                stats.headline(),
                "; ".join(f"{label} {text}" for label, text in stats.lines()),
                extra=_extra(run, stats=stats),
            )


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _indexes(indexes: Sequence[int], shown: int = 10) -> str:
    listed = ", ".join(str(index) for index in indexes[:shown])
    return f"{listed}, ... ({len(indexes)} in all)" if len(indexes) > shown else listed


def _extra(run: RunInfo, **fields: Any) -> dict[str, Any]:
    """What each record carries for handlers that want structure: ``record.pyarallel``."""
    return {"pyarallel": {"run_id": run.run_id, "function": run.function, **fields}}
