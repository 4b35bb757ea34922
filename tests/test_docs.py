"""Generated documentation stays true to its sources: the plugin guide's hook reference is
the one generated from the hook specifications, and the comparison page's table the one
generated from the benchmark figures in ``docs/comparison_data.json``.

The Python examples of every page run in ``tests/test_docs_site.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_hook_reference_is_generated_from_the_hook_specs() -> None:
    check = subprocess.run(
        [sys.executable, str(DOCS / "hook_reference.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    page = (DOCS / "plugins.md").read_text(encoding="utf-8")
    from pyarallel import hookspecs

    for name in (n for n in vars(hookspecs) if n.startswith("pyarallel_")):
        assert f"### `{name}(" in page, name


def test_the_comparison_table_is_generated_from_the_benchmark_figures() -> None:
    check = subprocess.run(
        [sys.executable, str(DOCS / "comparison_table.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    page = (DOCS / "comparison.md").read_text(encoding="utf-8")
    assert "not measured yet" not in page, "a row of the comparison has no figures"
