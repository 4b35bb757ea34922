"""Plugin safety: a misspelled hook is refused at registration, and a broken installed
plugin is reported (with its name and distribution) without stopping the core.

Uses real pluggy, and real entry points from a distribution written to a temporary
directory on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

import pyarallel
from pyarallel import _plugins, hookimpl, list_plugins, parallel_map
from pyarallel._plugins import (
    PluginLoadError,
    PluginLoadWarning,
    UnknownHookError,
    plugin_load_errors,
    plugin_manager,
)
from pyarallel.contracts import RunInfo

# -- unknown hooks at run-time registration ---------------------------------------------


class MisspelledObserver:
    """Means to observe results, but the hook name is misspelled."""

    def __init__(self) -> None:
        self.started: list[RunInfo] = []

    @hookimpl
    def pyarallel_run_start(self, run: RunInfo) -> None:
        self.started.append(run)

    @hookimpl
    def pyarallel_item_reslt(self, run: RunInfo, result: object) -> None:
        raise AssertionError("never called")


class CorrectObserver:
    def __init__(self) -> None:
        self.results: list[int | None] = []

    @hookimpl
    def pyarallel_item_result(self, result: pyarallel.ItemResult[int]) -> None:
        self.results.append(result.value)


def _manager_state() -> tuple[object, ...]:
    manager = plugin_manager()
    return (
        tuple(manager.list_name_plugin()),
        tuple(sorted(vars(manager.hook))),
        tuple(
            (name, tuple(impl.function for impl in caller.get_hookimpls()))
            for name, caller in sorted(vars(manager.hook).items())
        ),
    )


def test_a_misspelled_hook_is_refused_naming_the_plugin_and_the_hook(register: Callable[..., str]) -> None:
    before = _manager_state()
    plugin = MisspelledObserver()
    with pytest.raises(UnknownHookError) as caught:
        register(plugin, "typo-observer")
    message = str(caught.value)
    assert "'typo-observer'" in message
    assert "MisspelledObserver instance" in message
    assert "'pyarallel_item_reslt'" in message
    assert "did you mean 'pyarallel_item_result'?" in message
    assert isinstance(caught.value, pluggy.PluginValidationError)
    assert caught.value.plugin is plugin
    assert caught.value.plugin_name == "typo-observer"
    assert caught.value.hooks == ("pyarallel_item_reslt",)

    # the manager is exactly as before: not registered, no stray hook caller left behind
    assert not plugin_manager().is_registered(plugin)
    assert plugin_manager().get_plugin("typo-observer") is None
    assert not hasattr(plugin_manager().hook, "pyarallel_item_reslt")
    assert _manager_state() == before
    assert "typo-observer" not in [info.name for info in list_plugins()]

    # its correctly named hook is not called either, and runs work
    assert parallel_map(abs, [-1, -2]).values() == [1, 2]
    assert plugin.started == []


def test_a_module_plugin_with_a_misspelled_hook_is_refused(register: Callable[..., str]) -> None:
    module = types.ModuleType("typo_module_plugin")

    @hookimpl
    def pyarallel_excutor(executor: object) -> None:
        return None

    module.pyarallel_excutor = pyarallel_excutor  # type: ignore[attr-defined]
    with pytest.raises(
        UnknownHookError, match=r"'typo_module_plugin' \(module typo_module_plugin\)"
    ) as caught:
        register(module)
    assert "did you mean 'pyarallel_executor'?" in str(caught.value)
    assert not plugin_manager().is_registered(module)


def test_an_unknown_hook_with_no_close_name_gets_no_suggestion(register: Callable[..., str]) -> None:
    class Unrelated:
        @hookimpl
        def completely_different(self) -> None:
            pass

    with pytest.raises(UnknownHookError) as caught:
        register(Unrelated(), "unrelated")
    assert "'completely_different'" in str(caught.value)
    assert "did you mean" not in str(caught.value)
    assert "Known hooks: pyarallel_checkpoint_store, pyarallel_executor, " in str(caught.value)


def test_a_correct_plugin_still_registers_and_is_called(register: Callable[..., str]) -> None:
    plugin = CorrectObserver()
    assert register(plugin, "correct-observer") == "correct-observer"
    assert plugin_manager().is_registered(plugin)
    assert list_plugins()[0].hooks == ("pyarallel_item_result",)
    parallel_map(abs, [-1, -2, -3])
    assert len(plugin.results) == 3
    assert set(plugin.results) == {1, 2, 3}


def test_an_optional_hook_is_not_refused(register: Callable[..., str]) -> None:
    class Optional:
        @hookimpl(optionalhook=True)
        def pyarallel_some_future_hook(self) -> None:
            pass

    plugin = Optional()
    register(plugin, "optional")
    assert plugin_manager().is_registered(plugin)


def test_a_bad_signature_is_still_refused_and_leaves_nothing_registered(register: Callable[..., str]) -> None:
    class WrongArgument:
        @hookimpl
        def pyarallel_item_result(self, item: object) -> None:
            pass

    plugin = WrongArgument()
    with pytest.raises(pluggy.PluginValidationError, match="item"):
        register(plugin, "wrong-argument")
    assert not plugin_manager().is_registered(plugin)


def test_the_builtin_plugins_pass_the_unknown_hook_check() -> None:
    names = {name for name, _ in plugin_manager().list_name_plugin()}
    assert set(_plugins.BUILTIN_PLUGINS) <= names


# -- entry points -----------------------------------------------------------------------

GOOD_PLUGIN = '''
"""A working plugin: the "fakegood" executor, run inline."""

from concurrent.futures import Future

from pyarallel import hookimpl
from pyarallel.contracts import NO_CAPABILITIES


class InlineBackend:
    name = "fakegood"
    capacity = 1
    capabilities = NO_CAPABILITIES

    def until_ready(self):
        return None

    def submit(self, fn, /, *args):
        future = Future()
        future.set_result(fn(*args))
        return future

    def close(self, *, abort):
        pass


class Plugin:
    @hookimpl
    def pyarallel_executor_names(self):
        return ("fakegood",)

    @hookimpl
    def pyarallel_executor(self, executor):
        return InlineBackend() if executor == "fakegood" else None


plugin = Plugin()
'''

BROKEN_PLUGIN = '''
"""A plugin whose import fails."""
raise ImportError("fakeplugin_broken needs a module that is not installed")
'''

MISSPELLED_PLUGIN = '''
"""A plugin with a misspelled hook name."""
from pyarallel import hookimpl


@hookimpl
def pyarallel_item_reslt(run, result):
    raise AssertionError("never called")
'''

EXITING_PLUGIN = '''
"""A plugin that ends the interpreter when imported."""
raise SystemExit(3)
'''

SELF_REGISTERING_PLUGIN = '''
"""A plugin module that registers an observer when imported (asking for the manager
while it is being built)."""
import pyarallel


class Counter:
    results = 0

    @pyarallel.hookimpl
    def pyarallel_item_result(self):
        Counter.results += 1


pyarallel.register_plugin(Counter(), name="fake-self-registered-counter")
'''

MODULES = {
    "fakeplugin_good": GOOD_PLUGIN,
    "fakeplugin_broken": BROKEN_PLUGIN,
    "fakeplugin_misspelled": MISSPELLED_PLUGIN,
    "fakeplugin_exiting": EXITING_PLUGIN,
    "fakeplugin_selfreg": SELF_REGISTERING_PLUGIN,
}

ENTRY_POINTS = """\
[console_scripts]
fakeplugin = fakeplugin_good:main

[pyarallel]
fake-broken = fakeplugin_broken
fake-misspelled = fakeplugin_misspelled
fake-good = fakeplugin_good:plugin
fake-exiting = fakeplugin_exiting
fake-selfreg = fakeplugin_selfreg
"""


def _install_fake_distribution(root: Path) -> None:
    for module, source in MODULES.items():
        (root / f"{module}.py").write_text(source)
    dist_info = root / "fakeplugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS)
    (dist_info / "RECORD").write_text("")


@pytest.fixture
def fresh_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake distribution on ``sys.path`` and no plugin manager yet; the process-wide
    manager (and the imported fake modules) are restored afterwards."""
    _install_fake_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(_plugins.DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.setattr(_plugins, "_manager", None)
    monkeypatch.setattr(_plugins, "_names_cache", None)
    try:
        yield tmp_path
    finally:
        for module in MODULES:
            sys.modules.pop(module, None)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("fresh_manager")
def test_broken_entry_points_are_reported_and_the_rest_work() -> None:
    with pytest.warns(PluginLoadWarning) as caught:
        manager = plugin_manager()
    messages = [str(warning.message) for warning in caught if warning.category is PluginLoadWarning]
    assert len(messages) == 3, messages
    assert "'fake-broken' (fakeplugin_broken) from fakeplugin 1.0" in messages[0]
    assert "ImportError" in messages[0]
    assert "'fake-misspelled' (fakeplugin_misspelled) from fakeplugin 1.0" in messages[1]
    assert "pyarallel_item_reslt" in messages[1]
    assert "'fake-exiting'" in messages[2]
    assert "SystemExit(3)" in messages[2]

    errors = plugin_load_errors()
    assert [error.name for error in errors] == ["fake-broken", "fake-misspelled", "fake-exiting"]
    assert all(isinstance(error, PluginLoadError) for error in errors)
    assert errors[0] == PluginLoadError(
        "fake-broken",
        "fakeplugin_broken",
        "fakeplugin 1.0",
        "ImportError('fakeplugin_broken needs a module that is not installed')",
    )
    assert errors[1].error.startswith("UnknownHookError(")
    assert "did you mean 'pyarallel_item_result'?" in errors[1].error

    # the misspelled plugin was imported but not registered, and left no hook behind
    assert "fakeplugin_misspelled" in sys.modules
    assert manager.get_plugin("fake-misspelled") is None
    assert not hasattr(manager.hook, "pyarallel_item_reslt")

    # the good ones are registered and listed with their distribution
    infos = {info.name: info for info in list_plugins()}
    assert infos["fake-good"].executors == ("fakegood",)
    assert infos["fake-good"].distribution == "fakeplugin 1.0"
    assert infos["fake-selfreg"].distribution == "fakeplugin 1.0"
    assert infos["fake-self-registered-counter"].distribution is None  # registered at run time
    assert infos["pyarallel._builtin.thread_executor"].distribution is None
    assert "fake-broken" not in infos

    # the core keeps working, with the built-ins and with the good plugin
    assert pyarallel.parallel_map(abs, [-1, -2]).values() == [1, 2]
    assert parallel_map(abs, [-3, -4], executor="fakegood").values() == [3, 4]
    counter = sys.modules["fakeplugin_selfreg"].Counter
    assert counter.results == 4


def test_the_process_wide_manager_is_back_after_a_fresh_one_was_built() -> None:
    # (runs after the test above when the module runs in order; holds in any order)
    names = {info.name for info in list_plugins()}
    assert "fake-good" not in names
    assert set(_plugins.BUILTIN_PLUGINS) <= names


@pytest.mark.timeout(60)
def test_an_entry_point_under_a_registered_name_is_skipped(
    fresh_manager: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plugin already registered under an entry point's name wins; the entry point is
    # not imported (as with pluggy's loader).
    original = _plugins._populate

    def populate_with_a_blocked_name(manager: _plugins._Manager) -> None:
        manager.set_blocked("fake-broken")
        original(manager)

    monkeypatch.setattr(_plugins, "_populate", populate_with_a_blocked_name)
    with pytest.warns(PluginLoadWarning):
        plugin_manager()
    assert "fake-broken" not in [error.name for error in plugin_load_errors()]
    assert "fakeplugin_broken" not in sys.modules
    assert "fake-broken" not in [info.name for info in list_plugins()]


# -- a fresh interpreter ----------------------------------------------------------------

PROBE = """
import json, sys, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import pyarallel
    values = pyarallel.parallel_map(abs, [-1, -2]).values()
from pyarallel._plugins import plugin_load_errors
print(json.dumps({
    "values": values,
    "fake": pyarallel.parallel_map(abs, [-5], executor="fakegood").values(),
    "plugins": {p.name: p.distribution for p in pyarallel.list_plugins()},
    "errors": [e.name for e in plugin_load_errors()],
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
}))
"""


def _run_python(code: str, pythonpath: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter with ``pythonpath`` first on its path and
    return the JSON object it prints last."""
    environment = {k: v for k, v in os.environ.items() if k != _plugins.DISABLE_AUTOLOAD_ENV}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(pythonpath), *filter(None, [environment.get("PYTHONPATH")])]
    )
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=environment,
            stdout=out,
            stderr=err,
            text=True,
            start_new_session=True,
        )
        try:
            returncode = child.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(90)
def test_a_fresh_interpreter_with_broken_plugins_installed_still_runs(tmp_path: Path) -> None:
    _install_fake_distribution(tmp_path)
    report = _run_python(PROBE, tmp_path)
    assert report["values"] == [1, 2]
    assert report["fake"] == [5]
    assert report["errors"] == ["fake-broken", "fake-misspelled", "fake-exiting"]
    assert report["plugins"]["fake-good"] == "fakeplugin 1.0"
    assert "fake-misspelled" not in report["plugins"]
    load_warnings = [w for w in report["warnings"] if w.startswith("PluginLoadWarning: ")]
    assert len(load_warnings) == 3
    assert "'fake-broken'" in load_warnings[0]
    assert "fakeplugin 1.0" in load_warnings[0]
