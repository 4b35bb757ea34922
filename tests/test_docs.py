"""The plugin guide stays true to the code: its hook reference is the one generated from
the hook specifications, and its Python examples run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("number", range(len(_python_blocks("plugins.md"))))
def test_each_python_example_of_the_plugin_guide_runs(number: int, tmp_path: Path) -> None:
    block = _python_blocks("plugins.md")[number]
    run = subprocess.run(
        [sys.executable, "-c", block], check=False, capture_output=True, text=True, cwd=tmp_path, timeout=100
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("page", ["long-jobs.md"])
def test_the_python_examples_of_the_long_job_pages_run(page: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYARALLEL_CHECKPOINT_SECRET": "docs-test"}  # not the real home's key file
    for block in _python_blocks(page):
        run = subprocess.run(
            [sys.executable, "-c", block],
            check=False,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=50,
            env=env,
        )
        assert run.returncode == 0, f"{page}:\n{block}\n{run.stderr}"
