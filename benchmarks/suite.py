"""Runs the selected workloads: every case, every contender, ``repeat`` times, each time
in a fresh interpreter, then reduces the repetitions to medians, ratios and verdicts.

Repetitions are interleaved (repetition 1 of every contender, then repetition 2, ...) so
that slow drifts in the machine's load spread over all contenders alike. A contender whose
repetition fails is not run again in that case: its row is "n/a" with the error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness import ChildOutcome, run_child
from measure import median
from model import Contender, Params, Role, TargetContext, Workload

__all__ = ["CaseResult", "ContenderResult", "MetricRow", "run_suite"]

Progress = Callable[[str], None]
Snapshot = Callable[[], dict[str, Any]]
"""Called before every measurement; what it returns is stored with the repetition (the
machine's load, a fingerprint of the code under test, ...)."""


@dataclass(slots=True)
class ContenderResult:
    """All repetitions of one contender in one case."""

    contender: Contender
    values: dict[str, list[float]] = field(default_factory=dict)  # metric key -> one value per rep
    extras: list[dict[str, Any]] = field(default_factory=list)
    child_seconds: list[float] = field(default_factory=list)
    contexts: list[dict[str, Any]] = field(default_factory=list)  # a ``Snapshot`` before each rep
    error: str | None = None
    error_detail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.values)

    def medians(self) -> dict[str, float]:
        return {key: median(values) for key, values in self.values.items()} if self.ok else {}

    def record(self, outcome: ChildOutcome, repetition: int, context: dict[str, Any]) -> None:
        self.child_seconds.append(outcome.seconds)
        self.contexts.append(context)
        self.notes.extend(note for note in outcome.notes if note and outcome.error is None)
        if outcome.measurement is None:
            done = len(self.extras)
            self.error = f"repetition {repetition} failed: {outcome.error}" + (
                f" ({done} earlier repetition(s) succeeded; values kept in the JSON)" if done else ""
            )
            self.error_detail = "\n".join(outcome.notes)
            return
        for key, value in outcome.measurement.metrics.items():
            self.values.setdefault(key, []).append(value)
        self.extras.append(outcome.measurement.extra)


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One line of the table: a contender's median for one metric, judged."""

    contender: str
    role: Role
    metric: str
    median: float
    spread: float | None  # (max - min) / 2 / |median| over the repetitions
    ratio: float | None  # median / the baseline's median
    target: str
    verdict: str | None  # "PASS", "MISS", "?" (cannot tell), None (not a subject row)


@dataclass(slots=True)
class CaseResult:
    """One (workload, variant) case."""

    workload: Workload
    variant: str
    params: Params
    contenders: list[ContenderResult]

    @property
    def label(self) -> str:
        return self.workload.case_label(self.variant)

    def context_values(self, key: str) -> list[Any]:
        """The distinct values of ``key`` in the snapshots of this case, in first-seen order."""
        seen: list[Any] = []
        for result in self.contenders:
            for context in result.contexts:
                if key in context and context[key] not in seen:
                    seen.append(context[key])
        return seen

    def medians(self) -> dict[tuple[str, str], float]:
        return {
            (result.contender.name, key): value
            for result in self.contenders
            for key, value in result.medians().items()
        }

    def rows(self) -> list[MetricRow]:
        """The judged rows of the successful contenders, metric by metric."""
        medians = self.medians()
        context = TargetContext(self.params, medians)
        baseline = self.workload.baseline.name
        rows = []
        for metric in self.workload.metrics:
            for result in self.contenders:
                values = result.values.get(metric.key) if result.ok else None
                if not values:
                    continue
                value = median(values)
                base = medians.get((baseline, metric.key))
                ratio = value / base if metric.ratio and base not in (None, 0) else None
                texts, verdict = self._judge(result.contender, metric.key, value, context)
                spread = (max(values) - min(values)) / 2 / abs(value) if len(values) > 1 and value else None
                rows.append(
                    MetricRow(
                        contender=result.contender.name,
                        role=result.contender.role,
                        metric=metric.key,
                        median=value,
                        spread=spread,
                        ratio=ratio,
                        target=texts,
                        verdict=verdict,
                    )
                )
        return rows

    def _judge(
        self, contender: Contender, metric: str, value: float, context: TargetContext
    ) -> tuple[str, str | None]:
        targets = [t for t in self.workload.targets if t.applies_to(self.variant, metric)]
        if not targets:
            return "", None
        text = "; ".join(t.text for t in targets)
        if contender.role is not Role.SUBJECT:
            return text, None
        checks = [t.check(value, context) for t in targets]
        if any(check is None for check in checks):
            return text, "?"
        return text, "PASS" if all(checks) else "MISS"


def run_suite(
    workloads: Sequence[Workload],
    *,
    quick: bool,
    repeat: int,
    env: Mapping[str, str],
    progress: Progress,
    snapshot: Snapshot,
) -> list[CaseResult]:
    cases = []
    for workload in workloads:
        params = workload.params(quick=quick)
        for variant in workload.variants:
            results = [ContenderResult(c) for c in workload.contenders if c.runs_in(variant)]
            case = CaseResult(workload, variant, params, results)
            for repetition in range(1, repeat + 1):
                for result in results:
                    if result.error is not None:
                        continue
                    context = snapshot()
                    outcome = run_child(
                        workload.id,
                        result.contender.name,
                        variant,
                        params,
                        timeout=float(params.get("timeout_s", 300)),
                        env=env,
                    )
                    result.record(outcome, repetition, context)
                    progress(_progress_line(case, result, outcome, repetition, repeat))
            cases.append(case)
    return cases


def _progress_line(
    case: CaseResult, result: ContenderResult, outcome: ChildOutcome, repetition: int, repeat: int
) -> str:
    head = f"[{case.label:<8}] {repetition}/{repeat} {result.contender.name:<28} {outcome.seconds:6.1f} s  "
    if outcome.measurement is None:
        return head + f"n/a: {outcome.error}"
    values = outcome.measurement.metrics
    shown = [m.render(values[m.key]) for m in case.workload.metrics if m.key in values]
    return head + ", ".join(shown)
