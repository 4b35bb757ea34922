"""Where a result comes from: package versions, the pyarallel commit and a fingerprint of
its source, and the machine's load. pyarallel may be edited while the suite runs, so the
fingerprint is taken before every measurement and changes are flagged in the report."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import subprocess
from pathlib import Path

__all__ = ["VERSIONED", "git_commit", "load_average", "package_versions", "source_fingerprint"]

VERSIONED = ("pyarallel", "joblib", "mpire", "pebble", "loky", "cloudpickle", "pluggy")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: Path) -> str | None:
    """The short commit of ``repo``, with "+dirty" when its ``src/`` has changes."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def source_fingerprint(package: str = "pyarallel") -> str | None:
    """A short hash of the package's ``.py`` files as they are on disk now (the code the
    next child will import), or None if it cannot be found."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    digest = hashlib.sha1(usedforsecurity=False)
    for location in spec.submodule_search_locations:
        root = Path(location)
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<unreadable>")
    return digest.hexdigest()[:10]


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None
