"""The ``pyarallel`` command (also ``python -m pyarallel``).

``pyarallel plugins`` lists every registered plugin: the distribution and version it came
from (``built-in`` for pyarallel's own, ``run-time`` for one registered by code), the hooks
it implements and the executor names it provides; then every installed plugin that failed
to load, with its error. ``--json`` prints the same as one JSON object for machines.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["main"]

BUILTIN_PREFIX = "pyarallel._builtin."


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.command != "plugins":
        parser.print_help(out or sys.stdout)
        return 2
    report = plugins_report()
    text = json.dumps(report, indent=2) + "\n" if arguments.json else _as_text(report)
    try:
        (out or sys.stdout).write(text)
        (out or sys.stdout).flush()
    except BrokenPipeError:  # the reader went away (``pyarallel plugins | head``)
        return 0
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyarallel", description="pyarallel's command line.")
    commands = parser.add_subparsers(dest="command", metavar="command")
    listing = commands.add_parser(
        "plugins", help="list the registered plugins and the ones that failed to load"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def plugins_report() -> dict[str, Any]:
    """What ``pyarallel plugins`` shows: ``plugins`` (in the order they are asked, most
    recently registered first) and ``errors`` (installed plugins that failed to load)."""
    from pyarallel._plugins import list_plugins, plugin_load_errors

    with warnings.catch_warnings():  # the failures are listed below, not warned about
        warnings.simplefilter("ignore")
        plugins = list_plugins()
    return {
        "plugins": [
            {
                "name": plugin.name,
                "origin": _origin(plugin.name, plugin.distribution),
                "distribution": plugin.distribution,
                "hooks": list(plugin.hooks),
                "executors": list(plugin.executors),
            }
            for plugin in plugins
        ],
        "errors": [
            {
                "name": error.name,
                "value": error.value,
                "distribution": error.distribution,
                "error": error.error,
            }
            for error in plugin_load_errors()
        ],
    }


def _origin(name: str, distribution: str | None) -> str:
    if distribution is not None:
        return distribution
    return "built-in" if name.startswith(BUILTIN_PREFIX) else "run-time"


def _as_text(report: dict[str, Any]) -> str:
    lines = [f"{len(report['plugins'])} plugins (asked in this order):"]
    for plugin in report["plugins"]:
        lines.append(f"  {plugin['name']}  [{plugin['origin']}]")
        if plugin["executors"]:
            lines.append(f"    executors: {', '.join(plugin['executors'])}")
        lines.append(f"    hooks: {', '.join(plugin['hooks']) or '(none)'}")
    errors = report["errors"]
    if errors:
        lines.append(f"{len(errors)} installed plugins failed to load (pyarallel works without them):")
        for error in errors:
            where = f" [{error['distribution']}]" if error["distribution"] else ""
            lines.append(f"  {error['name']} = {error['value']}{where}: {error['error']}")
    return "\n".join(lines) + "\n"
