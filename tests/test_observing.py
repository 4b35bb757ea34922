"""Issue 13: watching a run. ``progress=`` bars, per-run observers from plugins
(``pyarallel_run_observers``), the ``pyarallel`` logger and ``ParallelResult.stats``.

Everything runs for real: thread and process pools, real ``tqdm`` bars writing to a
``StringIO``, a real HTTP server on 127.0.0.1 answering 429, real subprocesses for what
needs a clean interpreter. Items that must stay busy wait on ``threading.Event`` or
``threading.Barrier`` objects (never on a sleep used for synchronisation); sleeps only
make an item measurably slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tqdm import tqdm

from pyarallel import (
    ItemResult,
    ParallelResult,
    RateLimit,
    Retry,
    RunStatus,
    StopToken,
    TaskTimeoutError,
    WorkerCrashedError,
    async_parallel,
    async_parallel_iter,
    async_parallel_map,
    async_parallel_starmap,
    hookimpl,
    parallel,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)
from pyarallel._builtin.progress_bar import REFRESH_SECONDS
from pyarallel._builtin.run_logging import LOGGER_NAME, NOTABLE_WAIT_SECONDS, RunLogger
from pyarallel._stats import RunStats
from pyarallel.contracts import (
    FailedAttempt,
    FinishedItems,
    RetryDecision,
    RunInfo,
    RunObserver,
    RunSummary,
    TaskLostError,
)
from quota_server import QuotaServer

Register = Callable[..., str]
WAIT = 10.0  # seconds any Event or Barrier wait may take before the test gives up

# -- helpers -----------------------------------------------------------------------------


class Boom(Exception):
    """The failure the test functions raise."""


class Bar(tqdm):  # type: ignore[type-arg]
    """A real tqdm bar that also counts what pyarallel asked of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.updates = 0
        self.closes = 0
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        self.updates += 1
        return super().update(n)

    def close(self) -> None:
        self.closes += 1
        super().close()


class Bars:
    """A ``progress=`` factory: makes a :class:`Bar` writing to its own ``StringIO`` per
    run (``functools.partial(tqdm, file=..., mininterval=0, ascii=True)``, recorded)."""

    def __init__(self) -> None:
        self.made: list[Bar] = []
        self.asked: list[dict[str, Any]] = []
        self.files: list[io.StringIO] = []
        self._lock = threading.Lock()

    def __call__(self, **kwargs: Any) -> Bar:
        file = io.StringIO()
        bar = functools.partial(Bar, file=file, mininterval=0, ascii=True)(**kwargs)
        with self._lock:
            self.asked.append(kwargs)
            self.made.append(bar)
            self.files.append(file)
        return bar

    @property
    def only(self) -> Bar:
        assert len(self.made) == 1, f"{len(self.made)} bars were made"
        return self.made[0]

    def last_line(self, position: int = 0) -> str:
        """What the bar drew last."""
        return self.files[position].getvalue().strip().split("\r")[-1]


def postfix(bar: Bar) -> str:
    return str(bar.postfix or "")


class Calls:
    """A thread-safe record of the calls a function received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Any] = []
        self.raised = 0

    def add(self, item: Any) -> int:
        """Record a call of ``item``; return how many calls ``item`` has had, this one included."""
        with self._lock:
            self.items.append(item)
            return self.items.count(item)

    def failed(self) -> None:
        with self._lock:
            self.raised += 1

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.items)


class Recorder(RunObserver):
    """A per-run observer that records everything it is told, and the threads telling it."""

    def __init__(self, run: RunInfo | None = None) -> None:
        self.run = run  # the RunInfo it was returned for, if known
        self.infos: list[RunInfo] = []
        self.threads: set[int] = set()
        self.starts = 0
        self.finished: list[tuple[int, int, int, list[int], list[tuple[int, bool]], int, int]] = []
        self.retries: list[tuple[int, int, BaseException, float]] = []
        self.lost: list[tuple[tuple[int, ...], TaskLostError]] = []
        self.waits: list[tuple[str, float]] = []
        self.summaries: list[RunSummary] = []
        self.values: list[Any] = []

    def _saw(self, run: RunInfo) -> None:
        self.infos.append(run)
        self.threads.add(threading.get_ident())

    def run_start(self, run: RunInfo) -> None:
        self._saw(run)
        self.starts += 1

    def items_finished(self, run: RunInfo, finished: FinishedItems, done: int, seen: int) -> None:
        self._saw(run)
        results = list(finished)
        self.values.extend(result.value for result in results if result.ok)
        self.finished.append(
            (
                len(finished),
                finished.succeeded,
                finished.failed,
                [result.index for result in finished.failures()],
                [(result.index, result.ok) for result in results],
                done,
                seen,
            )
        )

    def item_retry(self, run: RunInfo, index: int, attempt: int, error: BaseException, delay: float) -> None:
        self._saw(run)
        self.retries.append((index, attempt, error, delay))

    def task_lost(self, run: RunInfo, indexes: Sequence[int], error: TaskLostError) -> None:
        self._saw(run)
        self.lost.append((tuple(indexes), error))

    def run_waiting(self, run: RunInfo, reason: str, seconds: float) -> None:
        self._saw(run)
        self.waits.append((reason, seconds))

    def run_end(self, run: RunInfo, summary: RunSummary) -> None:
        self._saw(run)
        self.summaries.append(summary)

    @property
    def summary(self) -> RunSummary:
        assert len(self.summaries) == 1, self.summaries
        return self.summaries[0]

    def indexes_finished(self) -> list[int]:
        return [index for entry in self.finished for index, _ in entry[4]]


class Watcher:
    """A plugin returning a fresh :class:`Recorder` for each run ``wanted`` accepts (by
    default every run), and ``None`` for the others."""

    def __init__(self, wanted: Callable[[RunInfo], bool] = lambda run: True) -> None:
        self.wanted = wanted
        self.recorders: list[Recorder] = []
        self.asked: list[RunInfo] = []
        self._lock = threading.Lock()

    @hookimpl
    def pyarallel_run_observers(self, run: RunInfo) -> RunObserver | None:
        with self._lock:
            self.asked.append(run)
            if not self.wanted(run):
                return None
            recorder = Recorder(run)
            self.recorders.append(recorder)
            return recorder

    @property
    def only(self) -> Recorder:
        assert len(self.recorders) == 1, f"{len(self.recorders)} runs were watched"
        return self.recorders[0]


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    """The ``pyarallel`` records at ``level`` whose message contains ``text``."""
    return [
        record
        for record in caplog.records
        if record.name == LOGGER_NAME and record.levelno == level and text in record.getMessage()
    ]


def run_python(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter of this venv, with ``src`` importable."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def _identity(x: Any) -> Any:
    return x


def _add(x: int, y: int) -> int:
    return x + y


async def _async_identity(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


async def _async_add(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


# Module-level functions for the process executor (its workers import them by reference).


def _crash_on_3(x: int) -> int:
    if x == 3:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os._exit(1)
    return x


def _hang_on_2(x: int) -> int:
    if x == 2:
        time.sleep(30)  # the backend kills the worker after task_timeout
    return x


# -- progress=: the bar's final state ----------------------------------------------------


def test_sized_input_bar_ends_at_n_of_n_with_failures_and_retries_in_its_postfix() -> None:
    buf = io.StringIO()
    calls = Calls()

    def flaky(x: int) -> int:
        attempt = calls.add(x)
        if x % 5 == 0:
            raise Boom(x)  # 0, 5, 10, 15 fail on both attempts: 4 failed, 4 retries
        if x in (3, 7) and attempt == 1:
            raise Boom(x)  # fail once, then succeed: 2 retries
        return x

    result = parallel_map(
        flaky,
        range(20),
        workers=4,
        retry=Retry(attempts=2, backoff=0),
        progress=functools.partial(tqdm, file=buf, mininterval=0, ascii=True),
    )

    assert result.status is RunStatus.COMPLETED
    assert len(result.failures()) == 4
    final = buf.getvalue().strip().split("\r")[-1]
    assert final.startswith(flaky.__qualname__), final  # desc= is the function's name
    assert "20/20" in final, final
    assert "failed=4" in final, final
    assert "retries=6" in final, final
    assert "status=" not in final, final
    assert buf.getvalue().endswith("\n"), "the bar was not closed"


def _counted(taken: list[int], count: int) -> Iterator[int]:
    for index in range(count):
        taken.append(index)
        yield index


@pytest.mark.parametrize(
    "run",
    [
        pytest.param(lambda items, bars: parallel_map(_identity, items, workers=3, progress=bars), id="map"),
        pytest.param(
            lambda items, bars: parallel_map(_identity, items, workers=3, batch_size=4, progress=bars),
            id="map-lazy",
        ),
        pytest.param(
            lambda items, bars: list(parallel_iter(_identity, items, workers=3, progress=bars)), id="iter"
        ),
        pytest.param(
            lambda items, bars: list(
                parallel_iter(_identity, items, workers=3, batch_size=4, progress=bars, ordered=True)
            ),
            id="iter-ordered",
        ),
    ],
)
def test_unsized_input_bar_total_ends_at_the_items_read(run: Callable[[Iterator[int], Bars], Any]) -> None:
    taken: list[int] = []
    bars = Bars()

    results = run(_counted(taken, 23), bars)

    assert len(results) == len(taken) == 23
    bar = bars.only
    assert (bar.n, bar.total) == (23, 23)
    assert bar.closes == 1
    assert "23/23" in bars.last_line()


def test_timed_out_bar_shows_what_finished_and_says_timed_out() -> None:
    """At the timeout the unfinished items fail with ``ItemTimeoutError``: they are no
    progress, so the bar shows the 3 that finished of 10, and says the run timed out."""
    release = threading.Event()
    bars = Bars()

    def stuck_after_3(x: int) -> int:
        if x >= 3:
            release.wait(WAIT)
        return x

    try:
        result = parallel_map(stuck_after_3, range(10), workers=4, timeout=0.3, progress=bars)
    finally:
        release.set()

    assert result.status is RunStatus.TIMED_OUT
    bar = bars.only
    assert bar.closes == 1
    assert "status=timed out" in postfix(bar)
    assert bar.total == 10
    assert bar.n < bar.total, f"a timed-out run's bar reads {bar.n}/{bar.total}"
    assert bar.n == len(result.successes()) == 3


def test_aborted_and_cancelled_bars_say_so_and_are_closed() -> None:
    def failing(x: int) -> int:
        raise Boom(x)

    aborted = Bars()
    result = parallel_map(failing, range(200), workers=2, max_errors=3, progress=aborted)
    assert result.status is RunStatus.ABORTED
    bar = aborted.only
    assert bar.closes == 1
    assert "status=aborted" in postfix(bar)
    assert "failed=" in postfix(bar)
    assert bar.total == 200
    assert 3 <= bar.n <= 200

    token = StopToken()
    started_5 = threading.Event()

    def stops_at_5(x: int) -> int:
        if x == 5:
            token.stop()
            started_5.set()
        return x

    cancelled = Bars()
    result = parallel_map(stops_at_5, range(500), workers=2, batch_size=4, stop=token, progress=cancelled)
    assert started_5.is_set()
    assert result.status is RunStatus.CANCELLED
    bar = cancelled.only
    assert bar.closes == 1
    assert "status=cancelled" in postfix(bar)
    assert bar.total == 500
    assert len(result.successes()) <= bar.n <= 500


def test_keyboard_interrupt_in_the_consumer_of_a_stream_closes_its_bar() -> None:
    bars = Bars()

    def consume() -> int:
        seen = 0
        for _ in parallel_iter(_identity, range(1000), workers=2, batch_size=4, progress=bars):
            seen += 1
            if seen == 5:
                raise KeyboardInterrupt
        return seen

    with pytest.raises(KeyboardInterrupt):
        consume()

    bar = bars.only
    assert bar.closes == 1
    assert "status=interrupted" in postfix(bar)
    assert 5 <= bar.n < 1000


def test_a_stream_closed_early_closes_its_bar() -> None:
    bars = Bars()
    with contextlib.closing(parallel_iter(_identity, range(1000), workers=2, progress=bars)) as stream:
        for index, _ in enumerate(stream):
            if index == 3:
                break
    bar = bars.only
    assert bar.closes == 1
    assert "status=interrupted" in postfix(bar)


def test_an_interrupted_unsized_stream_bar_total_is_the_items_read() -> None:
    """A stream of unsized input closed early ends with the items read as its total, not
    the items finished (which would read n/n, 100%)."""
    taken: list[int] = []
    bars = Bars()
    stream = parallel_iter(_identity, _counted(taken, 1000), workers=2, batch_size=16, progress=bars)
    with contextlib.closing(stream):
        for index, _ in enumerate(stream):
            if index == 3:
                break
    bar = bars.only
    assert bar.closes == 1
    assert "status=interrupted" in postfix(bar)
    assert len(taken) > bar.n, "the test needs items read ahead of completion"
    assert bar.total is not None
    assert bar.n < bar.total <= len(taken), f"bar {bar.n}/{bar.total}, {len(taken)} items read"


def test_a_bar_is_closed_when_on_result_raises() -> None:
    bars = Bars()

    def on_result(result: ItemResult[Any]) -> None:
        if result.index == 3:
            raise LookupError("from on_result")

    with pytest.raises(LookupError, match="from on_result"):
        parallel_map(_identity, range(10), workers=1, on_result=on_result, progress=bars)
    bar = bars.only
    assert bar.closes == 1
    assert "status=error" in postfix(bar)


def test_a_bar_is_closed_when_a_run_start_hook_refuses_the_run(register: Register) -> None:
    """The bar observer's ``run_start`` made the bar, then a ``pyarallel_run_start`` hook
    raised: the run does not start, and the bar is closed all the same."""

    class Refusing:
        @hookimpl
        def pyarallel_run_start(self, run: RunInfo) -> None:
            raise LookupError("refused")

    register(Refusing())
    bars = Bars()
    with pytest.raises(LookupError, match="refused"):
        parallel_map(_identity, range(5), workers=2, progress=bars)
    assert all(bar.closes == 1 for bar in bars.made), [bar.closes for bar in bars.made]


def test_a_cancelled_async_call_closes_its_bar() -> None:
    bars = Bars()

    async def main() -> None:
        started = asyncio.Event()
        never = asyncio.Event()

        async def work(x: int) -> int:
            if x >= 2:
                started.set()
                await never.wait()
            return x

        task = asyncio.create_task(async_parallel_map(work, range(10), concurrency=4, progress=bars))
        await asyncio.wait_for(started.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    bar = bars.only
    assert bar.closes == 1
    assert "status=interrupted" in postfix(bar)
    assert bar.n <= 2


def test_progress_true_draws_on_a_terminal(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    script = tmp_path / "bar.py"
    script.write_text(
        "from pyarallel import parallel_map\n"
        "def double(x):\n    return 2 * x\n"
        "print(parallel_map(double, range(50), workers=2, progress=True).ok)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=terminal, text=True, env=env
    ) as process:
        os.close(terminal)
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := os.read(master, 65536):
                drawn += chunk
        stdout, _ = process.communicate(timeout=60)
    os.close(master)
    assert stdout.strip() == "True"
    final = drawn.decode().strip().split("\r")[-1]
    assert final.startswith("double: 100%"), final
    assert "50/50" in final
    assert "item/s" in final


def _run_forms() -> list[Any]:
    """Every API and decorator form, each as ``form(progress, count) -> results``."""

    @parallel(workers=2)
    def deco_identity(x: int) -> int:
        return x

    @parallel(workers=2)
    def deco_add(x: int, y: int) -> int:
        return x + y

    @async_parallel(concurrency=3)
    async def adeco_identity(x: int) -> int:
        await asyncio.sleep(0)
        return x

    @async_parallel(concurrency=3)
    async def adeco_add(x: int, y: int) -> int:
        await asyncio.sleep(0)
        return x + y

    def pairs(count: int) -> list[tuple[int, int]]:
        return [(x, 1) for x in range(count)]

    async def drain(stream: Any) -> list[Any]:
        async with stream as results:
            return [item async for item in results]

    def deco_defaults(progress: Any, count: int) -> Any:
        @parallel(workers=2, progress=progress)
        def with_default(x: int) -> int:
            return x

        return with_default.map(range(count))

    def adeco_defaults(progress: Any, count: int) -> Any:
        @async_parallel(progress=progress)
        async def with_default(x: int) -> int:
            return x

        return asyncio.run(with_default.map(range(count)))

    forms: list[tuple[str, Callable[[Any, int], Any]]] = [
        (
            "parallel_map-process",
            lambda p, n: parallel_map(_identity, range(n), executor="process", workers=2, progress=p),
        ),
        ("parallel_starmap", lambda p, n: parallel_starmap(_add, pairs(n), workers=2, progress=p)),
        (
            "async_parallel_map",
            lambda p, n: asyncio.run(async_parallel_map(_async_identity, range(n), progress=p)),
        ),
        (
            "async_parallel_starmap",
            lambda p, n: asyncio.run(async_parallel_starmap(_async_add, pairs(n), progress=p)),
        ),
        (
            "async_parallel_iter",
            lambda p, n: asyncio.run(drain(async_parallel_iter(_async_identity, range(n), progress=p))),
        ),
        (
            "async_parallel_iter-ordered",
            lambda p, n: asyncio.run(
                drain(async_parallel_iter(_async_identity, range(n), ordered=True, progress=p))
            ),
        ),
        ("@parallel.map", lambda p, n: deco_identity.map(range(n), progress=p)),
        ("@parallel.starmap", lambda p, n: deco_add.starmap(pairs(n), progress=p)),
        ("@parallel.stream", lambda p, n: list(deco_identity.stream(range(n), progress=p))),
        ("@parallel(progress=)", deco_defaults),
        ("@async_parallel.map", lambda p, n: asyncio.run(adeco_identity.map(range(n), progress=p))),
        ("@async_parallel.starmap", lambda p, n: asyncio.run(adeco_add.starmap(pairs(n), progress=p))),
        (
            "@async_parallel.stream",
            lambda p, n: asyncio.run(drain(adeco_identity.stream(range(n), progress=p))),
        ),
        ("@async_parallel(progress=)", adeco_defaults),
    ]
    return [pytest.param(form, id=name) for name, form in forms]


@pytest.mark.parametrize("form", _run_forms())
def test_every_api_and_decorator_form_draws_and_closes_a_bar(form: Callable[[Any, int], Any]) -> None:
    bars = Bars()
    results = form(bars, 12)
    assert len(results) == 12
    bar = bars.only
    assert (bar.n, bar.total) == (12, 12)
    assert bar.closes == 1
    assert set(bars.asked[0]) == {"total", "desc"}
    assert bars.last_line().startswith(bars.asked[0]["desc"])


@pytest.mark.parametrize("total", [None, 7])
def test_a_bar_object_is_used_as_it_is_and_closed(total: int | None) -> None:
    file = io.StringIO()
    bar = Bar(total=total, file=file, mininterval=0, ascii=True, desc="mine")
    result = parallel_map(_identity, range(7), workers=2, progress=bar)
    assert result.ok
    assert (bar.n, bar.total) == (7, 7)
    assert bar.closes == 1
    assert file.getvalue().strip().split("\r")[-1].startswith("mine")


def test_the_bar_is_updated_at_most_every_refresh_interval() -> None:
    bars = Bars()
    started = time.monotonic()
    result = parallel_map(_identity, range(3000), sequential=True, progress=bars)  # a task per item
    seconds = time.monotonic() - started
    assert result.ok
    bar = bars.only
    assert bar.n == 3000
    assert bar.updates <= seconds / REFRESH_SECONDS + 2, (bar.updates, seconds)


def test_progress_true_draws_nothing_when_stderr_is_not_a_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    assert parallel_map(_identity, range(50), workers=2, progress=True).ok
    assert len(list(parallel_iter(_identity, range(50), workers=2, progress=True))) == 50
    assert asyncio.run(async_parallel_map(_async_identity, range(5), progress=True)).ok
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


@pytest.mark.parametrize("value", [3, "yes", object(), 0.5])
def test_a_progress_value_that_draws_no_bar_is_refused(value: object) -> None:
    calls = Calls()

    def fn(x: int) -> int:
        calls.add(x)
        return x

    with pytest.raises(TypeError, match="progress"):
        parallel_map(fn, range(3), progress=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        parallel_iter(fn, range(3), progress=value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        parallel(progress=value)(fn)  # type: ignore[call-overload]
    assert calls.count == 0


def test_progress_true_without_tqdm_says_how_to_install_it_and_runs_nothing(tmp_path: Path) -> None:
    completed = run_python(
        """
        import sys

        sys.modules["tqdm"] = None  # as if tqdm were not installed
        from pyarallel import parallel_iter, parallel_map

        from pyarallel import async_parallel, parallel

        calls = []

        async def record(x):
            calls.append(x)

        for call in (
            lambda: parallel_map(calls.append, [1, 2, 3], progress=True),
            lambda: parallel_iter(calls.append, [1, 2, 3], progress=True),
            lambda: parallel(progress=True)(calls.append),
            lambda: async_parallel(progress=True)(record),
        ):
            try:
                call()
            except ModuleNotFoundError as error:
                print(type(error).__name__, error.name, "|", error)
            else:
                print("no error")
        print("calls:", len(calls))
        """,
        tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert len(lines) == 5, completed.stdout
    for line in lines[:4]:
        assert line.startswith("ModuleNotFoundError tqdm |"), line
        assert "pip install 'pyarallel[progress]'" in line, line
    assert lines[4] == "calls: 0"


def test_concurrent_calls_each_feed_only_their_own_bar() -> None:
    start, end = threading.Barrier(2, timeout=WAIT), threading.Barrier(2, timeout=WAIT)
    counts = {"a": 40, "b": 25}
    bars = {name: Bars() for name in counts}
    results: dict[str, ParallelResult[Any]] = {}
    errors: list[BaseException] = []

    def make(name: str) -> Callable[[int], tuple[str, int]]:
        last = counts[name] - 1

        def work(x: int) -> tuple[str, int]:
            if x == 0:
                start.wait()  # both calls are running
            if x == last:
                end.wait()  # neither call has ended yet
            time.sleep(0.001)
            return (name, x)

        work.__qualname__ = f"work_{name}"
        return work

    def call(name: str) -> None:
        try:
            results[name] = parallel_map(make(name), range(counts[name]), workers=2, progress=bars[name])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=call, args=(name,)) for name in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not errors, errors
    for name, count in counts.items():
        assert results[name].ok
        assert {value[0] for value in results[name]} == {name}
        bar = bars[name].only
        assert (bar.n, bar.total) == (count, count), name
        assert bar.closes == 1
        assert bars[name].asked[0]["desc"] == f"work_{name}"


# -- per-run observers -------------------------------------------------------------------


def test_a_per_run_observer_sees_only_the_run_it_was_returned_for(register: Register) -> None:
    watcher = Watcher(lambda run: run.function == "watched")
    register(watcher)
    start = threading.Barrier(2, timeout=WAIT)
    end = threading.Barrier(2, timeout=WAIT)
    errors: list[BaseException] = []
    driving: dict[str, int] = {}

    def make(name: str, count: int) -> Callable[[int], tuple[str, int]]:
        def work(x: int) -> tuple[str, int]:
            if x == 0:
                start.wait()
            if x == count - 1:
                end.wait()
            if name == "watched" and x % 7 == 3:
                raise Boom(x)
            return (name, x)

        work.__qualname__ = name
        return work

    def call(name: str, count: int) -> None:
        driving[name] = threading.get_ident()
        try:
            parallel_map(make(name, count), range(count), workers=2, retry=Retry(attempts=2, backoff=0))
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=call, args=("watched", 30)),
        threading.Thread(target=call, args=("unwatched", 50)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not errors, errors

    assert sorted(run.function for run in watcher.asked) == ["unwatched", "watched"]
    recorder = watcher.only
    assert recorder.run is not None
    assert all(info is recorder.run for info in recorder.infos)  # the same RunInfo every time
    assert recorder.threads == {driving["watched"]}
    assert recorder.starts == 1
    assert sorted(recorder.indexes_finished()) == list(range(30))
    assert {value[0] for value in recorder.values} == {"watched"}
    failing = [x for x in range(30) if x % 7 == 3]
    assert sorted(index for index, _, _, _ in recorder.retries) == failing
    summary = recorder.summary
    assert (summary.outcome, summary.succeeded, summary.failed, summary.retries) == (
        "completed",
        30 - len(failing),
        len(failing),
        len(failing),
    )
    assert summary.stats is not None
    assert summary.stats.function == "watched"


def test_finished_items_count_list_failures_and_iterate_their_results(register: Register) -> None:
    watcher = Watcher()
    register(watcher)
    failing = {4, 9, 17, 18, 30}

    def work(x: int) -> int:
        if x in failing:
            raise Boom(x)
        return x * 10

    result = parallel_map(work, range(40), workers=3)

    recorder = watcher.only
    assert sum(entry[0] for entry in recorder.finished) == 40
    for size, succeeded, failed, failures, iterated, _, _ in recorder.finished:
        assert size == succeeded + failed == len(iterated)
        assert failures == [index for index, ok in iterated if not ok]
        assert failed == len(failures)
    assert sorted(recorder.indexes_finished()) == list(range(40))
    assert sorted(index for entry in recorder.finished for index in entry[3]) == sorted(failing)
    assert sorted(recorder.values) == sorted(x * 10 for x in range(40) if x not in failing)
    dones = [entry[5] for entry in recorder.finished]
    assert dones == sorted(dones)
    assert dones[-1] == 40
    assert all(seen >= done for *_, done, seen in recorder.finished)
    assert len(result.failures()) == len(failing)


def test_finished_items_repr_and_slowest(register: Register) -> None:
    seen: list[tuple[str, int, int, list[tuple[int, float]]]] = []

    class Slowest(RunObserver):
        def items_finished(self, run: RunInfo, finished: FinishedItems, done: int, seen_: int) -> None:
            seen.append((repr(finished), finished.succeeded, finished.failed, finished.slowest(2)))

    class Plugin:
        @hookimpl
        def pyarallel_run_observers(self, run: RunInfo) -> RunObserver:
            return Slowest()

    def work(x: int) -> int:
        if x == 0:
            time.sleep(0.1)  # the first task carries one item: alone, measured on its own
        if x == 1:
            raise Boom(x)
        return x

    register(Plugin())
    parallel_map(work, range(6), sequential=True)

    for text, succeeded, failed, slowest in seen:
        assert text == f"FinishedItems({succeeded} succeeded, {failed} failed)"
        assert len(slowest) <= min(2, succeeded + failed)
        assert [s for _, s in slowest] == sorted((s for _, s in slowest), reverse=True)
    assert sum(failed for _, _, failed, _ in seen) == 1
    index, seconds = max((entry for *_, entries in seen for entry in entries), key=lambda e: e[1])
    assert index == 0
    assert seconds >= 0.08


def test_process_crash_is_seen_by_observers_stats_and_the_log(
    register: Register, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    watcher = Watcher()
    register(watcher)

    result = parallel_map(_crash_on_3, range(8), executor="process", workers=2)

    assert result.status is RunStatus.COMPLETED
    failures = result.failures()
    assert [index for index, _ in failures] == [3]
    assert isinstance(failures[0][1], WorkerCrashedError)
    recorder = watcher.only
    crashed = [(indexes, error) for indexes, error in recorder.lost if error.crashed]
    assert len(crashed) == 1
    assert 3 in crashed[0][0]
    assert all(not error.overdue for _, error in recorder.lost)
    stats = result.stats
    assert stats.workers_lost == len(recorder.lost) >= 1
    assert stats.failures_by_type == (("WorkerCrashedError", 1),)
    assert (stats.succeeded, stats.failed) == (7, 1)
    assert "workers lost" in str(stats)

    warnings = records(caplog, logging.WARNING, "crashed")
    assert len(warnings) == 1
    assert "item(s) 3 crashed" in warnings[0].getMessage()
    assert warnings[0].pyarallel["indexes"] == crashed[0][0]  # type: ignore[attr-defined]
    assert records(caplog, logging.INFO, "recovered from a lost worker")


def test_task_timeout_kill_is_seen_by_observers_stats_and_the_log(
    register: Register, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    watcher = Watcher()
    register(watcher)

    started = time.monotonic()
    result = parallel_map(_hang_on_2, range(6), executor="process", workers=2, task_timeout=0.5)
    assert time.monotonic() - started < 10

    assert [index for index, _ in result.failures()] == [2]
    assert isinstance(result.failures()[0][1], TaskTimeoutError)
    recorder = watcher.only
    overdue = [(indexes, error) for indexes, error in recorder.lost if error.overdue]
    assert len(overdue) == 1
    assert overdue[0][0][-1] == 2  # the item running when the worker was stopped
    assert result.stats.workers_lost == len(recorder.lost)
    assert result.stats.failures_by_type == (("TaskTimeoutError", 1),)
    assert records(caplog, logging.WARNING, "an item overran task_timeout")
    timed_out = records(caplog, logging.WARNING, "item 2 timed out")
    assert len(timed_out) == 1
    assert timed_out[0].pyarallel["index"] == 2  # type: ignore[attr-defined]


def test_rate_limit_waits_reach_observers_stats_and_the_debug_log(
    register: Register, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    watcher = Watcher()
    register(watcher)

    result = parallel_map(_identity, range(5), workers=2, rate_limit=20)

    assert result.ok
    waits = watcher.only.waits
    assert waits, "no wait for the rate limiter was reported"
    assert {reason for reason, _ in waits} == {"rate_limit"}
    assert all(0 < seconds < 1 for _, seconds in waits)
    assert 0.1 <= sum(seconds for _, seconds in waits) <= 1.0  # 4 intervals of 0.05 s
    assert result.stats.rate_limit_wait == pytest.approx(sum(seconds for _, seconds in waits))
    assert result.stats.paused == 0
    short = records(caplog, logging.DEBUG, ": waited ")
    assert len(short) == len(waits)
    assert not records(caplog, logging.INFO, ": waited ")


class PausingPolicy:
    """A retry policy that asks for a paused retry after ``seconds``, at most once per item."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def decide(self, failed: FailedAttempt) -> RetryDecision | None:
        return RetryDecision(self.seconds, pause=True) if failed.attempt == 1 else None


def _fetch_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        return int(response.status)


@pytest.mark.parametrize("how", ["RetryDecision(pause=True)", "Retry(wait_from=) on a real 429"])
def test_a_paused_retry_is_told_as_a_pause_wait(
    how: str, register: Register, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    watcher = Watcher()
    register(watcher)
    pause = 0.3

    if how.startswith("RetryDecision"):
        calls = Calls()

        def once(x: int) -> int:
            if x == 1 and calls.add(x) == 1:
                raise Boom(x)
            return x

        result = parallel_map(once, range(4), workers=2, retry=PausingPolicy(pause))
    else:
        with QuotaServer(fail_status=429, fail_first=1) as server:
            url = server.url
            result = parallel_map(
                lambda x: _fetch_status(f"{url}/item?item={x}"),
                range(4),
                workers=1,
                retry=Retry(attempts=2, backoff=0, statuses={429}, wait_from=lambda error: pause),
            )
            assert [r.status for r in server.requests()].count(429) == 1
        assert isinstance(watcher.only.retries[0][2], urllib.error.HTTPError)

    assert result.ok, result.failures()
    waits = watcher.only.waits
    assert [reason for reason, _ in waits] == ["pause"]
    assert waits[0][1] == pytest.approx(pause)
    assert result.stats.paused == pytest.approx(pause)
    assert result.stats.rate_limit_wait == 0
    assert f"{pause * 1000:.1f} ms paused" in str(result.stats)
    assert len(records(caplog, logging.INFO, "starts paused for 0.30 s")) == 1


def test_an_observer_whose_run_end_raises_lets_the_others_end(register: Register) -> None:
    class Raising(RunObserver):
        def run_end(self, run: RunInfo, summary: RunSummary) -> None:
            raise Boom("from run_end")

    after = Recorder()

    class Plugin:
        @hookimpl
        def pyarallel_run_observers(self, run: RunInfo) -> Sequence[RunObserver]:
            return [Raising(), after]

    watcher = Watcher()
    register(watcher)  # registered first: asked after the raising one
    register(Plugin())
    bars = Bars()

    with pytest.raises(Boom, match="from run_end"):
        parallel_map(_identity, range(10), workers=2, progress=bars)

    assert after.summary.outcome == "completed"
    assert watcher.only.summary.succeeded == 10
    assert bars.only.closes == 1  # the built-in progress observer ended too
    assert bars.only.n == 10


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        pytest.param("nope", "'nope'", id="a-string"),
        pytest.param([RunObserver(), 5], "5", id="a-list-holding-an-int"),
        pytest.param(42, "42", id="an-int"),
        pytest.param(RunObserver, "<class", id="the-class"),
    ],
)
def test_a_hook_returning_something_else_than_observers_is_a_type_error(
    answer: object, named: str, register: Register
) -> None:
    """An answer that is neither an observer nor a sequence of them is refused by name
    (not iterated: a string's first character, an int's "not iterable")."""

    class Plugin:
        @hookimpl
        def pyarallel_run_observers(self, run: RunInfo) -> object:
            return answer

    register(Plugin())
    calls = Calls()

    def fn(x: int) -> int:
        calls.add(x)
        return x

    for call in (lambda: parallel_map(fn, range(5), workers=2), lambda: list(parallel_iter(fn, range(5)))):
        with pytest.raises(TypeError, match="pyarallel_run_observers must return a RunObserver") as raised:
            call()
        assert f"a plugin returned {named}" in str(raised.value)
    assert calls.count == 0


# -- the pyarallel logger ----------------------------------------------------------------


def test_a_retry_is_logged_at_info_with_index_attempt_delay_and_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    calls = Calls()

    def flaky(x: int) -> int:
        if x == 3 and calls.add(x) == 1:
            raise Boom("first attempt of 3")
        return x

    result = parallel_map(flaky, range(6), workers=2, retry=Retry(attempts=2, backoff=0.01, jitter=False))

    assert result.ok
    (record,) = records(caplog, logging.INFO, "retrying")
    message = record.getMessage()
    assert "item 3" in message
    assert "attempt 1" in message
    assert "0.01 s" in message
    assert "Boom: first attempt of 3" in message
    fields = record.pyarallel  # type: ignore[attr-defined]
    assert fields["function"] == flaky.__qualname__
    assert isinstance(fields["run_id"], int)
    assert (fields["index"], fields["attempt"], fields["delay"]) == (3, 1, pytest.approx(0.01))


def test_a_thread_task_timeout_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    release = threading.Event()

    def stuck_on_2(x: int) -> int:
        if x == 2:
            release.wait(WAIT)
        return x

    try:
        result = parallel_map(stuck_on_2, range(4), workers=2, task_timeout=0.2)
    finally:
        release.set()
    assert [index for index, _ in result.failures()] == [2]
    (record,) = records(caplog, logging.WARNING, "timed out")
    assert "item 2 timed out" in record.getMessage()
    assert "task_timeout" in record.getMessage()


def test_run_timeout_abort_and_cancel_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    release = threading.Event()

    def stuck_after_1(x: int) -> int:
        if x >= 1:
            release.wait(WAIT)
        return x

    try:
        parallel_map(stuck_after_1, range(5), workers=2, timeout=0.2)
    finally:
        release.set()
    (timeout,) = records(caplog, logging.WARNING, "timed out after")
    assert "timeout=0.2" in timeout.getMessage()
    assert "4 unfinished item(s) failed with ItemTimeoutError" in timeout.getMessage()

    def failing(x: int) -> int:
        raise Boom(x)

    parallel_map(failing, range(100), workers=2, max_errors=2)
    (abort,) = records(caplog, logging.WARNING, "aborted")
    assert "max_errors=2" in abort.getMessage()

    token = StopToken()
    token.stop()
    parallel_map(_identity, range(10), workers=2, stop=token)
    assert len(records(caplog, logging.INFO, "stopped on request")) == 1


def test_a_long_rate_limit_wait_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    rate = 0.8  # one call every 1.25 s: a wait of NOTABLE_WAIT_SECONDS and more
    assert 1 / rate > NOTABLE_WAIT_SECONDS

    result = parallel_map(_identity, range(2), workers=2, rate_limit=RateLimit(rate))

    assert result.ok
    (record,) = records(caplog, logging.INFO, ": waited ")
    seconds = record.pyarallel["seconds"]  # type: ignore[attr-defined]
    assert 1.15 <= seconds <= 2.0  # 1.25 s, and a loaded machine may wake late
    assert f"waited {seconds:.2f} s for the rate limiter" in record.getMessage()
    assert result.stats.rate_limit_wait == pytest.approx(seconds)


def test_the_summary_is_logged_at_info_with_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    calls = Calls()

    def work(x: int) -> int:
        if x in (2, 4) or (x == 5 and calls.add(x) == 1):
            raise ValueError(x)
        return x

    result = parallel_map(work, range(10), workers=2, retry=Retry(attempts=2, backoff=0))

    (record,) = records(caplog, logging.INFO, "completed in")
    message = record.getMessage()
    assert message.startswith(f"{work.__qualname__}: completed in")
    assert "items 10 (8 succeeded, 2 failed)" in message
    assert "calls 13 (3 retries)" in message
    assert "failures ValueError 2" in message
    assert record.pyarallel["stats"] == result.stats  # type: ignore[attr-defined]
    assert not records(caplog, logging.DEBUG, "")  # DEBUG is off: nothing at DEBUG


def _run_loggers() -> int:
    return sum(isinstance(obj, RunLogger) for obj in gc.get_objects())


def test_a_run_logger_is_attached_only_when_someone_listens(caplog: pytest.LogCaptureFixture) -> None:
    found: list[int] = []

    def count_loggers(x: int) -> int:
        found.append(_run_loggers() - before)
        return x

    gc.collect()
    before = _run_loggers()  # what earlier tests may still hold
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    parallel_map(count_loggers, [0], sequential=True)
    logger = logging.getLogger(LOGGER_NAME)
    previous = logger.level
    logger.setLevel(logging.ERROR)  # a WARNING would reach no handler
    try:
        gc.collect()
        before = _run_loggers()
        parallel_map(count_loggers, [0], sequential=True)
    finally:
        logger.setLevel(previous)
    assert found == [1, 0]


def test_unconfigured_logging_attaches_nothing_and_prints_nothing(tmp_path: Path) -> None:
    completed = run_python(
        """
        import gc
        import os

        from pyarallel import Retry, hookimpl, parallel_map, register_plugin
        from pyarallel._builtin.run_logging import RunLogger

        loggers = []

        class Probe:
            @hookimpl
            def pyarallel_run_start(self, run):
                loggers.append(sum(isinstance(obj, RunLogger) for obj in gc.get_objects()))

        def crash_on_3(x):
            if x == 3:
                import resource

                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                os._exit(1)
            return x

        def fail(x):
            raise ValueError(x)

        if __name__ == "__main__":
            register_plugin(Probe())
            crashed = parallel_map(crash_on_3, range(6), executor="process", workers=2)
            failed = parallel_map(fail, range(3), workers=2, retry=Retry(attempts=3, backoff=0))
            timed = parallel_map(lambda x: x, range(3), workers=2, rate_limit=50)
            print(len(crashed.failures()), failed.stats.retries, timed.stats.rate_limit_wait > 0, loggers)
        """,
        tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    assert completed.stdout.strip() == "1 6 True [0, 0, 0]"


# -- statistics --------------------------------------------------------------------------


def test_stats_match_what_happened() -> None:
    flaky = {2: 1, 5: 2, 8: 1}  # item: how many times it fails before succeeding
    value_errors, key_errors = {10, 11, 12}, {20, 21}
    slow = 0  # the first task carries one item, so its duration is its own (not a group's share)
    calls = Calls()

    def work(x: int) -> int:
        attempt = calls.add(x)
        if x in value_errors:
            raise ValueError(x)
        if x in key_errors:
            raise KeyError(x)
        if attempt <= flaky.get(x, 0):
            raise Boom(x)
        if x == slow:
            time.sleep(0.3)
        return x

    result = parallel_map(work, range(30), workers=3, retry=Retry(attempts=3, backoff=0))
    stats = result.stats

    assert isinstance(stats, RunStats)
    retries = sum(flaky.values()) + 2 * (len(value_errors) + len(key_errors))
    assert stats.function == work.__qualname__
    assert stats.outcome == "completed"
    assert (stats.succeeded, stats.failed, stats.items) == (25, 5, 30)
    assert stats.retries == retries == 14
    assert stats.calls == calls.count == 30 + retries
    assert stats.failures_by_type == (("ValueError", 3), ("KeyError", 2))
    assert stats.failures_by_type_dict() == {"ValueError": 3, "KeyError": 2}
    assert 1 <= len(stats.slowest) <= 5
    assert stats.slowest[0][0] == slow
    assert stats.slowest[0][1] >= 0.25
    assert [seconds for _, seconds in stats.slowest] == sorted((s for _, s in stats.slowest), reverse=True)
    assert (stats.rate_limit_wait, stats.paused, stats.workers_lost, stats.restored) == (0, 0, 0, 0)
    assert stats.seconds >= 0.3
    assert stats.items_per_second == pytest.approx(30 / stats.seconds)
    assert stats.calls_per_second == pytest.approx(44 / stats.seconds)

    text = str(stats)
    assert text.splitlines()[0].startswith(f"{work.__qualname__}: completed in")
    for figure in ("30 (25 succeeded, 5 failed)", "44 (14 retries)", "ValueError 3, KeyError 2", f"#{slow} "):
        assert figure in text, text
    assert "restored" not in text
    assert "waited" not in text
    assert "workers lost" not in text
    html = result._repr_html_()
    for figure in (
        "30 (25 succeeded, 5 failed)",
        "44 (14 retries)",
        "ValueError 3, KeyError 2",
        "&lt;locals&gt;",
    ):
        assert figure in html, html
    assert "<locals>" not in html  # the function's name is escaped
    assert stats._repr_html_() in html


def test_rate_limit_wait_is_counted_only_under_a_rate_limit() -> None:
    limited = parallel_map(_identity, range(5), workers=5, rate_limit=25).stats
    free = parallel_map(_identity, range(5), workers=5).stats
    assert 0.1 <= limited.rate_limit_wait <= 1.0  # 4 intervals of 40 ms
    assert "for the rate limiter" in str(limited)
    assert free.rate_limit_wait == 0


def test_restored_items_are_counted_on_a_checkpoint_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYARALLEL_CHECKPOINT_SECRET", "test-observing")
    path = tmp_path / "job.db"
    failing = {6, 7, 8, 9}
    calls = Calls()

    def work(x: int) -> int:
        calls.add(x)
        if x in failing:
            raise Boom(x)
        return x

    first = parallel_map(work, range(10), workers=2, checkpoint=path)
    assert (first.stats.succeeded, first.stats.failed, first.stats.restored) == (6, 4, 0)
    failing.clear()
    calls.items.clear()

    second = parallel_map(work, range(10), workers=2, checkpoint=path)
    assert second.ok
    assert sorted(calls.items) == [6, 7, 8, 9]
    stats = second.stats
    assert (stats.succeeded, stats.failed, stats.restored, stats.calls) == (10, 0, 6, 4)
    assert "6 from the checkpoint" in str(stats)


def _sized_liar(declared: int, actual: int) -> Any:
    class Liar:
        def __len__(self) -> int:
            return declared

        def __iter__(self) -> Iterator[int]:
            return iter(range(actual))

    return Liar()


@pytest.mark.parametrize("status", list(RunStatus))
def test_stats_on_every_status(status: RunStatus) -> None:
    release = threading.Event()
    token = StopToken()

    def work(x: int) -> int:
        if status is RunStatus.TIMED_OUT and x >= 2:
            release.wait(WAIT)
        if status is RunStatus.ABORTED:
            raise Boom(x)
        if status is RunStatus.CANCELLED and x == 3:
            token.stop()
        return x

    items: Any = range(40)
    options: dict[str, Any] = {}
    if status is RunStatus.TIMED_OUT:
        options["timeout"] = 0.2
    elif status is RunStatus.ABORTED:
        options["max_errors"] = 2
    elif status is RunStatus.CANCELLED:
        options.update(stop=token, batch_size=4)
    elif status is RunStatus.SIZE_MISMATCH:
        items = _sized_liar(40, 30)
    try:
        result = parallel_map(work, items, workers=2, **options)
    finally:
        release.set()

    assert result.status is status
    stats = result.stats
    assert stats.outcome == status.value
    assert stats.failed == len(result.failures())
    assert stats.succeeded == len(result.successes())
    assert str(stats).splitlines()[0].startswith(f"{work.__qualname__}: {status.value.replace('_', ' ')} in")


def test_a_streams_stats_reach_its_observers_and_the_log(
    register: Register, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    watcher = Watcher()
    register(watcher)

    def failing(x: int, calls: Calls) -> int:
        if x == 4 or (x == 6 and calls.add(x) == 1):
            raise Boom(x)  # 4 fails for good after 2 attempts; 6 once
        return x

    sync_calls, async_calls = Calls(), Calls()

    def work(x: int) -> int:
        return failing(x, sync_calls)

    async def awork(x: int) -> int:
        await asyncio.sleep(0)
        return failing(x, async_calls)

    async def drain() -> list[ItemResult[int]]:
        async with async_parallel_iter(awork, range(10), retry=Retry(attempts=2, backoff=0)) as results:
            return [item async for item in results]

    sync_results = list(parallel_iter(work, range(10), workers=2, retry=Retry(attempts=2, backoff=0)))
    async_results = asyncio.run(drain())

    assert len(sync_results) == len(async_results) == 10
    assert len(watcher.recorders) == 2
    for recorder, function in zip(watcher.recorders, (work, awork), strict=True):
        summary = recorder.summary
        stats = summary.stats
        assert stats is not None
        assert stats.function == function.__qualname__
        assert stats.outcome == summary.outcome == "completed"
        assert (stats.succeeded, stats.failed, stats.retries) == (9, 1, 2)
        assert (summary.succeeded, summary.failed, summary.retries) == (9, 1, 2)
        assert stats.calls == 12
        assert stats.failures_by_type == (("Boom", 1),)
    summaries = records(caplog, logging.INFO, "completed in")
    assert [record.pyarallel["stats"] for record in summaries] == [  # type: ignore[attr-defined]
        recorder.summary.stats for recorder in watcher.recorders
    ]


# -- a property over mixed items ---------------------------------------------------------

KINDS = ("ok", "fail", "retry1", "retry2")
ATTEMPTS = 3


@settings(max_examples=25, deadline=None)
@given(
    items=st.lists(st.tuples(st.sampled_from(KINDS), st.booleans()), max_size=30),
    sequential=st.booleans(),
)
def test_stats_and_bar_agree_with_what_ran(items: list[tuple[str, bool]], sequential: bool) -> None:
    calls = Calls()

    def work(index: int) -> int:
        kind, slow = items[index]
        attempt = calls.add(index)
        if slow:
            time.sleep(0.003)  # alone in its task on threads; the fast ones are grouped
        if kind == "fail" or (kind.startswith("retry") and attempt <= int(kind[-1])):
            calls.failed()
            raise Boom(index)
        return index

    bars = Bars()
    result = parallel_map(
        work,
        range(len(items)),
        sequential=sequential,
        workers=None if sequential else 3,
        retry=Retry(attempts=ATTEMPTS, backoff=0),
        progress=bars,
    )

    n = len(items)
    kinds = Counter(kind for kind, _ in items)
    stats = result.stats
    expected_retries = kinds["retry1"] + 2 * kinds["retry2"] + (ATTEMPTS - 1) * kinds["fail"]
    assert stats.outcome == "completed"
    assert stats.succeeded + stats.failed == n
    assert stats.failed == len(result.failures()) == kinds["fail"]
    assert stats.retries == calls.raised - kinds["fail"] == expected_retries
    assert stats.calls == calls.count == stats.succeeded + stats.failed + stats.retries
    assert stats.failures_by_type == ((("Boom", kinds["fail"]),) if kinds["fail"] else ())
    assert stats.workers_lost == 0
    bar = bars.only
    assert bar.n == n
    assert bar.closes == 1
