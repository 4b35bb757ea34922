"""The vocabulary of the suite: workloads, their contenders, metrics and targets.

A *workload* (W1..W7) is one scenario. It has one or more *variants* (W3 and W4 run
"cold" and "warm"); a (workload, variant) pair is a *case*, and every case yields one
group of table rows. Each *contender* is a named way of running the scenario (a library,
or a hand-written baseline); it runs in a fresh interpreter and reports a ``Measurement``:
one number per metric. Exactly one contender per workload is the *baseline* the ratio
column divides by; the *subject* contenders (pyarallel, with any executor) are the rows the
targets are checked against.

Nothing here imports a benchmarked library: contenders import what they use when they run,
so a missing library fails one row, not the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_VARIANT",
    "Contender",
    "Measurement",
    "Metric",
    "Params",
    "Role",
    "Target",
    "TargetContext",
    "Workload",
]

Params = dict[str, Any]
"""A workload's sizes and settings; JSON-serialisable, passed from the parent to each child."""

DEFAULT_VARIANT = "default"


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one repetition of one contender reports: ``metrics`` (metric key -> value) and
    free-form ``extra`` details kept in the JSON output only."""

    metrics: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)


RunFn = Callable[[str, Params], Measurement]
"""How a contender runs: ``run(variant, params)`` in the child interpreter."""


class Role(StrEnum):
    """What a contender's row is for."""

    BASELINE = "baseline"  # the reference the ratio column divides by
    SUBJECT = "subject"  # pyarallel: the rows checked against the targets
    PEER = "peer"  # another library, for comparison
    REFERENCE = "reference"  # a calibration figure (e.g. bare time.sleep accuracy)


@dataclass(frozen=True, slots=True)
class Contender:
    """A named way to run a workload.

    ``variants`` restricts the contender to some of the workload's variants (``None``: all).
    """

    name: str
    run: RunFn
    role: Role = Role.PEER
    variants: tuple[str, ...] | None = None

    def runs_in(self, variant: str) -> bool:
        return self.variants is None or variant in self.variants


@dataclass(frozen=True, slots=True)
class Metric:
    """One number a workload reports.

    ``ratio`` says whether "value / baseline value" means something for this metric.
    ``boolean`` metrics hold 0/1 and are shown as no/yes.
    """

    key: str
    label: str
    unit: str = ""
    digits: int = 3
    ratio: bool = True
    boolean: bool = False

    def render(self, value: float) -> str:
        if self.boolean:
            return "yes" if value else "no"
        text = f"{value:,.0f}" if abs(value) >= 10**self.digits else f"{value:.{self.digits}g}"
        return f"{text} {self.unit}".rstrip()


@dataclass(frozen=True, slots=True)
class TargetContext:
    """What a target check may look at: the case's parameters and the medians of every
    contender that succeeded in it, keyed by ``(contender name, metric key)``."""

    params: Params
    medians: Mapping[tuple[str, str], float]

    def median(self, contender: str, metric: str) -> float | None:
        return self.medians.get((contender, metric))


TargetCheck = Callable[[float, TargetContext], bool | None]
"""``check(value, context)``: True (PASS), False (MISS) or None (cannot tell, e.g. the
contender it compares with failed)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for the subject rows of one metric, e.g. "<= 0.5 x TPE.map"."""

    metric: str
    text: str
    check: TargetCheck
    variants: tuple[str, ...] | None = None  # None: every variant

    def applies_to(self, variant: str, metric: str) -> bool:
        return self.metric == metric and (self.variants is None or variant in self.variants)


@dataclass(frozen=True, slots=True)
class Workload:
    """One scenario of the suite and everything needed to run and judge it.

    ``full_params``/``quick_params`` hold sizes and the per-child ``timeout_s``.
    ``prepare`` runs once in the parent before any child (e.g. to calibrate a CPU loop) and
    returns the parameters every child receives.
    """

    id: str
    title: str
    metrics: tuple[Metric, ...]
    contenders: tuple[Contender, ...]
    targets: tuple[Target, ...]
    full_params: Params
    quick_params: Params
    variants: tuple[str, ...] = (DEFAULT_VARIANT,)
    prepare: Callable[[Params], Params] | None = None

    def __post_init__(self) -> None:
        baselines = [c.name for c in self.contenders if c.role is Role.BASELINE]
        if len(baselines) != 1:
            raise ValueError(f"{self.id}: expected exactly one baseline contender, got {baselines}")
        names = [c.name for c in self.contenders]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.id}: contender names must be unique: {names}")

    @property
    def baseline(self) -> Contender:
        return next(c for c in self.contenders if c.role is Role.BASELINE)

    def contender(self, name: str) -> Contender:
        for contender in self.contenders:
            if contender.name == name:
                return contender
        raise KeyError(f"{self.id} has no contender {name!r}; known: {[c.name for c in self.contenders]}")

    def metric(self, key: str) -> Metric:
        for metric in self.metrics:
            if metric.key == key:
                return metric
        raise KeyError(f"{self.id} has no metric {key!r}")

    def params(self, *, quick: bool) -> Params:
        """The parameters for a run, after ``prepare``."""
        params = dict(self.quick_params if quick else self.full_params)
        return self.prepare(params) if self.prepare is not None else params

    def case_label(self, variant: str) -> str:
        return self.id if variant == DEFAULT_VARIANT else f"{self.id} {variant}"
