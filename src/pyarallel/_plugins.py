"""The plugin manager: built once per process, on first use.

It registers the built-in plugins (``pyarallel._builtin``), then loads every installed
distribution's entry points in the ``pyarallel`` group, unless the environment variable
``PYARALLEL_DISABLE_PLUGIN_AUTOLOAD`` is set to ``1``. Plugins registered later are asked
first, so an installed or run-time plugin can replace a built-in one.

Every registration refuses a ``@hookimpl`` function named after no hook specification
(:class:`UnknownHookError`), so a misspelled hook fails loudly instead of never being
called. An entry point that cannot be imported or registered is skipped, reported with a
:class:`PluginLoadWarning` naming it, and kept in :func:`plugin_load_errors`; it never
stops the core from working.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

import pluggy

from pyarallel import hookspecs
from pyarallel._values import FrozenValue

__all__ = [
    "PluginInfo",
    "PluginLoadError",
    "PluginLoadWarning",
    "UnknownHookError",
    "list_plugins",
    "plugin_load_errors",
    "plugin_manager",
    "register_plugin",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "pyarallel"
DISABLE_AUTOLOAD_ENV = "PYARALLEL_DISABLE_PLUGIN_AUTOLOAD"

BUILTIN_PLUGINS = (
    "pyarallel._builtin.thread_executor",
    "pyarallel._builtin.process_executor",
    "pyarallel._builtin.inline_executor",
    "pyarallel._builtin.futures_executor",
    "pyarallel._builtin.token_bucket",
    "pyarallel._builtin.exponential_retry",
    "pyarallel._builtin.passthrough",
    "pyarallel._builtin.sqlite_checkpoint",
    "pyarallel._builtin.progress_bar",
    "pyarallel._builtin.run_logging",
)


class UnknownHookError(pluggy.PluginValidationError):
    """A plugin implements a hook that no hook specification declares (a misspelled name).

    Raised by :func:`register_plugin` (and recorded for an entry point) after the plugin
    has been unregistered again. ``plugin_name`` is the name it was to be registered
    under and ``hooks`` the unknown hook names; the message suggests the closest
    specified name.
    """

    def __init__(self, plugin: object, plugin_name: str, hooks: Sequence[str], message: str) -> None:
        super().__init__(plugin, message)
        self.plugin_name = plugin_name
        self.hooks = tuple(hooks)


class PluginLoadWarning(UserWarning):
    """An installed entry-point plugin could not be loaded or registered and was skipped."""


class PluginLoadError(FrozenValue):
    """One entry point of the ``pyarallel`` group that failed to load or register.

    ``name`` and ``value`` are the entry point's (``value`` is what it points at, such as
    ``"module:object"``), ``distribution`` is ``"name version"`` of the distribution that
    declares it (``None`` if unknown), and ``error`` the ``repr`` of the exception.
    """

    __slots__ = ("distribution", "error", "name", "value")
    __match_args__ = ("name", "value", "distribution", "error")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def name(self) -> str: ...
        @property
        def value(self) -> str: ...
        @property
        def distribution(self) -> str | None: ...
        @property
        def error(self) -> str: ...

    def __init__(self, name: str, value: str, distribution: str | None, error: str) -> None:
        self._set("name", name)
        self._set("value", value)
        self._set("distribution", distribution)
        self._set("error", error)


class _Manager(pluggy.PluginManager):
    """pyarallel's plugin manager: pluggy's, plus what entry-point loading found."""

    def __init__(self) -> None:
        super().__init__("pyarallel")
        # plugin name -> (plugin, "distribution version") for entry-point plugins
        self.distributions: dict[str, tuple[object, str]] = {}
        self.load_errors: list[PluginLoadError] = []


_lock = threading.RLock()
_manager: _Manager | None = None
_building: _Manager | None = None  # the manager being built, while entry points load


def plugin_manager() -> _Manager:
    """The process-wide plugin manager, built on first call."""
    if _manager is not None:
        return _manager
    return _build_once()


def _build_once() -> _Manager:
    global _manager, _building
    with _lock:
        if _manager is not None:
            return _manager
        if _building is not None:  # an entry point being loaded asks for the manager
            return _building
        _building = manager = _Manager()
        try:
            _populate(manager)
        finally:
            _building = None
        _manager = manager
    _warn_load_errors(manager.load_errors)  # after the manager is installed, even if a warning raises
    return manager


def _populate(manager: _Manager) -> None:
    import importlib

    manager.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        _register_checked(manager, importlib.import_module(module_name), module_name)
    if os.environ.get(DISABLE_AUTOLOAD_ENV) == "1":
        return
    found = _scan_entry_points(ENTRY_POINT_GROUP)
    _load_entry_points(manager, _metadata_entry_points(ENTRY_POINT_GROUP) if found is None else found)


# An entry point found: its name, its value ("module:attribute") and "project version" of
# its distribution (None if unknown).
_EntryPoint = tuple[str, str, str | None]


def _load_entry_points(manager: _Manager, entry_points: Iterable[_EntryPoint]) -> None:
    """Load and register every entry point; record (never raise) a failure."""
    for name, value, distribution in entry_points:
        if manager.has_plugin(name) or manager.is_blocked(name):
            continue  # already registered (another distribution's entry point won) or blocked
        try:
            plugin = _load_object(value)
            _register_checked(manager, plugin, name)
        except (Exception, SystemExit) as error:  # a plugin's import must not end the program
            manager.load_errors.append(PluginLoadError(name, value, distribution, repr(error)))
            continue
        if distribution is not None:
            manager.distributions[name] = (plugin, distribution)


def _load_object(value: str) -> object:
    """What an entry point's ``module:attribute.path`` value names (as
    ``importlib.metadata.EntryPoint.load`` does; extras in brackets are ignored)."""
    import importlib

    module_name, _, attributes = value.partition("[")[0].strip().partition(":")
    found: object = importlib.import_module(module_name.strip())
    for attribute in filter(None, attributes.strip().split(".")):
        found = getattr(found, attribute)
    return found


def _metadata_entry_points(group: str) -> list[_EntryPoint]:
    """The entry points in ``group`` as ``importlib.metadata`` finds them (zip archives and
    import hooks included)."""
    import importlib.metadata

    found: list[_EntryPoint] = []
    for entry_point in importlib.metadata.entry_points(group=group):
        dist = entry_point.dist
        found.append(
            (entry_point.name, entry_point.value, None if dist is None else f"{dist.name} {dist.version}")
        )
    return found


def _warn_load_errors(errors: Iterable[PluginLoadError]) -> None:
    import warnings

    for failure in errors:
        source = f" from {failure.distribution}" if failure.distribution else ""
        warnings.warn(
            f"pyarallel plugin entry point {failure.name!r} ({failure.value}){source} was not "
            f"loaded: {failure.error}",
            PluginLoadWarning,
            stacklevel=2,
        )


def plugin_load_errors() -> list[PluginLoadError]:
    """The entry points that failed to load or register when the plugin manager was built
    (each was also reported with a :class:`PluginLoadWarning`), in the order tried."""
    return list(plugin_manager().load_errors)


def _register_checked(manager: pluggy.PluginManager, plugin: object, name: str | None) -> str:
    """``manager.register`` that also refuses hook implementations matching no hook spec.

    On refusal the manager is left as it was and ``UnknownHookError`` is raised.
    """
    known = set(vars(manager.hook))
    registered = manager.register(plugin, name=name)
    if registered is None:  # pluggy returns None for a blocked name
        raise ValueError(f"plugin name {name!r} is blocked and cannot be registered")
    unknown = [
        caller.name
        for caller in manager.get_hookcallers(plugin) or ()
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    ]
    if unknown:
        manager.unregister(plugin)
        for hook_name in set(vars(manager.hook)) - known:  # the callers pluggy made for them
            delattr(manager.hook, hook_name)
        message = _unknown_hooks_message(manager, plugin, registered, unknown)
        raise UnknownHookError(plugin, registered, unknown, message)
    return registered


def _unknown_hooks_message(
    manager: pluggy.PluginManager, plugin: object, plugin_name: str, unknown: Iterable[str]
) -> str:
    import difflib

    specified = sorted(caller.name for caller in vars(manager.hook).values() if caller.has_spec())
    problems = []
    for hook_name in sorted(unknown):
        close = difflib.get_close_matches(hook_name, specified, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{hook_name!r}{hint}")
    return (
        f"plugin {plugin_name!r} ({_describe(plugin)}) implements unknown hook(s) "
        f"{', '.join(problems)}; it was not registered. Known hooks: {', '.join(specified)}"
    )


def _describe(plugin: object) -> str:
    """``module x``, ``class m.C`` or ``m.C instance``: what a plugin is, for messages."""
    kind = type(plugin)
    if kind.__name__ == "module":
        return f"module {getattr(plugin, '__name__', '?')}"
    if isinstance(plugin, type):
        return f"class {plugin.__module__}.{plugin.__qualname__}"
    return f"{kind.__module__}.{kind.__qualname__} instance"


def _scan_entry_points(group: str) -> list[_EntryPoint] | None:
    """The entry points in ``group``, read straight from the ``entry_points.txt`` files of
    the ``*.dist-info`` and ``*.egg-info`` directories on ``sys.path``; or ``None`` when
    that cannot see everything (a zip archive on the path, an import hook that provides
    distributions, an unreadable file), and ``importlib.metadata`` must look instead.

    ``importlib.metadata`` costs tens of milliseconds to import (a third of a fast
    program's first call) and this scan a fraction of one. As there, a distribution found
    twice on the path counts where it is found first.
    """
    import sys
    from importlib.machinery import PathFinder

    if any(finder is not PathFinder and hasattr(finder, "find_distributions") for finder in sys.meta_path):
        return None
    found: list[_EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                metadata = sorted(
                    item.path for item in listing if item.name.endswith((".dist-info", ".egg-info"))
                )
        except FileNotFoundError:
            continue
        except OSError:  # not a directory (a zip archive) or unreadable
            return None
        for directory in metadata:
            try:
                entry_points = _read_group(os.path.join(directory, "entry_points.txt"), group)
                if not entry_points:
                    continue
                distribution = _distribution(directory)
            except (FileNotFoundError, NotADirectoryError):  # no entry points, or a one-file egg-info
                continue
            except (OSError, UnicodeDecodeError):
                return None
            key = (distribution or directory).split(" ")[0].lower().replace("-", "_")
            if key in seen:
                continue
            seen.add(key)
            found.extend((name, value, distribution) for name, value in entry_points)
    return found


def _read_group(path: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of section ``[group]`` of an ``entry_points.txt``."""
    entries: list[tuple[str, str]] = []
    in_group = False
    with open(path, encoding="utf-8") as file:
        for raw in file:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                in_group = line == f"[{group}]"
            elif in_group and "=" in line:
                name, _, value = line.partition("=")
                entries.append((name.strip(), value.strip()))
    return entries


def _distribution(directory: str) -> str | None:
    """``"project version"`` from a metadata directory's ``METADATA`` (or ``PKG-INFO``)."""
    fields: dict[str, str] = {}
    for file_name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(directory, file_name), encoding="utf-8") as file:
                for line in file:
                    if not line.strip():
                        break  # the headers end at the first blank line
                    key, _, value = line.partition(":")
                    if key in ("Name", "Version") and key not in fields:
                        fields[key] = value.strip()
        except FileNotFoundError:
            continue
        break
    if "Name" not in fields:
        return None
    return f"{fields['Name']} {fields.get('Version', '')}".strip()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` (a module, class or instance with ``@hookimpl`` functions).

    It takes precedence over every plugin registered before it. Returns the name it is
    registered under (``name``, or one pluggy derives). Raises ``ValueError`` if the
    plugin or the name is already registered or the name is blocked, and pluggy's
    ``PluginValidationError`` if a hook implementation does not match its specification:
    its subclass :class:`UnknownHookError` when a ``@hookimpl`` function is named after no
    hook (a misspelling), in which case the plugin is not registered.
    """
    return _register_checked(plugin_manager(), plugin, name)


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


class PluginInfo(FrozenValue):
    """One registered plugin: its ``name``, the ``hooks`` it implements, the executor
    names it provides, and the distribution (``"name version"``) that installed it, if any.
    """

    __slots__ = ("distribution", "executors", "hooks", "name")
    __match_args__ = ("name", "hooks", "executors", "distribution")
    if TYPE_CHECKING:  # read-only to type checkers, as they are at run time

        @property
        def name(self) -> str: ...
        @property
        def hooks(self) -> tuple[str, ...]: ...
        @property
        def executors(self) -> tuple[str, ...]: ...
        @property
        def distribution(self) -> str | None: ...

    def __init__(
        self, name: str, hooks: tuple[str, ...], executors: tuple[str, ...], distribution: str | None
    ) -> None:
        self._set("name", name)
        self._set("hooks", hooks)
        self._set("executors", executors)
        self._set("distribution", distribution)


def list_plugins() -> list[PluginInfo]:
    """Every registered plugin, in the order they are asked (most recently registered first)."""
    manager = plugin_manager()
    executors = executor_names_by_plugin()
    infos = []
    for name, plugin in reversed(manager.list_name_plugin()):
        if plugin is None:  # a blocked name
            continue
        hooks = tuple(sorted(caller.name for caller in manager.get_hookcallers(plugin) or ()))
        loaded = manager.distributions.get(name)
        distribution = loaded[1] if loaded is not None and loaded[0] is plugin else None
        infos.append(PluginInfo(name, hooks, tuple(executors.get(name, ())), distribution))
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
