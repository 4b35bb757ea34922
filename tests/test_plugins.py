"""The plugin manager and every hook, exercised with real plugin objects."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pyarallel
from pyarallel import (
    ItemTimeoutError,
    PluginInfo,
    Retry,
    hookimpl,
    list_plugins,
    parallel_iter,
    parallel_map,
    parallel_starmap,
    register_plugin,
    unregister_plugin,
)
from pyarallel._plugins import plugin_manager
from pyarallel.contracts import (
    Backend,
    Capabilities,
    FailedAttempt,
    RateLimiter,
    RetryPolicy,
    RunInfo,
    RunSummary,
)
from support import FixedInterval, LimiterPlugin, Observer, PoolBackend

# -- helpers ----------------------------------------------------------------------------


def plugin_named(name: str) -> PluginInfo:
    matches = [info for info in list_plugins() if info.name == name]
    assert len(matches) == 1, [info.name for info in list_plugins()]
    return matches[0]


class InlineBackend:
    """Runs each task synchronously in the caller, returning an already-finished future."""

    name = "synchronous"
    capacity = 1
    capabilities = Capabilities(in_caller_process=True)

    def __init__(self) -> None:
        self.submitted = 0
        self.closed: list[bool] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        self.submitted += 1
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as error:
            future.set_exception(error)
        return future

    def until_ready(self) -> None:
        return None

    def close(self, *, abort: bool) -> None:
        self.closed.append(abort)


class InlinePlugin:
    def __init__(self) -> None:
        self.backends: list[InlineBackend] = []
        self.asked: list[tuple[object, int | None]] = []

    @hookimpl
    def pyarallel_executor_names(self) -> tuple[str, ...]:
        return ("synchronous",)

    @hookimpl
    def pyarallel_executor(self, executor: object, workers: int | None) -> InlineBackend | None:
        self.asked.append((executor, workers))
        if executor != "synchronous":
            return None
        backend = InlineBackend()
        self.backends.append(backend)
        return backend


class ThreadReplacement:
    """Provides its own ``"thread"`` executor."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.built = 0

    @hookimpl
    def pyarallel_executor_names(self) -> tuple[str, ...]:
        return ("thread",)

    @hookimpl
    def pyarallel_executor(self, executor: object, workers: int | None) -> PoolBackend | None:
        if executor != "thread":
            return None
        self.built += 1
        return PoolBackend(f"{self.prefix}-thread", workers or 2, self.prefix)


def thread_names(count: int = 6, **options: Any) -> set[str]:
    result = parallel_map(lambda _: threading.current_thread().name, range(count), workers=2, **options)
    return {name.rsplit("_", 1)[0].rsplit("-", 1)[0] for name in result}


# -- listing ----------------------------------------------------------------------------


def test_list_plugins_shows_the_builtins_with_their_executors() -> None:
    infos = {info.name: info for info in list_plugins()}
    assert infos["pyarallel._builtin.thread_executor"].executors == ("thread",)
    assert infos["pyarallel._builtin.process_executor"].executors == ("process",)
    assert "pyarallel_executor" in infos["pyarallel._builtin.thread_executor"].hooks
    assert "pyarallel_rate_limiter" in infos["pyarallel._builtin.token_bucket"].hooks
    assert "pyarallel_retry_policy" in infos["pyarallel._builtin.exponential_retry"].hooks
    assert all(info.distribution is None for name, info in infos.items() if name.startswith("pyarallel."))
    assert all(isinstance(info, PluginInfo) for info in infos.values())


# -- executor plugins -------------------------------------------------------------------


def test_plugin_executor_is_used_listed_and_removed_by_object(register: Callable[..., str]) -> None:
    plugin = InlinePlugin()
    name = register(plugin, "inline-plugin")
    assert name == "inline-plugin"

    caller = threading.get_ident()
    result = parallel_map(lambda x: (x * 2, threading.get_ident()), range(5), executor="synchronous")
    assert [value for value, _ in result] == [0, 2, 4, 6, 8]
    assert {thread for _, thread in result} == {caller}  # ran synchronously in the caller
    assert len(plugin.backends) == 1
    assert plugin.backends[0].submitted == 5
    assert plugin.backends[0].closed == [False]
    assert isinstance(plugin.backends[0], Backend)

    infos = list_plugins()
    assert infos[0].name == "inline-plugin"  # most recently registered is asked first
    assert infos[0].executors == ("synchronous",)
    assert infos[0].hooks == ("pyarallel_executor", "pyarallel_executor_names")
    assert infos[0].distribution is None

    unregister_plugin(plugin)
    assert "inline-plugin" not in {info.name for info in list_plugins()}
    with pytest.raises(ValueError, match="synchronous") as excinfo:
        parallel_map(abs, [1], executor="synchronous")
    message = str(excinfo.value)
    assert "'thread'" in message
    assert "'process'" in message
    with pytest.raises(ValueError, match="not registered"):
        unregister_plugin(plugin)


def test_plugin_executor_removed_by_name(register: Callable[..., str]) -> None:
    plugin = InlinePlugin()
    register(plugin, "inline-by-name")
    assert parallel_starmap(pow, [(2, 3), (3, 2)], executor="synchronous").values() == [8, 9]
    assert [r.value for r in parallel_iter(abs, [-1], executor="synchronous")] == [1]
    unregister_plugin("inline-by-name")
    assert not plugin_manager().is_registered(plugin)
    with pytest.raises(ValueError, match="available"):
        parallel_map(abs, [1], executor="synchronous")
    with pytest.raises(ValueError, match="inline-by-name"):
        unregister_plugin("inline-by-name")


def test_registering_the_same_plugin_or_name_twice_is_refused(register: Callable[..., str]) -> None:
    plugin = InlinePlugin()
    register(plugin, "inline-once")
    with pytest.raises(ValueError, match="already registered"):
        register_plugin(plugin, "inline-again")
    with pytest.raises(ValueError, match="inline-once"):
        register_plugin(InlinePlugin(), "inline-once")


def test_plugin_executor_receives_workers_and_failures_stay_per_item(register: Callable[..., str]) -> None:
    plugin = InlinePlugin()
    register(plugin)

    def fn(x: int) -> int:
        if x == 2:
            raise KeyError(x)
        return x

    result = parallel_map(fn, range(4), executor="synchronous", workers=3)
    assert ("synchronous", 3) in plugin.asked
    assert [i for i, _ in result.failures()] == [2]
    assert result.successes() == [(0, 0), (1, 1), (3, 3)]


def test_replacing_the_builtin_thread_executor(register: Callable[..., str]) -> None:
    assert thread_names() == {"pyarallel-thread"}
    first = ThreadReplacement("first")
    second = ThreadReplacement("second")
    register(first)
    assert thread_names() == {"first"}
    assert thread_names(executor="thread") == {"first"}
    register(second)  # later registration wins
    assert thread_names() == {"second"}
    assert first.built == 2
    unregister_plugin(second)
    assert thread_names() == {"first"}
    unregister_plugin(first)
    assert thread_names() == {"pyarallel-thread"}  # the built-in is back
    assert (first.built, second.built) == (3, 1)


# -- rate limiter and retry policy plugins ----------------------------------------------


@dataclass(frozen=True)
class FixedDelays:
    """A custom retry spec: retry after each of these delays, then give up."""

    delays: tuple[float, ...]


class FixedDelayPolicy:
    def __init__(self, spec: FixedDelays) -> None:
        self.spec = spec
        self.asked: list[tuple[int, BaseException]] = []

    def decide(self, failed: FailedAttempt) -> float | None:
        attempt = failed.attempt
        self.asked.append((attempt, failed.error))
        return self.spec.delays[attempt - 1] if attempt <= len(self.spec.delays) else None


class RetryPlugin:
    def __init__(self) -> None:
        self.policies: list[FixedDelayPolicy] = []

    @hookimpl
    def pyarallel_retry_policy(self, retry: object) -> FixedDelayPolicy | None:
        if not isinstance(retry, FixedDelays):
            return None
        policy = FixedDelayPolicy(retry)
        self.policies.append(policy)
        return policy


def test_custom_rate_limiter_plugin_paces_every_attempt(register: Callable[..., str]) -> None:
    spec = FixedInterval(0.03)
    with pytest.raises(TypeError, match="rate_limit"):
        parallel_map(abs, [1], rate_limit=spec)  # type: ignore[arg-type]
    plugin = LimiterPlugin()
    register(plugin)
    attempts: dict[int, int] = {}

    def fn(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if x == 0 and attempts[x] == 1:
            raise ConnectionError("first attempt of item 0")
        return x

    result = parallel_map(
        fn,
        range(5),
        workers=5,
        rate_limit=spec,  # type: ignore[arg-type]
        retry=Retry(attempts=2, backoff=0),
    )
    assert result.values() == list(range(5))
    limiter = plugin.limiters[-1]
    assert isinstance(limiter, RateLimiter)
    assert limiter.spec is spec
    assert len(limiter.grants) == 6  # five items plus one retry: every attempt took a token
    assert limiter.denials >= 1  # the scheduler asked again after being told to wait
    assert limiter.grants[-1] - limiter.grants[0] >= 5 * 0.03
    # One reservation per attempt, asked with the item itself; each told how it ended.
    assert sorted(limiter.requested) == [0, 0, 1, 2, 3, 4]  # type: ignore[type-var]
    assert sorted((r.index, r.ok) for r in limiter.finished) == [
        (0, False),
        (0, True),
        (1, True),
        (2, True),
        (3, True),
        (4, True),
    ]
    assert limiter.cancelled == []


def test_custom_retry_policy_plugin_decides_retries(register: Callable[..., str]) -> None:
    spec = FixedDelays((0.02, 0.0, 0.05))
    with pytest.raises(TypeError, match="retry"):
        parallel_map(abs, [1], retry=spec)  # type: ignore[arg-type]
    plugin = RetryPlugin()
    register(plugin)
    starts: dict[int, list[float]] = {0: [], 1: []}
    errors: list[Exception] = []

    def fn(x: int) -> int:
        starts[x].append(time.monotonic())
        if x == 0 or len(starts[x]) == 1:
            error = OSError(x, len(starts[x]))
            errors.append(error)
            raise error
        return x

    result = parallel_map(fn, [0, 1], workers=2, retry=spec)  # type: ignore[arg-type]
    policy = plugin.policies[-1]
    assert isinstance(policy, RetryPolicy)
    assert len(starts[0]) == 4  # three retries, then the policy gives up
    assert len(starts[1]) == 2
    assert result.successes() == [(1, 1)]
    assert result.failures()[0][1] is errors[-1]
    gaps = [b - a for a, b in itertools.pairwise(starts[0])]
    assert gaps[0] >= 0.02
    assert gaps[2] >= 0.05
    assert sorted(attempt for attempt, _ in policy.asked) == [1, 1, 2, 3, 4]


def test_rate_limiter_and_retry_factories_are_called_once_per_run(register: Callable[..., str]) -> None:
    limiters = LimiterPlugin()
    policies = RetryPlugin()
    register(limiters)
    register(policies)
    parallel_map(abs, [1, 2], rate_limit=FixedInterval(0.001), retry=FixedDelays(()))  # type: ignore[arg-type]
    assert (len(limiters.limiters), len(policies.policies)) == (1, 1)


def test_executor_names_hook_is_not_called_per_run(register: Callable[..., str]) -> None:
    calls: list[int] = []

    class Names:
        @hookimpl
        def pyarallel_executor_names(self) -> tuple[str, ...]:
            calls.append(1)
            return ("names-only",)

    register(Names())
    list_plugins()
    before = len(calls)
    for _ in range(5):
        parallel_map(abs, [1])
    assert len(calls) == before


# -- observer hooks ---------------------------------------------------------------------


def test_observer_hooks_receive_run_items_retries_and_summary(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)
    raised: dict[int, list[Exception]] = {}
    lock = threading.Lock()

    def work(x: int) -> int:
        with lock:
            errors = raised.setdefault(x, [])
            attempt = len(errors) + 1
            if x == 3 or (x % 4 == 1 and attempt == 1):
                error = ValueError(x, attempt)
                errors.append(error)
                raise error
        return x * 10

    retry = Retry(attempts=2, backoff=0.01, jitter=False)
    result = parallel_map(work, range(10), workers=3, retry=retry)
    assert [i for i, _ in result.failures()] == [3]

    assert len(observer.starts) == 1
    run = observer.starts[0]
    assert (run.total, run.executor, run.workers) == (10, "thread", 3)
    assert run.function.endswith("work")
    assert run.options["retry"] is retry

    # every item's final result exactly once, done counting up, seen never past the input
    indices = [r.index for _, r, _, _ in observer.results]
    assert sorted(indices) == list(range(10))
    assert [done for _, _, done, _ in observer.results] == list(range(1, 11))
    assert all(done <= seen <= 10 for _, _, done, seen in observer.results)
    for observed_run, item, _, _ in observer.results:
        assert observed_run is run
        if item.index == 3:
            assert not item.ok
            assert item.error is raised[3][-1]
        else:
            assert item.ok
            assert item.value == item.index * 10

    # retries: items 1, 5, 9 after their first attempt, and item 3 after its first attempt
    assert sorted((index, attempt) for _, index, attempt, _, _ in observer.retries) == [
        (1, 1),
        (3, 1),
        (5, 1),
        (9, 1),
    ]
    for observed_run, index, _, error, delay in observer.retries:
        assert observed_run is run
        assert error is raised[index][0]
        assert delay == pytest.approx(0.01)

    assert len(observer.ends) == 1
    end_run, summary = observer.ends[0]
    assert end_run is run
    assert summary.outcome == "completed"
    assert (summary.succeeded, summary.failed, summary.retries) == (9, 1, 4)
    assert summary.seconds >= 0.01
    assert summary.error is None
    assert observer.threads == {threading.get_ident()}  # from the scheduler, the calling thread here


def test_observer_sees_timed_out_run(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)
    release = threading.Event()

    def work(x: int) -> int:
        if x == 0:
            release.wait(10)
        return x

    try:
        result = parallel_map(work, range(4), workers=2, timeout=0.3)
    finally:
        release.set()
    assert [i for i, _ in result.failures()] == [0]
    assert isinstance(result.failures()[0][1], ItemTimeoutError)
    timed_out = [r for _, r, _, _ in observer.results if not r.ok]
    assert [r.index for r in timed_out] == [0]
    assert sorted(r.index for _, r, _, _ in observer.results) == [0, 1, 2, 3]
    (_, summary) = observer.ends[0]
    assert summary.outcome == "timed_out"
    assert (summary.succeeded, summary.failed) == (3, 1)


def test_observer_sees_stream_closed_early_and_unsized_total(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)
    stream = parallel_iter(abs, (x for x in range(1000)), workers=2, batch_size=4)
    next(stream)
    stream.close()
    assert observer.starts[0].total is None
    assert len(observer.ends) == 1
    assert observer.ends[0][1].outcome == "interrupted"


def test_observer_sees_error_outcome(register: Callable[..., str]) -> None:
    observer = Observer()
    register(observer)

    class ProgressFailed(Exception):
        pass

    def progress(done: int, total: int) -> None:
        raise ProgressFailed(done)

    with pytest.raises(ProgressFailed):
        parallel_map(abs, range(3), workers=1, on_progress=progress)
    (_, summary) = observer.ends[0]
    assert summary.outcome == "error"
    assert isinstance(summary.error, ProgressFailed)


def test_partial_observer_implementing_one_hook(register: Callable[..., str]) -> None:
    ends: list[str] = []

    class EndOnly:
        @hookimpl
        def pyarallel_run_end(self, run: RunInfo, summary: RunSummary) -> None:
            ends.append(summary.outcome)

    register(EndOnly())
    assert parallel_map(abs, [-1, -2]).values() == [1, 2]
    assert ends == ["completed"]


def _count_hook_calls(items: int) -> list[str]:
    calls: list[str] = []

    def before(hook_name: str, hook_impls: object, kwargs: object) -> None:
        calls.append(hook_name)

    def after(outcome: object, hook_name: str, hook_impls: object, kwargs: object) -> None:
        pass

    undo = plugin_manager().add_hookcall_monitoring(before, after)
    try:
        result = parallel_map(lambda x: x, range(items), workers=4)
        assert len(result) == items
    finally:
        undo()
    return calls


def test_unobserved_runs_make_no_hook_call_per_item(register: Callable[..., str]) -> None:
    small = _count_hook_calls(10)
    large = _count_hook_calls(1000)
    assert small  # the monitoring works: the executor factory at least was asked
    assert "pyarallel_executor" in small
    assert len(large) == len(small) < 10
    assert not {"pyarallel_item_result", "pyarallel_item_retry"} & set(large)

    # control: with an observer registered, calls do grow with the number of items
    register(Observer())
    observed = _count_hook_calls(1000)
    assert observed.count("pyarallel_item_result") == 1000


# -- entry points and lazy imports (fresh interpreters) ---------------------------------

DEMO_PLUGIN = '''
"""A pyarallel plugin installed as a distribution."""
from concurrent.futures import Future

from pyarallel import hookimpl
from pyarallel.contracts import NO_CAPABILITIES


class DemoBackend:
    name = "demo"
    capacity = 1
    capabilities = NO_CAPABILITIES

    def until_ready(self):
        return None

    def submit(self, fn, /, *args):
        future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as error:
            future.set_exception(error)
        return future

    def close(self, *, abort):
        pass


@hookimpl
def pyarallel_executor_names():
    return ("demo",)


@hookimpl
def pyarallel_executor(executor, workers):
    return DemoBackend() if executor == "demo" else None
'''

PROBE = """
import json, sys
import pyarallel
infos = [
    {"name": p.name, "executors": list(p.executors), "distribution": p.distribution}
    for p in pyarallel.list_plugins()
]
try:
    values = pyarallel.parallel_map(lambda x: x * 2, [1, 2, 3], executor="demo").values()
    error = None
except ValueError as exc:
    values, error = None, str(exc)
print(json.dumps({
    "plugins": infos,
    "values": values,
    "error": error,
    "imported": "demo_pyarallel_plugin" in sys.modules,
}))
"""


def _install_demo_distribution(root: Path) -> None:
    (root / "demo_pyarallel_plugin.py").write_text(DEMO_PLUGIN)
    dist_info = root / "demo_pyarallel_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-pyarallel-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[pyarallel]\ndemo = demo_pyarallel_plugin\n")
    (dist_info / "RECORD").write_text("")


def _scratch(tmp_path: Path) -> Path:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return scratch


def _without_site_packages(root: Path) -> list[str]:
    """A directory holding only pyarallel and the packages it imports (links to them), for
    a child started without ``site``: no installed distribution (and so none of the plugin
    distributions installed beside pyarallel) is visible to it."""
    import cloudpickle
    import loky
    import pluggy

    import pyarallel

    packages = root / "only-pyarallel"
    packages.mkdir()
    for module in (pyarallel, pluggy, loky, cloudpickle):
        source = Path(module.__file__ or "").parent
        (packages / source.name).symlink_to(source, target_is_directory=True)
    return ["-S", str(packages)]


def _run_python(
    code: str, *, pythonpath: Path | None = None, isolated_from: Path | None = None, **env: str
) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter and return the JSON object it prints last.

    With ``isolated_from`` (a scratch directory), the child sees no installed distribution
    but pyarallel and its dependencies (see ``_without_site_packages``).

    The child gets its own session and writes to files, not pipes: a process pool it starts
    cannot keep this call waiting, and whatever the child left running is ended afterwards.
    """
    flags: list[str] = []
    if isolated_from is not None:
        flag, packages = _without_site_packages(isolated_from)
        flags = [flag]
        pythonpath = Path(os.pathsep.join([*filter(None, [str(pythonpath or "")]), packages]))
    environment = {k: v for k, v in os.environ.items() if k != "PYARALLEL_DISABLE_PLUGIN_AUTOLOAD"}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(pythonpath), *filter(None, [environment.get("PYTHONPATH")])]
        )
    environment.update(env)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, *flags, "-c", textwrap.dedent(code)],
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
                os.killpg(child.pid, signal.SIGKILL)  # the child's own session: its pool workers
            child.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(90)
def test_entry_point_plugin_is_loaded_and_listed_with_its_distribution(tmp_path: Path) -> None:
    _install_demo_distribution(tmp_path)
    report = _run_python(PROBE, pythonpath=tmp_path)
    demo = [p for p in report["plugins"] if p["name"] == "demo"]
    assert demo == [{"name": "demo", "executors": ["demo"], "distribution": "demo-pyarallel-plugin 0.1"}]
    assert report["values"] == [2, 4, 6]
    assert report["imported"] is True
    # the built-ins are still there, not attributed to any distribution
    builtin = {p["name"]: p for p in report["plugins"] if p["name"].startswith("pyarallel._builtin")}
    assert builtin["pyarallel._builtin.thread_executor"]["executors"] == ["thread"]
    assert builtin["pyarallel._builtin.thread_executor"]["distribution"] is None


@pytest.mark.timeout(90)
def test_plugin_autoload_can_be_disabled(tmp_path: Path) -> None:
    _install_demo_distribution(tmp_path)
    report = _run_python(PROBE, pythonpath=tmp_path, PYARALLEL_DISABLE_PLUGIN_AUTOLOAD="1")
    assert "demo" not in [p["name"] for p in report["plugins"]]
    assert report["imported"] is False
    assert report["values"] is None
    assert "'demo'" in report["error"]
    assert "'thread'" in report["error"]


METADATA_PROBE = """
import json, sys
import pyarallel
values = pyarallel.parallel_map(abs, [-1, -2]).values()
print(json.dumps({
    "values": values,
    "plugins": [p.name for p in pyarallel.list_plugins()],
    "metadata_imported": "importlib.metadata" in sys.modules,
}))
"""


def _install_distribution_without_plugins(root: Path) -> None:
    """A distribution with entry points in other groups only, and a one-file egg-info."""
    dist_info = root / "unrelated_tool-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: unrelated-tool\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[console_scripts]\ntool = unrelated_tool:main\n# [pyarallel]\n"
    )
    (root / "legacy-0.1.egg-info").write_text("Metadata-Version: 1.0\nName: legacy\nVersion: 0.1\n")


@pytest.mark.timeout(90)
def test_without_any_pyarallel_entry_point_the_metadata_machinery_is_never_imported(tmp_path: Path) -> None:
    _install_distribution_without_plugins(tmp_path)
    report = _run_python(METADATA_PROBE, pythonpath=tmp_path, isolated_from=_scratch(tmp_path))
    assert report["values"] == [1, 2]
    assert report["metadata_imported"] is False  # entry points were not loaded through it
    assert all(name.startswith("pyarallel._builtin") for name in report["plugins"])


@pytest.mark.timeout(90)
def test_entry_points_on_the_path_load_without_the_metadata_machinery(tmp_path: Path) -> None:
    # The scan reads entry_points.txt and METADATA itself: importlib.metadata costs tens
    # of milliseconds of a first call. The entry point names an attribute of its module,
    # and a second copy of the same distribution later on the path is not loaded.
    _install_distribution_without_plugins(tmp_path)
    _install_demo_distribution(tmp_path)
    (tmp_path / "demo_pyarallel_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "# the plugin\n[console_scripts]\ndemo-tool = x:y\n\n"
        "[pyarallel]\ndemo = demo_pyarallel_plugin:plugin_module [extra]\n"
    )
    (tmp_path / "demo_pyarallel_plugin.py").write_text(
        DEMO_PLUGIN + "\nimport sys\nplugin_module = sys.modules[__name__]\n"
    )
    later = tmp_path / "later"
    later.mkdir()
    shadowed = later / "demo_pyarallel_plugin-0.2.dist-info"
    shadowed.mkdir()
    (shadowed / "METADATA").write_text("Metadata-Version: 2.1\nName: demo_pyarallel_plugin\nVersion: 0.2\n")
    (shadowed / "entry_points.txt").write_text("[pyarallel]\nshadow = no_such_module\n")
    report = _run_python(
        PROBE.replace(
            '"values": values,', '"values": values, "metadata": "importlib.metadata" in sys.modules,'
        ),
        pythonpath=Path(os.pathsep.join([str(tmp_path), str(later)])),
        isolated_from=_scratch(tmp_path),
    )
    assert report["values"] == [2, 4, 6]
    assert report["metadata"] is False
    assert {"name": "demo", "executors": ["demo"], "distribution": "demo-pyarallel-plugin 0.1"} in report[
        "plugins"
    ]
    assert "shadow" not in [p["name"] for p in report["plugins"]]


@pytest.mark.timeout(90)
def test_an_egg_info_directory_s_entry_point_is_found_with_its_pkg_info(tmp_path: Path) -> None:
    (tmp_path / "demo_pyarallel_plugin.py").write_text(DEMO_PLUGIN)
    egg_info = tmp_path / "demo_pyarallel_plugin.egg-info"
    egg_info.mkdir()
    (egg_info / "PKG-INFO").write_text(
        "Metadata-Version: 1.0\nName: legacy-demo\nVersion: 0.3\n\nName: not-this\n"
    )
    (egg_info / "entry_points.txt").write_text("[pyarallel]\ndemo = demo_pyarallel_plugin\n")
    report = _run_python(PROBE, pythonpath=tmp_path, isolated_from=_scratch(tmp_path))
    assert report["values"] == [2, 4, 6]
    assert {"name": "demo", "executors": ["demo"], "distribution": "legacy-demo 0.3"} in report["plugins"]


@pytest.mark.timeout(90)
def test_one_pyarallel_entry_point_among_other_distributions_is_found(tmp_path: Path) -> None:
    _install_distribution_without_plugins(tmp_path)
    _install_demo_distribution(tmp_path)
    report = _run_python(PROBE, pythonpath=tmp_path)
    assert report["values"] == [2, 4, 6]
    assert "demo" in [p["name"] for p in report["plugins"]]


@pytest.mark.timeout(90)
def test_a_zip_archive_on_the_path_is_left_to_the_full_entry_point_loader(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("zipped_pyarallel_plugin.py", DEMO_PLUGIN)
        bundle.writestr(
            "zipped_pyarallel_plugin-0.1.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: zipped-pyarallel-plugin\nVersion: 0.1\n",
        )
        bundle.writestr(
            "zipped_pyarallel_plugin-0.1.dist-info/entry_points.txt",
            "[pyarallel]\ndemo = zipped_pyarallel_plugin\n",
        )
    report = _run_python(PROBE, pythonpath=archive)
    assert report["values"] == [2, 4, 6]  # the plugin inside the archive was loaded
    assert {"name": "demo", "executors": ["demo"], "distribution": "zipped-pyarallel-plugin 0.1"} in report[
        "plugins"
    ]


@pytest.mark.timeout(90)
def test_loky_and_cloudpickle_are_imported_only_when_the_process_executor_is_used() -> None:
    report = _run_python(
        """
        import json, sys
        import pyarallel

        def heavy():
            return ["loky" in sys.modules, "cloudpickle" in sys.modules]

        after_import = heavy()
        pyarallel.list_plugins()
        pyarallel.parallel_map(abs, [-1, -2])
        after_thread = heavy()
        values = pyarallel.parallel_map(abs, [-1, -2], executor="process", workers=1).values()
        print(json.dumps({
            "after_import": after_import,
            "after_thread": after_thread,
            "after_process": heavy(),
            "values": values,
        }))
        """
    )
    assert report["after_import"] == [False, False]
    assert report["after_thread"] == [False, False]
    assert report["after_process"] == [True, True]
    assert report["values"] == [1, 2]


@pytest.mark.timeout(90)
def test_process_backend_survives_a_task_finishing_before_its_callback_is_attached() -> None:
    """Regression: a task can finish before the backend attaches its done-callback (the
    submitting thread may be descheduled right after submitting), and the future then runs
    the callback at once in the submitting thread. The process backend used to deadlock
    there on its own non-reentrant lock. The tracer below makes that descheduling certain
    by pausing the submitting thread just before the callback is attached."""
    report = _run_python(
        """
        import faulthandler, json, sys, time
        from concurrent.futures import Future
        from pyarallel import parallel_map

        faulthandler.dump_traceback_later(20, exit=True)  # a deadlock fails the test quickly

        assert parallel_map(abs, [-1], executor="process", workers=2).values() == [1]  # warm pool
        add_done_callback = Future.add_done_callback.__code__
        paused = []

        def tracer(frame, event, arg):
            if event == "call" and frame.f_code is add_done_callback:
                caller = frame.f_back
                if caller is not None and caller.f_code.co_filename.endswith("_process_backend.py"):
                    time.sleep(0.3)  # the task completes in the pool meanwhile
                    paused.append(frame.f_locals["self"].done())
            return None

        sys.settrace(tracer)
        values = parallel_map(abs, [-1, -2, -3], executor="process", workers=2).values()
        sys.settrace(None)
        print(json.dumps({"values": values, "paused": paused}))
        """
    )
    assert report["values"] == [1, 2, 3]
    # the tracer really produced the race: futures were already done when callbacks were added
    assert report["paused"]
    assert any(report["paused"])


def test_backend_task_seconds_lets_the_scheduler_group_tiny_items(register: Callable[..., str]) -> None:
    class ChunkingInline(InlinePlugin):
        @hookimpl
        def pyarallel_executor_names(self) -> tuple[str, ...]:
            return ("inline-chunked",)

        @hookimpl
        def pyarallel_executor(self, executor: object, workers: int | None) -> InlineBackend | None:
            if executor != "inline-chunked":
                return None
            backend = InlineBackend()
            backend.capabilities = Capabilities(task_seconds=0.01, in_caller_process=True)
            self.backends.append(backend)
            return backend

    plain, chunked = InlinePlugin(), ChunkingInline()
    register(plain)
    register(chunked)
    items = list(range(300))
    assert parallel_map(lambda x: x + 1, items, executor="synchronous").values() == [x + 1 for x in items]
    assert plain.backends[-1].submitted == 300  # without task_seconds: one item per task
    result = parallel_map(lambda x: x + 1, items, executor="inline-chunked")
    assert result.values() == [x + 1 for x in items]
    assert chunked.backends[-1].submitted < 300  # tiny items were grouped


def test_public_plugin_api_is_exported() -> None:
    for name in ("register_plugin", "unregister_plugin", "list_plugins", "hookimpl", "PluginInfo"):
        assert name in pyarallel.__all__


class _ClosingBackend(PoolBackend):
    """A ``PoolBackend`` that records how it was closed."""

    def __init__(self) -> None:
        super().__init__("closing", 2, "closing-backend")
        self.closed: list[bool] = []

    def close(self, *, abort: bool) -> None:
        self.closed.append(abort)
        super().close(abort=abort)


def test_a_backend_is_closed_when_an_observer_of_the_run_start_raises(register: Callable[..., str]) -> None:
    built: list[_ClosingBackend] = []
    ran: list[int] = []

    class Plugins:
        @hookimpl
        def pyarallel_executor_names(self) -> tuple[str, ...]:
            return ("closing",)

        @hookimpl
        def pyarallel_executor(self, executor: object) -> Backend | None:
            if executor != "closing":
                return None
            built.append(_ClosingBackend())
            return built[-1]

        @hookimpl
        def pyarallel_run_start(self, run: RunInfo) -> None:
            raise RuntimeError("the observer broke")

    register(Plugins(), name="closing-backend-plugins")
    with pytest.raises(RuntimeError, match="the observer broke"):
        parallel_map(ran.append, [1, 2], executor="closing")
    assert [backend.closed for backend in built] == [[True]]
    assert ran == []
