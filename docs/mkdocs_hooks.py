"""MkDocs hooks for the documentation site (``hooks:`` in ``mkdocs.yml``).

The pages are also read on their own, in the repository, where a relative link to a
file outside ``docs/`` (``../benchmarks/README.md``, ``../plugins/pyarallel-dask/README.md``,
and in ``CONTRIBUTING.md``, which ``contributing.md`` includes, links such as
``docs/performance.md``) works. The site holds only ``docs/``, so before a page is
rendered, a page that is a single snippet include (``--8<-- "CONTRIBUTING.md"``) is
expanded here rather than by ``pymdownx.snippets``, and each relative link is resolved
against the file it was written in:

- a link to a page of the site stays a link (made relative to the page it is shown on);
- ``CONTRIBUTING.md`` becomes a link to the Contributing page, ``README.md`` to Home;
- any other file of the repository becomes its path as inline code, without a link.

A link that resolves to nothing is left alone, so that ``mkdocs build --strict`` still
reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")
_INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$', re.M)
_PAGES_FOR = {"CONTRIBUTING.md": "contributing.md", "README.md": "index.md"}


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    docs = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    source = page.file.src_uri
    written_in = (docs / source).parent
    include = _INCLUDE.fullmatch(markdown.strip())
    if include:  # a page that is one snippet include (contributing.md): expand it here, so
        # that its links can be rewritten, relative to the included file
        included = root / include.group(1)
        markdown = included.read_text(encoding="utf-8")
        written_in = included.parent
    known = {f.src_uri for f in files.documentation_pages()}
    out: list[str] = []
    fenced = False
    for line in markdown.split("\n"):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        out.append(
            line
            if fenced
            else _LINK.sub(
                lambda m: _rewrite(m, written_in, docs=docs, root=root, source=source, known=known), line
            )
        )
    return "\n".join(out)


def _rewrite(
    match: re.Match[str], written_in: Path, *, docs: Path, root: Path, source: str, known: set[str]
) -> str:
    text, target = match.groups()
    if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return match.group(0)  # a URL, an anchor on the same page, or an absolute path
    path, hash_, anchor = target.partition("#")
    resolved = (written_in / path).resolve()
    try:
        in_docs = resolved.relative_to(docs).as_posix()
    except ValueError:
        in_docs = None
    if in_docs is None:
        try:
            in_repo = resolved.relative_to(root).as_posix()
        except ValueError:
            return match.group(0)
        if in_repo in _PAGES_FOR:
            in_docs = _PAGES_FOR[in_repo]
        elif resolved.exists():
            shown = in_repo + (hash_ + anchor if anchor else "")
            return f"`{shown}`" if text.strip("`") in (in_repo, shown) else f"{text} (`{shown}`)"
        else:
            return match.group(0)
    if in_docs not in known:
        return match.group(0)
    relative = posixpath.relpath(in_docs, posixpath.dirname(source) or ".")
    return f"[{text}]({relative}{hash_}{anchor})"
