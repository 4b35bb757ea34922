"""The ``pyarallel`` command: ``pyarallel plugins`` and ``python -m pyarallel plugins``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyarallel import _plugins, hookimpl
from pyarallel._cli import main
from test_plugin_safety import _install_fake_distribution


def _run(*arguments: str, pythonpath: Path | None = None, command: list[str] | None = None) -> str:
    environment = {k: v for k, v in os.environ.items() if k != _plugins.DISABLE_AUTOLOAD_ENV}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(pythonpath), *filter(None, [environment.get("PYTHONPATH")])]
        )
    argv = (command or [sys.executable, "-m", "pyarallel"]) + list(arguments)
    done = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {plugin["name"]: plugin for plugin in report["plugins"]}


@pytest.mark.timeout(90)
def test_plugins_lists_the_builtins_with_their_hooks_and_executors() -> None:
    text = _run("plugins")
    assert "pyarallel._builtin.thread_executor  [built-in]" in text
    assert "executors: process" in text
    assert "hooks: pyarallel_executor, pyarallel_executor_names" in text
    assert "failed to load" not in text

    report = json.loads(_run("plugins", "--json"))
    plugins = _by_name(report)
    assert plugins["pyarallel._builtin.thread_executor"]["executors"] == ["thread"]
    assert plugins["pyarallel._builtin.process_executor"]["origin"] == "built-in"
    assert plugins["pyarallel._builtin.token_bucket"]["hooks"] == ["pyarallel_rate_limiter"]
    assert report["errors"] == []


@pytest.mark.timeout(90)
def test_plugins_lists_installed_plugins_and_the_ones_that_failed(tmp_path: Path) -> None:
    _install_fake_distribution(tmp_path)
    report = json.loads(_run("plugins", "--json", pythonpath=tmp_path))
    good = _by_name(report)["fake-good"]
    assert good["origin"] == good["distribution"] == "fakeplugin 1.0"
    assert good["executors"] == ["fakegood"]
    failed = {error["name"]: error for error in report["errors"]}
    assert sorted(failed) == ["fake-broken", "fake-exiting", "fake-misspelled"]
    assert "ImportError" in failed["fake-broken"]["error"]
    assert "pyarallel_item_reslt" in failed["fake-misspelled"]["error"]
    assert failed["fake-broken"]["distribution"] == "fakeplugin 1.0"

    text = _run("plugins", pythonpath=tmp_path)
    assert "fake-good  [fakeplugin 1.0]" in text
    assert "3 installed plugins failed to load (pyarallel works without them):" in text
    assert "fake-broken = fakeplugin_broken [fakeplugin 1.0]: ImportError(" in text


def test_a_plugin_registered_by_code_is_listed_first_as_run_time(register: Callable[..., str]) -> None:
    class Observer:
        @hookimpl
        def pyarallel_run_end(self) -> None:
            pass

    register(Observer(), name="cli-test-observer")
    out = io.StringIO()
    assert main(["plugins", "--json"], out=out) == 0
    first = json.loads(out.getvalue())["plugins"][0]
    assert first == {
        "name": "cli-test-observer",
        "origin": "run-time",
        "distribution": None,
        "hooks": ["pyarallel_run_end"],
        "executors": [],
    }


def test_no_command_prints_the_help_and_fails() -> None:
    out = io.StringIO()
    assert main([], out=out) == 2
    assert "plugins" in out.getvalue()
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])
    assert exited.value.code == 2


@pytest.mark.timeout(90)
def test_the_console_script_runs_the_same_command() -> None:
    script = shutil.which("pyarallel", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("pyarallel is not installed in this interpreter's environment (no console script)")
    report = json.loads(_run("plugins", "--json", command=[script]))
    assert "pyarallel._builtin.thread_executor" in _by_name(report)
