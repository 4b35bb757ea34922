"""A griffe extension for the API reference: pyarallel's docstrings in Markdown.

The docstrings are written for Sphinx: ``:param x:`` fields (which mkdocstrings parses
with ``docstring_style: sphinx``), inline roles such as ``:class:`~pyarallel.RunStatus```
and doctest examples (``>>> ...``). Markdown has no roles, and reads a ``>>>`` line as a
nested quote, so before the docstrings are parsed this extension rewrites:

- a role (``:class:``, ``:func:``, ``:meth:``, ``:attr:``, ``:mod:``, ``:data:``,
  ``:exc:``, ``:obj:``) as inline code naming its target (``~`` keeps the last part, as
  in Sphinx);
- a run of doctest lines, with the output lines after it, as a fenced ``pycon`` block;
- a section title underlined with ``===`` or ``---`` as a bold line (a Markdown heading
  there would outrank the API page's own);
- a paragraph ending in ``::`` (the indented literal block after it is already a
  Markdown code block) as ending in ``:``.

The docstrings in ``src/`` stay as they are; ``mkdocs.yml`` loads this file through the
python handler's ``extensions`` option.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    target = target.strip()
    if "<" in target and target.endswith(">"):  # :class:`text <target>`
        target = target[: target.index("<")].strip()
    elif short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _doctests(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.lstrip().startswith(">>>"):
            out.append(line)
            index += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        block: list[str] = []
        while index < len(lines) and lines[index].strip() and lines[index].startswith(indent):
            block.append(lines[index][len(indent) :])
            index += 1
        out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```"]
    return "\n".join(out)


_UNDERLINE = re.compile(r"^([=\-~^])\1{2,}$")


def _titles_and_literals(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    for index, line in enumerate(lines):
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if line.strip() and _UNDERLINE.match(following) and len(following) >= len(line.strip()):
            out.append(f"**{line.strip()}**")
        elif _UNDERLINE.match(line.strip()) and out and out[-1].startswith("**"):
            continue  # the underline of the title above
        elif line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1] if line.strip() != "::" else "")
        else:
            out.append(line)
    return "\n".join(out)


def markdown(text: str) -> str:
    """A docstring's reST inline markup, titles, literal-block markers and doctests, as
    Markdown."""
    return _doctests(_titles_and_literals(_ROLE.sub(_role, text)))


class RstToMarkdown(griffe.Extension):
    """Rewrites every docstring griffe loads (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
