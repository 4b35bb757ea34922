"""Run statistics: what a finished run did, as ``ParallelResult.stats`` and
``RunSummary.stats`` carry it, and the observer that gathers it while the run goes."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pyarallel._errors import TaskLostError
from pyarallel._values import FrozenValue
from pyarallel.contracts import FinishedItems, RunInfo, RunObserver

__all__ = ["SLOWEST_KEPT", "RunStats", "StatsCollector"]

SLOWEST_KEPT = 5
"""How many of the slowest items a run's statistics name."""


class RunStats(FrozenValue):
    """What a run did, for a person reading it after a job: ``print(result.stats)``. A
    frozen value object.

    - ``function``: the function's qualified name; ``outcome``: how the run ended (as
      ``RunSummary.outcome``: ``"completed"``, ``"timed_out"``, ``"aborted"``,
      ``"cancelled"``, ``"size_mismatch"``, ``"interrupted"`` or ``"error"``);
    - ``seconds``: wall-clock time from the run's start to its end;
    - ``succeeded``, ``failed``: items finished each way (``items`` is their sum);
      ``restored`` of them were answered from a checkpoint without a call;
    - ``calls``: attempts that ran the function (retries included, attempts lost with a
      crashed worker and run again not counted twice); ``retries``: attempts retried;
    - ``failures_by_type``: ``(exception type name, count)`` for the failed items, most
      frequent first (``failures_by_type_dict()`` as a mapping);
    - ``slowest``: up to five ``(index, seconds)``, longest first (items grouped in one
      task share its time equally);
    - ``rate_limit_wait``: seconds a free worker waited for the rate limiter (summed over
      the waits; waits of different keys overlapping in time count once each);
      ``paused``: seconds the run's starts were paused by retry decisions (``Retry-After``);
    - ``workers_lost``: tasks whose worker crashed (or may have) or was stopped for
      ``task_timeout``; tasks of live workers lost when a backend replaced its whole pool
      are not counted.
    """

    __slots__ = (
        "calls",
        "failed",
        "failures_by_type",
        "function",
        "outcome",
        "paused",
        "rate_limit_wait",
        "restored",
        "retries",
        "seconds",
        "slowest",
        "succeeded",
        "workers_lost",
    )
    __match_args__ = (
        "function",
        "outcome",
        "seconds",
        "succeeded",
        "failed",
        "restored",
        "calls",
        "retries",
        "failures_by_type",
        "slowest",
        "rate_limit_wait",
        "paused",
        "workers_lost",
    )
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def function(self) -> str: ...
        @property
        def outcome(self) -> str: ...
        @property
        def seconds(self) -> float: ...
        @property
        def succeeded(self) -> int: ...
        @property
        def failed(self) -> int: ...
        @property
        def restored(self) -> int: ...
        @property
        def calls(self) -> int: ...
        @property
        def retries(self) -> int: ...
        @property
        def failures_by_type(self) -> tuple[tuple[str, int], ...]: ...
        @property
        def slowest(self) -> tuple[tuple[int, float], ...]: ...
        @property
        def rate_limit_wait(self) -> float: ...
        @property
        def paused(self) -> float: ...
        @property
        def workers_lost(self) -> int: ...

    def __init__(  # noqa: PLR0917 - a value object's fields
        self,
        function: str,
        outcome: str,
        seconds: float,
        succeeded: int,
        failed: int,
        restored: int = 0,
        calls: int = 0,
        retries: int = 0,
        failures_by_type: Sequence[tuple[str, int]] = (),
        slowest: Sequence[tuple[int, float]] = (),
        rate_limit_wait: float = 0.0,
        paused: float = 0.0,
        workers_lost: int = 0,
    ) -> None:
        self._set("function", function)
        self._set("outcome", outcome)
        self._set("seconds", seconds)
        self._set("succeeded", succeeded)
        self._set("failed", failed)
        self._set("restored", restored)
        self._set("calls", calls)
        self._set("retries", retries)
        self._set("failures_by_type", tuple((str(name), int(count)) for name, count in failures_by_type))
        self._set("slowest", tuple((int(index), float(taken)) for index, taken in slowest))
        self._set("rate_limit_wait", rate_limit_wait)
        self._set("paused", paused)
        self._set("workers_lost", workers_lost)

    @property
    def items(self) -> int:
        """Items finished: ``succeeded + failed``."""
        return self.succeeded + self.failed

    @property
    def items_per_second(self) -> float:
        """Items finished per second of the run's wall-clock time."""
        return self.items / self.seconds if self.seconds > 0 else 0.0

    @property
    def calls_per_second(self) -> float:
        """The achieved call rate: ``calls`` per second of wall-clock time."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def failures_by_type_dict(self) -> Mapping[str, int]:
        """``failures_by_type`` as a mapping, most frequent first."""
        return dict(self.failures_by_type)

    def lines(self) -> list[tuple[str, str]]:
        """The summary as ``(label, text)`` rows: what ``str()`` and the HTML show."""
        rows = [
            (
                "items",
                f"{self.items:,} ({self.succeeded:,} succeeded, {self.failed:,} failed), "
                f"{_rate(self.items_per_second)}",
            ),
            ("calls", f"{self.calls:,} ({self.retries:,} retries), {_rate(self.calls_per_second)}"),
        ]
        if self.restored:
            rows.append(("restored", f"{self.restored:,} from the checkpoint"))
        if self.failures_by_type:
            rows.append(("failures", ", ".join(f"{name} {count:,}" for name, count in self.failures_by_type)))
        if self.slowest:
            rows.append(
                ("slowest", ", ".join(f"#{index} {_seconds(taken)}" for index, taken in self.slowest))
            )
        waits = []
        if self.rate_limit_wait:
            waits.append(f"{_seconds(self.rate_limit_wait)} for the rate limiter")
        if self.paused:
            waits.append(f"{_seconds(self.paused)} paused")
        if waits:
            rows.append(("waited", ", ".join(waits)))
        if self.workers_lost:
            rows.append(("workers lost", f"{self.workers_lost:,}"))
        return rows

    def headline(self) -> str:
        """One line: the function, how the run ended, and how long it took."""
        return f"{self.function}: {self.outcome.replace('_', ' ')} in {_seconds(self.seconds)}"

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.lines())
        return "\n".join([self.headline(), *(f"  {label:<{width}}  {text}" for label, text in self.lines())])

    def _repr_html_(self) -> str:
        import html  # not on the import path of a first call: it costs about 2 ms

        rows = "".join(
            f"<tr><th {_LEFT}>{html.escape(label)}</th><td {_LEFT}>{html.escape(text)}</td></tr>"
            for label, text in self.lines()
        )
        return f"<div><strong>{html.escape(self.headline())}</strong><table>{rows}</table></div>"


_LEFT = "style='text-align:left'"


def _seconds(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.0f} s"


def _rate(per_second: float) -> str:
    return f"{per_second:,.1f}/s" if per_second < 100 else f"{per_second:,.0f}/s"


class StatsCollector(RunObserver):
    """Gathers one run's :class:`RunStats` from what the run reports; the run asks for
    them at its end (``stats``)."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.restored = 0
        self.rate_limit_wait = 0.0
        self.paused = 0.0
        self.workers_lost = 0
        self._failures: dict[str, int] = {}
        self._slowest: list[tuple[float, int]] = []  # a min-heap of (seconds, -index)

    def items_finished(self, run: RunInfo, finished: FinishedItems, done: int, seen: int) -> None:
        self.succeeded += finished.succeeded
        if finished.failed:
            self.failed += finished.failed
            failures = self._failures
            for result in finished.failures():
                name = type(result.error).__name__
                failures[name] = failures.get(name, 0) + 1
        slowest = self._slowest
        for index, seconds in finished.slowest(SLOWEST_KEPT):
            if seconds <= 0:
                break  # not run (restored, or ended early): no duration to speak of
            entry = (seconds, -index)
            if len(slowest) < SLOWEST_KEPT:
                heapq.heappush(slowest, entry)
            elif entry > slowest[0]:
                heapq.heapreplace(slowest, entry)
            else:
                break  # the rest are no slower

    def task_lost(self, run: RunInfo, indexes: Sequence[int], error: TaskLostError) -> None:
        if error.crashed is not False or error.overdue:  # not a task of a live worker
            self.workers_lost += 1

    def run_waiting(self, run: RunInfo, reason: str, seconds: float) -> None:
        if reason == "pause":
            self.paused += seconds
        else:
            self.rate_limit_wait += seconds

    def stats(
        self, run: RunInfo, *, outcome: str, seconds: float, calls: int, retries: int, restored: int
    ) -> RunStats:
        """The run's statistics, now that it has ended."""
        failures = sorted(self._failures.items(), key=lambda entry: (-entry[1], entry[0]))
        slowest = sorted(
            ((-negative, taken) for taken, negative in self._slowest), key=lambda e: (-e[1], e[0])
        )
        return RunStats(
            run.function,
            outcome,
            seconds,
            self.succeeded,
            self.failed,
            restored=restored,
            calls=calls,
            retries=retries,
            failures_by_type=failures,
            slowest=slowest,
            rate_limit_wait=self.rate_limit_wait,
            paused=self.paused,
            workers_lost=self.workers_lost,
        )
