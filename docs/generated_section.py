"""Writes, or checks, a generated section of a documentation page: the text between two
marker comments. Used by ``hook_reference.py`` and ``comparison_table.py``."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["write_or_check"]


def write_or_check(page: Path, start: str, end: str, section: str, *, check: bool, regenerate: str) -> int:
    """Put ``section`` between the markers ``start`` and ``end`` of ``page``; with
    ``check``, only compare. Returns the exit status: 0 when written or up to date, 1 when
    stale (``regenerate`` says how to fix it), 2 when the markers are missing."""
    text = page.read_text(encoding="utf-8")
    before, found_start, rest = text.partition(start)
    _, found_end, after = rest.partition(end)
    if not found_start or not found_end:
        print(f"{page}: the markers {start!r} and {end!r} are missing", file=sys.stderr)
        return 2
    new = f"{before}{start}\n\n{section}\n{end}{after}"
    if check:
        if new != text:
            print(f"{page} is out of date: run `{regenerate}`", file=sys.stderr)
            return 1
        return 0
    page.write_text(new, encoding="utf-8")
    return 0
