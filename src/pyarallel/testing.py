"""A conformance kit for executor backends: the tests every backend must pass.

A plugin that provides an executor (see :mod:`pyarallel.hookspecs` and
:class:`pyarallel.contracts.Backend`) runs the kit against itself by subclassing
:class:`BackendConformance` in its own test suite. pytest collects the subclass (its name
must start with ``Test``) and runs every test of the kit through pyarallel's public API
(``parallel_map``, ``parallel_starmap``, ``parallel_iter``, ``@parallel``) with
``executor=`` and ``workers=`` set to yours::

    # tests/test_conformance.py of your plugin
    from pyarallel.testing import BackendConformance


    class TestMyBackend(BackendConformance):
        executor = "mine"  # the name your plugin lists in pyarallel_executor_names
        workers = 2

When ``executor=`` is an object (a cluster client, a pool), define an ``executor``
fixture instead, with the scope the object should live for (a class-scoped fixture is a
``classmethod``, as pytest 9 asks)::

    import pytest
    from distributed import Client, LocalCluster

    from pyarallel.testing import BackendConformance


    class TestMyClient(BackendConformance):
        workers = 2

        @pytest.fixture(scope="class")
        @classmethod
        def executor(cls):
            with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
                yield client

The kit asks your backend (through :func:`backend_for`) whether it runs tasks in the
caller's process (``capabilities.in_caller_process``) and expects accordingly: pickling
failures and worker crashes are tested only for backends that run tasks elsewhere. Other
class attributes say what your backend cannot do (``crash_breaks_executor``), record the
tests it is known to fail (``expected_failures``, as strict xfails) or widen the time
bounds (``slack``); see :class:`BackendConformance`. Run your suite as usual
(``pytest tests/test_conformance.py``); ``-k`` selects tests by name as for any class.

Requirements: pytest; pytest-timeout, if installed, enforces a time limit on every test
(without it the limits are not applied). Workers must see the caller's file system (the
tests' temporary directories): items in other processes report what they did through
files. Every test is a few seconds at most; on a 2-core machine the whole kit takes about
6 s on a thread pool and 7-8 s on a process pool.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pytest

from pyarallel import (
    ItemResult,
    ItemTimeoutError,
    RateLimit,
    Retry,
    RunStatus,
    SerializationError,
    WorkerCrashedError,
    list_plugins,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)
from pyarallel import _conformance_functions as fn
from pyarallel._plan import start_backend
from pyarallel.contracts import Backend, Capabilities

__all__ = ["BackendConformance", "backend_for"]

F = TypeVar("F", bound=Callable[..., Any])

_HAS_PYTEST_TIMEOUT = importlib.util.find_spec("pytest_timeout") is not None


def _time_limit(seconds: float) -> Callable[[F], F]:
    """``pytest.mark.timeout(seconds)`` when pytest-timeout is installed (an unknown mark
    would fail a suite run with ``--strict-markers``), else nothing."""
    if _HAS_PYTEST_TIMEOUT:
        return pytest.mark.timeout(seconds)
    return lambda test: test


@contextlib.contextmanager
def backend_for(executor: object, workers: int | None = None, total: int | None = None) -> Iterator[Backend]:
    """Build the :class:`~pyarallel.contracts.Backend` a run with ``executor=executor``
    and ``workers=workers`` would use, asking the registered plugins exactly as a run does
    (with ``total`` as the run's known number of items), and check that it fulfils the
    contract's surface (``TypeError`` otherwise, as a run would raise).

    The backend is closed when the block exits: with ``close(abort=False)`` when the block
    completes, ``close(abort=True)`` when it raises. Building a backend must be cheap
    (nothing starts until a task is submitted), so this is a quick way to read a
    backend's ``name``, ``capacity`` and ``capabilities``. A string ``executor`` must be
    a name some plugin lists (``ValueError`` otherwise, as for a run).
    """
    if isinstance(executor, str):
        known = {name for plugin in list_plugins() for name in plugin.executors}
        if executor not in known:
            raise ValueError(f"executor={executor!r} is not a known executor; available: {sorted(known)}")
    backend = start_backend(executor, workers, total)
    try:
        yield backend
    except BaseException:
        backend.close(abort=True)
        raise
    backend.close(abort=False)


_MISSING = object()


def _expect(observed: object, expected: object, what: str) -> None:
    """Fail unless ``observed == expected``, saying what differs (pytest does not rewrite
    the asserts of an imported module, so the kit words its own messages)."""
    if observed != expected:
        raise AssertionError(f"{what}: expected {expected!r}, observed {observed!r}")


def _expect_successes(observed: list[tuple[int, Any]], expected: dict[int, Any]) -> None:
    """Fail unless the successes ``(index, value)`` are exactly ``expected``, naming the
    first indices that differ."""
    got = dict(observed)
    wrong = [
        index
        for index in sorted(set(got) | set(expected))
        if got.get(index, _MISSING) != expected.get(index, _MISSING)
    ]
    if wrong:
        failure = "a failure"
        detail = ", ".join(
            f"{index}: expected {expected.get(index, failure)!r}, observed {got.get(index, failure)!r}"
            for index in wrong[:10]
        )
        raise AssertionError(f"{len(wrong)} items did not succeed as expected ({detail})")


class BackendConformance:
    """The conformance tests for one executor backend: subclass it as ``Test<Something>``
    and set :attr:`executor` (or override the ``executor`` fixture) and :attr:`workers`.

    Every test runs pyarallel's public API with ``executor=`` and ``workers=`` and asserts
    what pyarallel promises a user whichever backend runs the items: results in input
    order (``parallel_map``) or each index exactly once in completion order
    (``parallel_iter``); every item run exactly once, whether items are tiny (grouped into
    tasks), slow (sent alone) or both in one run; a failing item failing alone with its
    own exception; retries; pickling failures failing only their item (``SerializationError``)
    on backends that run tasks elsewhere; the run's timeout; a stream closed early
    stopping the run; a dying worker failing only its item (``WorkerCrashedError``);
    the rate limit; no more than ``workers`` items running at once; and the final
    progress report. A test that fails names what was expected and what was observed.

    The class attributes below describe the backend; override those that differ.
    """

    executor: Any = None
    """The ``executor=`` argument: a name a plugin lists, or an object. To build the object
    per test, per class or per session, define a fixture named ``executor`` instead
    (returning or yielding the object): a callable found under this name is taken to be
    that fixture."""

    workers: int = 2
    """The ``workers=`` argument of every run (an int >= 1; the tests of parallelism
    need 2 or more)."""

    runs_in_caller_process: bool | None = None
    """Whether tasks run in the test's own process (threads): then arguments and results
    are never pickled and no worker can die alone. ``None`` (the default): what the
    backend's ``capabilities.in_caller_process`` says."""

    crash_breaks_executor: bool = False
    """Set ``True`` for an executor object that becomes unusable once one of its worker
    processes dies (a standard ``concurrent.futures.ProcessPoolExecutor``, whose pool is
    then broken for good): the crash test then only checks that the run still ends, with
    every item reported once and the crashing item failed, rather than the other items
    succeeding. A backend that owns its workers should replace them instead, and keep
    this ``False``."""

    expected_failures: Mapping[str, str | pytest.MarkDecorator] = MappingProxyType({})
    """Tests this backend is known to fail, by name (``"test_x"``, or ``"test_x[param]"``
    for one parametrisation), each with the reason: they are marked
    ``xfail(strict=True)``, so that the suite passes while the bug stands and says so once
    it is fixed. Give a ``pytest.mark.xfail(...)`` instead of a reason to choose other
    options (``strict=False`` for a failure that depends on the backend's state). A name
    that is not a test of the kit is an error."""

    slack: float = 10.0
    """Seconds added to every upper time bound (a run returning after a timeout, a stream
    closing): raise it for a backend whose workers take long to start or stop."""

    # -- fixtures ----------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _mark_expected_failure(self, request: pytest.FixtureRequest) -> None:
        """Apply :attr:`expected_failures` to the running test."""
        tests = {name for name in dir(BackendConformance) if name.startswith("test_")}
        unknown = sorted(name for name in self.expected_failures if name.partition("[")[0] not in tests)
        if unknown:
            raise ValueError(
                f"{type(self).__qualname__}.expected_failures names no test of the kit: {unknown}"
            )
        name = request.node.name
        entry = self.expected_failures.get(name, self.expected_failures.get(name.partition("[")[0]))
        if entry is not None:
            mark = (
                entry
                if isinstance(entry, pytest.MarkDecorator)
                else pytest.mark.xfail(reason=entry, strict=True)
            )
            request.applymarker(mark)

    @pytest.fixture
    def conformance_executor(self, request: pytest.FixtureRequest) -> object:
        """The object passed as ``executor=``: the ``executor`` fixture's value when the
        class defines one, else the ``executor`` class attribute."""
        declared = inspect.getattr_static(type(self), "executor", None)
        if callable(declared):  # a fixture (or a function) named `executor`
            return request.getfixturevalue("executor")
        if declared is None:
            raise TypeError(
                f"{type(self).__qualname__} must set the class attribute `executor` (a name) or "
                "define an `executor` fixture (yielding an object), to say which backend to test"
            )
        return declared

    @pytest.fixture
    def options(self, conformance_executor: object) -> dict[str, Any]:
        """The keyword arguments every run of the kit passes: ``executor=`` and ``workers=``."""
        return {"executor": conformance_executor, "workers": self.workers}

    @pytest.fixture
    def capabilities(self, conformance_executor: object) -> Capabilities:
        """The capabilities the backend declares for this executor and worker count."""
        with backend_for(conformance_executor, self.workers) as backend:
            return backend.capabilities

    @pytest.fixture
    def in_caller_process(self, capabilities: Capabilities) -> bool:
        """Whether items run in this process (see :attr:`runs_in_caller_process`)."""
        if self.runs_in_caller_process is not None:
            return self.runs_in_caller_process
        return capabilities.in_caller_process

    @pytest.fixture
    def scratch(self, tmp_path: Path) -> str:
        """A fresh directory where items leave their traces (as a string: it travels)."""
        return str(tmp_path)

    def _need_parallelism(self) -> None:
        if self.workers < 2:
            pytest.skip(f"this test needs workers >= 2; {type(self).__qualname__}.workers = {self.workers}")

    # -- the backend's surface -------------------------------------------------------------

    @_time_limit(60)
    def test_backend_fulfils_the_contract_surface(self, conformance_executor: object) -> None:
        """The plugin's backend has every member of the contract, with sensible values."""
        with backend_for(conformance_executor, self.workers) as backend:
            assert isinstance(backend, Backend), f"{backend!r} lacks members of pyarallel.contracts.Backend"
            assert isinstance(backend.name, str), f"name {backend.name!r} is not a string"
            assert backend.name, "the backend's name is empty"
            assert isinstance(backend.capacity, int), f"capacity {backend.capacity!r} is not an int"
            assert 1 <= backend.capacity <= self.workers, (
                f"capacity {backend.capacity} with workers={self.workers}: the scheduler would run "
                "that many tasks at once"
            )
            assert isinstance(backend.capabilities, Capabilities), backend.capabilities
            ready = backend.until_ready()
            assert ready is None or isinstance(ready, Future), f"until_ready() returned {ready!r}"
            if ready is not None:
                ready.result(timeout=60 + self.slack)

    # -- ordering ----------------------------------------------------------------------------

    @_time_limit(60)
    def test_map_returns_values_in_input_order(self, options: dict[str, Any]) -> None:
        """Later items finish first; ``parallel_map``, ``parallel_starmap`` and a
        decorated function's ``.map`` still return the values in input order."""
        total = 12
        expected = [x * x for x in range(total)]

        mapped = parallel_starmap(fn.late_square, [(x, total) for x in range(total)], **options)
        _expect(mapped.status, RunStatus.COMPLETED, "parallel_starmap's status")
        assert mapped.ok, mapped.failures()
        _expect(list(mapped), expected, "parallel_starmap's values")
        _expect(parallel_map(fn.square, range(total), **options), expected, "parallel_map's values")
        _expect(fn.decorated_square.map(range(total), **options), expected, "@parallel .map's values")

    @_time_limit(60)
    def test_stream_yields_in_completion_order(self, options: dict[str, Any], scratch: str) -> None:
        """``parallel_iter`` yields results as they complete: item 0 waits until the
        consumer has received another item's result, and every index comes exactly once."""
        self._need_parallelism()
        seen: list[int] = []
        values: dict[int, object] = {}
        for result in parallel_iter(functools.partial(fn.first_waits, scratch), range(20), **options):
            seen.append(result.index)
            values[result.index] = result.value if result.ok else result.error
            if len(seen) == 1:
                fn.touch(scratch, "go")
        assert sorted(seen) == list(range(20)), f"indices yielded: {sorted(Counter(seen).items())}"
        assert seen[0] != 0, "item 0 came first although it waited for another item's result"
        assert values == {i: (i, True) for i in range(20)}, values

    # -- exactly once --------------------------------------------------------------------------

    def _assert_ran_once(self, scratch: str, total: int) -> None:
        counts = fn.attempts(scratch)
        wrong = {index: count for index, count in counts.items() if count != 1}
        missing = sorted(set(range(total)) - set(counts))
        assert not wrong, f"items run more than once (index: runs): {dict(sorted(wrong.items())[:20])}"
        assert not missing, f"{len(missing)} items never ran, e.g. {missing[:20]}"
        unknown = sorted(set(counts) - set(range(total)))
        assert not unknown, f"attempts logged for indices that are not in the input: {unknown[:20]}"

    @_time_limit(90)
    def test_many_tiny_items_run_exactly_once(self, options: dict[str, Any], scratch: str) -> None:
        """5,000 tiny items (grouped into tasks) each run once and end as exactly one
        success or failure; the few that raise fail alone."""
        total = 5000
        failing = {17, 2500, 4999}
        items = [(scratch, i, 0.0, i in failing) for i in range(total)]

        result = parallel_starmap(fn.work, items, **options)

        _expect(result.status, RunStatus.COMPLETED, "status")
        _expect(len(result), total, "number of results")
        failures = dict(result.failures())
        _expect(sorted(failures), sorted(failing), "indices of the failed items")
        for index, error in failures.items():
            _expect(
                (type(error), str(error)), (fn.ConformanceError, f"item {index} failed on purpose"), "error"
            )
        _expect_successes(result.successes(), {i: fn.expected(i) for i in range(total) if i not in failing})
        self._assert_ran_once(scratch, total)

    @_time_limit(60)
    def test_few_slow_items_run_exactly_once(self, options: dict[str, Any], scratch: str) -> None:
        """A few slow items (0.2 s each, sent alone) each run once and succeed."""
        total = 4
        result = parallel_starmap(fn.work, [(scratch, i, 0.2) for i in range(total)], **options)

        _expect(result.status, RunStatus.COMPLETED, "status")
        assert result.ok, result.failures()
        _expect(list(result), [fn.expected(i) for i in range(total)], "values")
        self._assert_ran_once(scratch, total)

    @_time_limit(90)
    def test_tiny_and_slow_items_mixed_run_exactly_once(self, options: dict[str, Any], scratch: str) -> None:
        """Tiny items with a few slow ones (0.2 s) among them, in one run, streamed: each
        index is yielded exactly once with its own outcome, and each item ran once."""
        total = 2000
        slow = {0, 3, 700, 1400, 1999}
        failing = {5, 1401}
        items = [(scratch, i, 0.2 if i in slow else 0.0, i in failing) for i in range(total)]

        yielded: Counter[int] = Counter()
        outcomes: dict[int, ItemResult[int]] = {}
        for result in parallel_iter(fn.work_unpacked, items, **options):
            yielded[result.index] += 1
            outcomes[result.index] = result
        repeated = {index: count for index, count in yielded.items() if count != 1}
        assert not repeated, f"indices yielded more than once: {repeated}"
        assert set(yielded) == set(range(total)), f"never yielded: {sorted(set(range(total)) - set(yielded))}"
        bad = [
            outcome
            for index, outcome in outcomes.items()
            if (index in failing) == outcome.ok or (outcome.ok and outcome.value != fn.expected(index))
        ]
        assert not bad, bad[:10]
        for index in failing:
            assert type(outcomes[index].error) is fn.ConformanceError, repr(outcomes[index].error)
        self._assert_ran_once(scratch, total)

    # -- failures and retries ---------------------------------------------------------------------

    @_time_limit(60)
    def test_a_failing_item_fails_alone(self, options: dict[str, Any]) -> None:
        """Items that raise fail with their own exception (type and message); the others
        succeed; the run still completes."""
        result = parallel_map(fn.refuse_some, range(12), **options)

        _expect(result.status, RunStatus.COMPLETED, "status")
        _expect_successes(result.successes(), {i: fn.expected(i) for i in range(12) if i not in {4, 9}})
        failures = [(index, type(error), error.args) for index, error in result.failures()]
        expected = [
            (4, fn.ConformanceError, ("item 4 is refused",)),
            (9, LookupError, ("no entry for item 9",)),
        ]
        _expect(failures, expected, "failures (index, type, args)")
        assert not result.ok, "result.ok although items failed"

    @_time_limit(60)
    def test_retry_tries_a_failing_item_again(self, options: dict[str, Any], scratch: str) -> None:
        """With ``Retry(attempts=3)``: an item failing twice succeeds on its third attempt,
        one failing every time fails after exactly three with its last error, the others
        succeed on their first."""
        failures = {2: 2, 5: 10}  # index -> how many attempts fail
        items = [(scratch, i, failures.get(i, 0)) for i in range(8)]

        result = parallel_starmap(
            fn.flaky, items, retry=Retry(attempts=3, backoff=0.01, jitter=False), **options
        )

        _expect(result.status, RunStatus.COMPLETED, "status")
        _expect_successes(result.successes(), {i: (i, 3 if i == 2 else 1) for i in range(8) if i != 5})
        failed = [(index, type(error), str(error)) for index, error in result.failures()]
        _expect(
            failed, [(5, fn.ConformanceError, "item 5 attempt 3 failed")], "failures (index, type, message)"
        )
        runs = {i: Path(scratch, f"attempts-{i}.txt").stat().st_size for i in range(8)}
        _expect(runs, {i: 3 if i in failures else 1 for i in range(8)}, "attempts per item")

    # -- pickling ------------------------------------------------------------------------------------

    @_time_limit(60)
    def test_unpicklable_argument_fails_only_its_item(
        self, options: dict[str, Any], in_caller_process: bool
    ) -> None:
        """An argument that cannot be pickled fails its item with ``SerializationError``
        on a backend that runs items elsewhere (and just works in the caller's process);
        the other items succeed."""
        items: list[object] = [0, 1, threading.Lock(), 3, "four"]

        result = parallel_map(fn.describe, items, **options)

        _expect(result.status, RunStatus.COMPLETED, "status")
        if in_caller_process:
            assert result.ok, result.failures()
            _expect(list(result), ["int", "int", "lock", "int", "str"], "values")
            return
        _expect_successes(result.successes(), {0: "int", 1: "int", 3: "int", 4: "str"})
        failures = result.failures()
        _expect([index for index, _ in failures], [2], "indices of the failed items")
        [(_, error)] = failures
        assert isinstance(error, SerializationError), f"expected a SerializationError, got {error!r}"
        _expect(error.index, 2, "the SerializationError's index")

    @_time_limit(60)
    def test_unpicklable_result_fails_only_its_item(
        self, options: dict[str, Any], in_caller_process: bool
    ) -> None:
        """A result that cannot be pickled fails its item with ``SerializationError`` on a
        backend that runs items elsewhere (and is returned as is in the caller's process);
        the other items succeed."""
        result = parallel_starmap(fn.result_for, [(i, 3) for i in range(6)], **options)

        _expect(result.status, RunStatus.COMPLETED, "status")
        if in_caller_process:
            assert result.ok, result.failures()
            assert isinstance(result[3], fn.Unpicklable), f"item 3's value is {result[3]!r}"
            return
        _expect_successes(result.successes(), {i: fn.expected(i) for i in range(6) if i != 3})
        failures = result.failures()
        _expect([index for index, _ in failures], [3], "indices of the failed items")
        [(_, error)] = failures
        assert isinstance(error, SerializationError), f"expected a SerializationError, got {error!r}"
        assert "refuses to be pickled" in str(error), str(error)

    # -- ending a run early -------------------------------------------------------------------------

    @_time_limit(90)
    def test_timeout_ends_the_run_and_fails_unfinished_items(
        self, options: dict[str, Any], scratch: str
    ) -> None:
        """Items that block (up to 30 s) keep a run from finishing: with ``timeout=1`` the
        call returns soon after a second with status ``TIMED_OUT``, every unfinished item
        failed with ``ItemTimeoutError``, the finished ones with their values."""
        timeout = 1.0
        blocked = {2, 3}
        items = [(scratch, i, i in blocked) for i in range(8)]
        try:
            started = time.monotonic()
            result = parallel_starmap(fn.block, items, timeout=timeout, **options)
            elapsed = time.monotonic() - started
        finally:
            fn.touch(scratch, "release")  # let blocked items end (a thread cannot be stopped)

        _expect(result.status, RunStatus.TIMED_OUT, "status")
        assert timeout <= elapsed + 0.05, f"the run timed out after {elapsed:.2f} s, before its timeout"
        assert elapsed < timeout + self.slack, f"the call returned {elapsed:.1f} s after it started"
        _expect(len(result), len(items), "number of results")
        failures = dict(result.failures())
        assert blocked <= set(failures), f"blocked items {sorted(blocked)} did not fail: {failures}"
        for index, error in failures.items():
            assert type(error) is ItemTimeoutError, f"item {index}: {error!r}"
            _expect(
                (error.index, error.timeout), (index, timeout), "the ItemTimeoutError's index and timeout"
            )
        _expect_successes(result.successes(), {i: fn.expected(i) for i, _ in result.successes()})

    @_time_limit(90)
    @pytest.mark.parametrize("workload", ["blocked", "tiny"])
    def test_closing_a_stream_stops_the_run(
        self, options: dict[str, Any], scratch: str, workload: str, capabilities: Capabilities
    ) -> None:
        """A ``parallel_iter`` stream closed after three results returns promptly, and no
        item of that run starts afterwards. Items mark their start in files; the markers
        are read a moment after the close and again half a second later. ``blocked``:
        every item after the first three waits for a flag, raised once the stream is
        closed, so items queued behind the running ones would start then unless the close
        cancelled them (the first three last longer than ``task_seconds``, so that none
        is grouped with a blocked item). ``tiny``: 4,000 items of 1 ms (grouped), closed
        mid-flight."""
        if workload == "blocked":
            total = 100
            seconds = max(0.05, 2 * (capabilities.task_seconds or 0))
            work = functools.partial(fn.start_then_block, scratch, quick=3, seconds=seconds)
        else:
            total = 4000
            work = functools.partial(fn.start_then_sleep, scratch, seconds=0.001)
        stream = parallel_iter(work, range(total), **options)
        try:
            received = [next(stream) for _ in range(3)]
            closing = time.monotonic()
            stream.close()
            closed = time.monotonic() - closing
            time.sleep(0.2)  # let an item handed over just before the close leave its marker
            after_close = fn.markers(scratch, "start-")
            fn.touch(scratch, "release")
            time.sleep(0.5)  # a run going on would start more items meanwhile
            later = fn.markers(scratch, "start-")
        finally:
            stream.close()
            fn.touch(scratch, "release")  # let blocked items end (a thread cannot be stopped)

        assert all(result.ok for result in received), received
        if workload == "blocked":
            _expect(sorted(result.index for result in received), [0, 1, 2], "indices received")
        assert closed < self.slack, f"closing the stream took {closed:.1f} s"
        assert later == after_close, (
            f"{len(later - after_close)} items started after the stream was closed: "
            f"{sorted(later - after_close)[:20]}"
        )
        assert len(later) < total, "every item started: the stream was not stopped"

    # -- dying workers -------------------------------------------------------------------------------

    @_time_limit(90)
    def test_a_crashing_worker_fails_only_its_item(
        self, options: dict[str, Any], scratch: str, in_caller_process: bool
    ) -> None:
        """An item that kills its worker process (``os._exit(1)``) fails with
        ``WorkerCrashedError``; every other item is yielded exactly once, successfully.
        (With :attr:`crash_breaks_executor`: the run ends, every item is yielded once, the
        crashing one failed.)"""
        if in_caller_process:
            pytest.skip(
                "the backend runs items in the caller's process: an item calling os._exit would end it"
            )
        total, crasher = 8, 3
        yielded: Counter[int] = Counter()
        outcomes: dict[int, ItemResult[int]] = {}
        started = time.monotonic()
        for result in parallel_iter(
            functools.partial(fn.crash_or_work, scratch, crasher=crasher), range(total), **options
        ):
            yielded[result.index] += 1
            outcomes[result.index] = result
        elapsed = time.monotonic() - started

        assert yielded == Counter(range(total)), f"indices yielded (index: times): {dict(yielded)}"
        assert elapsed < 20 + self.slack, f"the run took {elapsed:.1f} s"
        crashed = outcomes.pop(crasher)
        assert not crashed.ok, crashed
        wrong = {
            index: outcome
            for index, outcome in outcomes.items()
            if outcome.ok and outcome.value != fn.expected(index)
        }
        assert not wrong, wrong
        if self.crash_breaks_executor:
            return
        assert isinstance(crashed.error, WorkerCrashedError), (
            f"expected WorkerCrashedError, got {crashed.error!r}"
        )
        _expect(crashed.error.index, crasher, "the WorkerCrashedError's index")
        failed = {index: outcome.error for index, outcome in outcomes.items() if not outcome.ok}
        assert not failed, f"items other than the crashing one failed: {failed}"
        ran = fn.attempts(scratch)
        assert all(ran[i] >= 1 for i in range(total)), ran

    # -- pacing and concurrency ----------------------------------------------------------------------

    @_time_limit(60)
    def test_rate_limit_paces_call_starts(self, options: dict[str, Any]) -> None:
        """Six calls at 10 per second start over at least half a second (measured where
        they start, in the workers; 20% margin)."""
        calls, rate = 6, 10.0
        result = parallel_map(fn.start_time, range(calls), rate_limit=RateLimit(rate), **options)

        assert result.ok, result.failures()
        starts = sorted(start for _, start in result)
        span = starts[-1] - starts[0]
        minimum = (calls - 1) / rate
        assert span >= 0.8 * minimum, (
            f"{calls} calls at {rate:g}/s started within {span:.3f} s, not over {minimum:.2f} s; "
            f"gaps: {[round(b - a, 3) for a, b in itertools.pairwise(starts)]}"
        )

    @_time_limit(60)
    @pytest.mark.parametrize("workload", ["slow", "mixed"])
    def test_workers_bounds_the_items_running_at_once(self, options: dict[str, Any], workload: str) -> None:
        """No more than ``workers`` items run at the same time, with slow items only
        (0.1 s) or tiny items with slow ones among them (where a group held up by a slow
        item may hand its other items out again). Measured with each call's start and end
        times."""
        self._need_parallelism()
        if workload == "slow":
            durations = [0.1] * (3 * self.workers)
        else:
            durations = [0.1 if i % 50 == 10 else 0.001 for i in range(300)]

        result = parallel_starmap(fn.running_interval, list(enumerate(durations)), **options)

        assert result.ok, result.failures()
        events = sorted([(start, 1) for start, _ in result] + [(end, -1) for _, end in result])
        running = peak = 0
        for _, change in events:  # at equal times an end (-1) sorts before a start
            running += change
            peak = max(peak, running)
        assert peak <= self.workers, f"{peak} items ran at once with workers={self.workers}"
        if workload == "slow":
            assert peak >= 2, "the items never ran in parallel"

    @_time_limit(60)
    def test_on_progress_ends_with_done_equal_to_total(self, options: dict[str, Any]) -> None:
        """``on_progress(done, total)`` counts up and its last call says every item is done."""
        calls: list[tuple[int, int]] = []
        total = 300

        result = parallel_map(
            fn.square, range(total), on_progress=lambda d, t: calls.append((d, t)), **options
        )

        assert result.ok, result.failures()
        assert calls, "on_progress was never called"
        assert calls[-1] == (total, total), calls[-5:]
        done = [d for d, _ in calls]
        assert done == sorted(done), "done went down"
        _expect({t for _, t in calls}, {total}, "totals reported")
