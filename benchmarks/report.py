"""Presenting results: the one table printed at the end of a run, and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model import Role
from suite import CaseResult

__all__ = ["RunInfo", "render_table", "to_json", "write_json"]

HIDDEN_PARAMS = {"timeout_s", "calibrated_at"}
COLUMNS = ("case", "contender", "metric", "median", "+/-", "vs base", "target", "result")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """About the run as a whole: the machine, the options, how long it took."""

    timestamp: str
    python: str
    implementation: str
    platform: str
    cpu_count: int | None
    load_before: tuple[float, float, float] | None
    load_after: tuple[float, float, float] | None
    quick: bool
    repeat: int
    seconds: float
    argv: list[str]
    versions: dict[str, str | None]
    pyarallel_commit: tuple[str | None, str | None]  # at the start and at the end of the run
    pyarallel_source: tuple[str | None, str | None]  # provenance.source_fingerprint(), likewise


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _spread(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


def _provenance(info: RunInfo) -> str:
    commit, source = info.pyarallel_commit[0] or "unknown commit", info.pyarallel_source[0] or "unknown"
    return f"{commit} (source {source})"


def _source_warning(info: RunInfo) -> list[str]:
    (commit_start, commit_end), (start, end) = info.pyarallel_commit, info.pyarallel_source
    if start == end:
        return []
    return [
        f"WARNING: pyarallel's source changed during the run: {commit_start} ({start}) -> "
        f"{commit_end} ({end}); cases measured on more than one version are flagged below."
    ]


def _display_name(name: str, role: Role) -> str:
    return name + (" *" if role is Role.BASELINE else "")


def _case_rows(case: CaseResult, footnotes: list[str]) -> list[tuple[str, ...]]:
    """The table rows of one case; notes about it (errors, code changes) go to ``footnotes``."""
    versions = case.context_values("pyarallel_src")
    if len(versions) > 1:
        footnotes.append(
            f"[{len(footnotes) + 1}] {case.label}: pyarallel's source changed during this case "
            f"({' -> '.join(map(str, versions))}); the JSON has the version of every repetition"
        )
    rows: list[tuple[str, ...]] = []
    for row in case.rows():
        metric = case.workload.metric(row.metric)
        rows.append(
            (
                case.label,
                _display_name(row.contender, row.role),
                metric.label,
                metric.render(row.median),
                _spread(row.spread),
                _ratio(row.ratio),
                row.target,
                row.verdict or "",
            )
        )
    for result in case.contenders:
        if result.ok:
            continue
        role = result.contender.role
        footnotes.append(f"[{len(footnotes) + 1}] {case.label} {result.contender.name}: {result.error}")
        verdict = "MISS" if role is Role.SUBJECT else ""
        name = _display_name(result.contender.name, role)
        rows.append((case.label, name, "(all)", f"n/a [{len(footnotes)}]", "", "", "", verdict))
    return rows


def _parameters(cases: list[CaseResult]) -> list[str]:
    lines, seen = ["parameters:"], set()
    for case in cases:
        if case.workload.id not in seen:
            seen.add(case.workload.id)
            shown = " ".join(f"{k}={v}" for k, v in case.params.items() if k not in HIDDEN_PARAMS)
            lines.append(f"  {case.workload.id} {case.workload.title}: {shown}")
    return lines


def render_table(cases: list[CaseResult], info: RunInfo) -> str:
    """The results table, with the run's context above it and notes and parameters below."""
    footnotes: list[str] = []
    groups = [_case_rows(case, footnotes) for case in cases]
    all_rows = [row for group in groups for row in group]
    widths = [max([len(column)] + [len(row[i]) for row in all_rows]) for i, column in enumerate(COLUMNS)]
    right = {3, 4, 5}  # numbers

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    load = "/".join(f"{x:.2f}" for x in info.load_before) if info.load_before else "n/a"
    out = [
        f"pyarallel benchmarks  {info.timestamp}  Python {info.python} ({info.implementation}), "
        f"{info.cpu_count} CPUs, load average at start {load}",
        f"mode: {'quick' if info.quick else 'full'}, {info.repeat} repetition(s) per contender, "
        f"median shown; pyarallel {_provenance(info)}",
        *_source_warning(info),
        "",
        line(COLUMNS),
    ]
    for group in groups:
        out.append(rule)
        out.extend(line(cells) for cells in group)
    out.append(rule)
    out.append(
        "* baseline of its case (vs base = median / baseline median); +/- = half the range of the "
        "repetitions, relative to the median; PASS/MISS only on pyarallel rows."
    )
    out.extend(footnotes)
    out.extend(_parameters(cases))
    out.append(f"suite took {info.seconds:.1f} s")
    return "\n".join(out)


def to_json(cases: list[CaseResult], info: RunInfo) -> dict[str, Any]:
    """Everything measured, every repetition included."""
    document: dict[str, Any] = {"run": asdict(info), "cases": []}
    for case in cases:
        rows = {(row.contender, row.metric): row for row in case.rows()}
        contenders = []
        for result in case.contenders:
            metrics = {}
            for key, values in result.values.items():
                row = rows.get((result.contender.name, key))
                metrics[key] = {
                    "unit": case.workload.metric(key).unit,
                    "values": values,
                    "median": row.median if row else None,
                    "ratio_vs_baseline": row.ratio if row else None,
                    "target": row.target if row else "",
                    "verdict": row.verdict if row else None,
                }
            contenders.append(
                {
                    "name": result.contender.name,
                    "role": str(result.contender.role),
                    "status": "ok" if result.ok else "n/a",
                    "error": result.error,
                    "error_detail": result.error_detail or None,
                    "metrics": metrics,
                    "extras": result.extras,
                    "child_seconds": result.child_seconds,
                    "context": result.contexts,
                    "notes": result.notes,
                }
            )
        document["cases"].append(
            {
                "workload": case.workload.id,
                "variant": case.variant,
                "title": case.workload.title,
                "params": case.params,
                "baseline": case.workload.baseline.name,
                "contenders": contenders,
            }
        )
    return document


def write_json(path: Path, cases: list[CaseResult], info: RunInfo) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(cases, info), indent=2, default=repr) + "\n")
