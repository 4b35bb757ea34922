"""A bytecode cache for the children, so that no measurement includes compiling source.

This machine may run Python with ``PYTHONDONTWRITEBYTECODE=1``, and an editable install
has no ``__pycache__`` of its own: every child would then compile pyarallel's modules
(in worker processes too) and W7 would time the compiler. The children therefore run with
``PYTHONPYCACHEPREFIX`` set to a cache under ``benchmarks/results/`` (git-ignored), filled
before the first measurement by ``compileall`` over the packages involved, then by one
interpreter importing them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

__all__ = ["PACKAGES", "child_environment", "prime"]

PACKAGES = ("pyarallel", "loky", "cloudpickle", "joblib", "mpire", "pebble", "pluggy", "tqdm")
STDLIB_PACKAGES = ("concurrent", "multiprocessing", "asyncio", "json", "logging", "importlib", "collections")
PRIME_IMPORTS = (
    "asyncio",
    "concurrent.futures",
    "multiprocessing.pool",
    "multiprocessing.popen_fork",
    "multiprocessing.popen_spawn_posix",
    "multiprocessing.synchronize",
)


def child_environment(cache: Path) -> dict[str, str]:
    """The parent's environment, writing and reading bytecode under ``cache``."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def _package_dirs() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dirs = [str(stdlib / name) for name in STDLIB_PACKAGES if (stdlib / name).is_dir()]
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(spec.submodule_search_locations)
    return dirs


def _run_quietly(command: list[str], env: dict[str, str]) -> None:
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def prime(cache: Path) -> None:
    """Fill ``cache`` (quick when it is already filled: sources are only stat-ed)."""
    cache.mkdir(parents=True, exist_ok=True)
    env = child_environment(cache)
    compile_all = [sys.executable, "-m", "compileall", "-q", "-j", "0"]
    _run_quietly([*compile_all, "-l", sysconfig.get_paths()["stdlib"]], env)
    _run_quietly([*compile_all, *_package_dirs()], env)
    names = [name for name in (*PACKAGES, *PRIME_IMPORTS) if importlib.util.find_spec(name) is not None]
    _run_quietly(
        [sys.executable, "-c", f"import importlib\nfor name in {names!r}: importlib.import_module(name)"], env
    )
