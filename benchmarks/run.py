"""Run pyarallel's benchmark suite: ``python benchmarks/run.py [--quick] [--only W1,W3]
[--repeat N] [--json PATH]`` (``make bench``, ``make bench-quick``).

Every measurement runs in a fresh interpreter started by this same script as
``run.py --child WORKLOAD CONTENDER [VARIANT] [--params JSON]``; that form is also the way
to reproduce one measurement by hand (without ``--params`` it uses the workload's full
parameters, or its quick ones with ``--quick``). See README.md for what is measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bytecode
from harness import child_main
from model import DEFAULT_VARIANT, Workload
from provenance import git_commit, load_average, package_versions, source_fingerprint
from report import RunInfo, render_table, write_json
from suite import run_suite
from workloads import REGISTRY, get

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_JSON = RESULTS / "latest.json"
BYTECODE_CACHE = RESULTS / "pycache"
FULL_REPEAT = 5
QUICK_REPEAT = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 1 repetition (under a minute)")
    parser.add_argument("--only", metavar="W1,W3", help="run only these workloads")
    parser.add_argument(
        "--repeat", type=int, metavar="N", help="repetitions per contender (default 5; quick 1)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", default=DEFAULT_JSON, help="where to write results"
    )
    parser.add_argument("--list", action="store_true", help="list workloads and contenders, then exit")
    parser.add_argument(
        "--child", nargs="+", metavar="ARG", help="internal: WORKLOAD CONTENDER [VARIANT], one measurement"
    )
    parser.add_argument("--params", help="internal: the workload parameters of a --child run, as JSON")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.child is not None and len(args.child) not in (2, 3):
        parser.error("--child takes WORKLOAD CONTENDER [VARIANT]")
    return args


def select(only: str | None) -> list[Workload]:
    if not only:
        return list(REGISTRY.values())
    return [get(name.strip()) for name in only.split(",") if name.strip()]


def describe_registry() -> str:
    lines = []
    for workload in REGISTRY.values():
        lines.append(f"{workload.id}: {workload.title} (variants: {', '.join(workload.variants)})")
        lines.extend(f"    {c.name}  [{c.role}]" for c in workload.contenders)
    return "\n".join(lines)


def snapshot() -> dict[str, Any]:
    """Stored with every repetition: the machine's load and the code under test."""
    load = load_average()
    return {"load_1m": load[0] if load else None, "pyarallel_src": source_fingerprint()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        workload_id, contender, *rest = args.child
        params = json.loads(args.params) if args.params else None
        return child_main(workload_id, contender, rest[0] if rest else DEFAULT_VARIANT, params, args.quick)
    if args.list:
        print(describe_registry())
        return 0
    try:
        workloads = select(args.only)
    except KeyError as error:
        print(error.args[0], file=sys.stderr)
        return 2
    repeat = args.repeat or (QUICK_REPEAT if args.quick else FULL_REPEAT)

    started = time.perf_counter()
    timestamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_before = load_average()
    commit_before, source_before = git_commit(HERE.parent), source_fingerprint()
    print(f"priming the bytecode cache in {BYTECODE_CACHE} ...", file=sys.stderr)
    bytecode.prime(BYTECODE_CACHE)
    env = bytecode.child_environment(BYTECODE_CACHE)
    cases = run_suite(
        workloads,
        quick=args.quick,
        repeat=repeat,
        env=env,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        snapshot=snapshot,
    )
    info = RunInfo(
        timestamp=timestamp,
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        load_before=load_before,
        load_after=load_average(),
        quick=args.quick,
        repeat=repeat,
        seconds=time.perf_counter() - started,
        argv=sys.argv,
        versions=package_versions(),
        pyarallel_commit=(commit_before, git_commit(HERE.parent)),
        pyarallel_source=(source_before, source_fingerprint()),
    )
    print(render_table(cases, info))
    write_json(args.json, cases, info)
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
