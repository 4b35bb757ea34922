"""A user's script type-checks: ``mypy --strict`` accepts every documented call form, infers
the types that matter (``tests/typed_usage/*_forms.py`` pin them with ``assert_type``), and
rejects the forms the documentation says are errors (``tests/typed_usage/rejected_forms.py``,
whose ``# type: ignore[code]`` comments must all be used). The documented forms also run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TYPED_USAGE = REPO / "tests" / "typed_usage"
CHECKED = sorted(TYPED_USAGE.glob("*.py"))
RUNNABLE = [path for path in CHECKED if path.name.endswith("_forms.py") and path.name != "rejected_forms.py"]

_ERROR_LINE = re.compile(r"^(?P<path>[^:\n]+\.py):(?P<line>\d+): (?:error|note):")


def _with_source(output: str) -> str:
    """mypy's output, each error followed by the line of source it is about (an "unused
    type: ignore" says nothing else about which form was accepted)."""
    shown: list[str] = []
    for line in output.splitlines():
        shown.append(line)
        match = _ERROR_LINE.match(line)
        if match and ": error:" in line:
            source = (REPO / match["path"]).read_text().splitlines()[int(match["line"]) - 1]
            shown.append(f"    | {source.strip()}")
    return "\n".join(shown)


@pytest.mark.timeout(300)
def test_mypy_strict_accepts_documented_forms_and_rejects_the_bad_ones(
    request: pytest.FixtureRequest,
) -> None:
    pytest.importorskip("mypy")
    assert len(CHECKED) >= 4, CHECKED
    # A cache kept between runs (in pytest's cache directory): a warm run takes about a
    # second, a cold one (first run, or after mypy's own upgrade) a few more.
    pytest_cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = pytest_cache.mkdir("mypy-typed-usage") if pytest_cache is not None else None
    command = [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores", "--no-error-summary"]
    command += ["--cache-dir", str(cache)] if cache else ["--no-incremental"]
    command += [str(path.relative_to(REPO)) for path in CHECKED]
    checked = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    if checked.returncode != 0:
        pytest.fail(
            "mypy --strict rejects documented forms (or accepts a bad one):\n"
            f"{_with_source(checked.stdout)}\n{checked.stderr}",
            pytrace=False,
        )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda path: path.stem)
def test_documented_forms_run(path: Path) -> None:
    """Every form the typed-usage files declare valid also works at run time."""
    ran = subprocess.run(
        [sys.executable, str(path)], cwd=REPO, capture_output=True, text=True, timeout=100, check=False
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-5000:]
