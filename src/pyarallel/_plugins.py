"""The plugin manager: built once per process, on first use.

It registers the built-in plugins (``pyarallel._builtin``), then loads every installed
distribution's entry points in the ``pyarallel`` group, unless the environment variable
``PYARALLEL_DISABLE_PLUGIN_AUTOLOAD`` is set to ``1``. Plugins registered later are asked
first, so an installed or run-time plugin can replace a built-in one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import pluggy

from pyarallel import hookspecs

__all__ = ["PluginInfo", "list_plugins", "plugin_manager", "register_plugin", "unregister_plugin"]

ENTRY_POINT_GROUP = "pyarallel"
DISABLE_AUTOLOAD_ENV = "PYARALLEL_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN_PLUGINS = (
    "pyarallel._builtin.thread_executor",
    "pyarallel._builtin.process_executor",
    "pyarallel._builtin.futures_executor",
    "pyarallel._builtin.token_bucket",
    "pyarallel._builtin.exponential_retry",
)

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first call."""
    global _manager
    if _manager is None:
        with _lock:
            if _manager is None:
                _manager = _build_manager()
    return _manager


def _build_manager() -> pluggy.PluginManager:
    import importlib

    manager = pluggy.PluginManager("pyarallel")
    manager.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(module_name), name=module_name)
    if os.environ.get(DISABLE_AUTOLOAD_ENV) != "1" and _may_declare_entry_points(ENTRY_POINT_GROUP):
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return manager


def _may_declare_entry_points(group: str) -> bool:
    """False only when no installed distribution can declare an entry point in ``group``.

    Loading entry points imports ``importlib.metadata``, which costs tens of milliseconds
    (a third of a fast program's first call), usually to find nothing. This check reads
    only the ``entry_points.txt`` files of the ``*.dist-info`` and ``*.egg-info``
    directories on ``sys.path``; anything it cannot see through (a zip archive on the
    path, an import hook that provides distributions) counts as a possible plugin, and
    then the full loader runs.
    """
    import sys
    from importlib.machinery import PathFinder

    if any(finder is not PathFinder and hasattr(finder, "find_distributions") for finder in sys.meta_path):
        return True
    header = f"[{group}]"
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as found:
                metadata = [item.path for item in found if item.name.endswith((".dist-info", ".egg-info"))]
        except FileNotFoundError:
            continue
        except OSError:  # not a directory (a zip archive) or unreadable
            return True
        for directory in metadata:
            try:
                with open(os.path.join(directory, "entry_points.txt"), encoding="utf-8") as file:
                    if any(line.strip() == header for line in file):
                        return True
            except (FileNotFoundError, NotADirectoryError):  # no entry points, or a one-file egg-info
                continue
            except (OSError, UnicodeDecodeError):
                return True
    return False


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` (a module, class or instance with ``@hookimpl`` functions).

    It takes precedence over every plugin registered before it. Returns the name it is
    registered under (``name``, or one pluggy derives). Raises ``ValueError`` if the
    plugin or the name is already registered, and pluggy's ``PluginValidationError`` if
    a hook implementation does not match its specification.
    """
    manager = plugin_manager()
    registered = manager.register(plugin, name=name)
    if registered is None:  # pluggy returns None for a blocked name
        raise ValueError(f"plugin name {name!r} is blocked and cannot be registered")
    return registered


def unregister_plugin(plugin: object) -> None:
    """Unregister a plugin given as the object itself or the name it is registered under.

    Raises ``ValueError`` if no such plugin is registered.
    """
    manager = plugin_manager()
    if isinstance(plugin, str):
        if manager.get_plugin(plugin) is None:
            raise ValueError(f"no plugin is registered under the name {plugin!r}")
        manager.unregister(name=plugin)
        return
    if not manager.is_registered(plugin):
        raise ValueError(f"plugin {plugin!r} is not registered")
    manager.unregister(plugin)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One registered plugin: its ``name``, the ``hooks`` it implements, the executor
    names it provides, and the distribution (``"name version"``) that installed it, if any.
    """

    name: str
    hooks: tuple[str, ...]
    executors: tuple[str, ...]
    distribution: str | None


def list_plugins() -> list[PluginInfo]:
    """Every registered plugin, in the order they are asked (most recently registered first)."""
    manager = plugin_manager()
    distributions = {
        id(plugin): f"{dist.project_name} {dist.version}" for plugin, dist in manager.list_plugin_distinfo()
    }
    executors = executor_names_by_plugin()
    infos = []
    for name, plugin in reversed(manager.list_name_plugin()):
        hooks = tuple(sorted(caller.name for caller in manager.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(name, hooks, tuple(executors.get(name, ())), distributions.get(id(plugin))))
    return infos


_names_cache: tuple[tuple[object, ...], dict[str, list[str]]] | None = None


def executor_names_by_plugin() -> dict[str, list[str]]:
    """Executor names each plugin provides, keyed by plugin name, most recent plugin first.

    Plugins are asked again only when the set of implementations has changed."""
    global _names_cache
    impls = plugin_manager().hook.pyarallel_executor_names.get_hookimpls()
    if _names_cache is not None and _names_cache[0] == tuple(impls):
        return _names_cache[1]
    names: dict[str, list[str]] = {}
    for impl in reversed(impls):
        provided = cast(Iterable[str], impl.function())
        names[impl.plugin_name] = list(provided)
    _names_cache = (tuple(impls), names)
    return names


def describe_executor_names() -> str:
    """A human list such as ``'thread' (pyarallel._builtin.thread_executor), ...``."""
    listed = [
        f"{name!r} ({plugin})" for plugin, names in executor_names_by_plugin().items() for name in names
    ]
    return ", ".join(listed) or "none"
