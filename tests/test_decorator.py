"""``@parallel``: the decorated function stays itself, and ``.map``/``.starmap``/``.stream``
take every option as a per-call override that really takes effect."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyarallel import (
    ItemResult,
    ItemTimeoutError,
    ParallelFunction,
    ParallelResult,
    RateLimit,
    Retry,
    parallel,
)

REPO = Path(__file__).resolve().parent.parent
METHODS = ["map", "starmap", "stream"]


@parallel
def bare_double(x: int) -> int:
    """Return twice ``x``."""
    return x * 2


def _plain_add(x: int, y: int = 1, *, scale: int = 1) -> int:
    """Add ``y`` to ``x``, then scale."""
    return (x + y) * scale


configured_add = parallel(workers=2, executor="thread")(_plain_add)


# A function whose defaults make every override observable: one worker, threads, no rate
# limit, no retry, no batch.
@parallel(workers=1, executor="thread")
def probe(item: Any) -> Any:
    """Run ``item`` if it is a callable, else return it."""
    return item() if callable(item) else item


@parallel(executor="process", workers=2)
def square_in_process(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def run(pf: ParallelFunction[..., Any], method: str, items: Any, **overrides: Any) -> list[ItemResult[Any]]:
    """Call ``pf.<method>`` on single-argument items; return the item results by index."""
    if method == "map":
        return _as_items(pf.map(items, **overrides))
    if method == "starmap":
        return _as_items(pf.starmap(((item,) for item in items), **overrides))
    return sorted(pf.stream(items, **overrides), key=lambda r: r.index)


def _as_items(result: ParallelResult[Any]) -> list[ItemResult[Any]]:
    items = [ItemResult.success(i, v) for i, v in result.successes()]
    items += [ItemResult.failure(i, e) for i, e in result.failures()]
    return sorted(items, key=lambda r: r.index)


# -- the function itself ----------------------------------------------------------------


def test_bare_and_configured_decorators_keep_metadata() -> None:
    assert isinstance(bare_double, ParallelFunction)
    assert bare_double.__name__ == "bare_double"
    assert bare_double.__qualname__ == "bare_double"
    assert bare_double.__doc__ == "Return twice ``x``."
    assert bare_double.__module__ == __name__
    assert inspect.signature(bare_double) == inspect.signature(bare_double.__wrapped__)
    assert str(inspect.signature(bare_double)) == "(x: 'int') -> 'int'"
    assert not isinstance(bare_double.__wrapped__, ParallelFunction)

    assert configured_add.__wrapped__ is _plain_add
    assert configured_add.__name__ == "_plain_add"
    assert configured_add.__doc__ == _plain_add.__doc__
    assert inspect.signature(configured_add) == inspect.signature(_plain_add)
    assert "scale" in inspect.signature(configured_add).parameters


def test_direct_calls_return_the_plain_value() -> None:
    assert bare_double(21) == 42
    assert type(bare_double(21)) is int
    assert configured_add(1, 2, scale=3) == 9
    assert configured_add(1) == 2
    with pytest.raises(TypeError):
        bare_double()  # type: ignore[call-arg]
    with pytest.raises(ZeroDivisionError):  # the original exception, not wrapped
        probe(lambda: 1 / 0)


def test_map_starmap_and_stream_basics() -> None:
    result = bare_double.map([1, 2, 3])
    assert isinstance(result, ParallelResult)
    assert result == [2, 4, 6]
    assert configured_add.starmap([(1, 2), (3, 4), (5,)]) == [3, 7, 6]
    streamed = list(bare_double.stream(iter([5, 6])))
    assert sorted((r.index, r.value) for r in streamed) == [(0, 10), (1, 12)]


def test_decorator_options_are_validated_when_applied() -> None:
    with pytest.raises(ValueError, match="workers"):
        parallel(workers=0)
    with pytest.raises(ValueError, match="executor"):
        parallel(executor="no-such-executor")
    with pytest.raises(TypeError, match="unknown option"):
        bare_double.map([1], wrkers=2)  # type: ignore[call-arg]


# -- per-call overrides -----------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", METHODS)
def test_workers_override_takes_effect(method: str) -> None:
    # three calls meeting at a barrier need three workers: the default (1) cannot pass it
    strict = threading.Barrier(3, timeout=0.3)
    default_run = run(probe, method, [strict.wait] * 3)
    assert not all(r.ok for r in default_run)
    assert any(isinstance(r.error, threading.BrokenBarrierError) for r in default_run)

    meeting = threading.Barrier(3, timeout=10)
    overridden = run(probe, method, [meeting.wait] * 3, workers=3)
    assert all(r.ok for r in overridden), overridden


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_executor_override_takes_effect(method: str) -> None:
    here = os.getpid()
    threads = run(probe, method, [os.getpid] * 2)
    assert {r.value for r in threads} == {here}
    processes = run(probe, method, [os.getpid] * 2, executor="process", workers=2)
    assert all(r.ok for r in processes), processes
    assert here not in {r.value for r in processes}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", METHODS)
def test_rate_limit_override_takes_effect(method: str) -> None:
    results = run(probe, method, [time.monotonic] * 4, workers=4, rate_limit=20)
    starts = sorted(r.value for r in results)
    assert starts[-1] - starts[0] >= 3 * 0.05 - 0.03
    results = run(probe, method, [time.monotonic] * 3, workers=3, rate_limit=RateLimit(600, "minute"))
    starts = sorted(r.value for r in results)
    assert starts[-1] - starts[0] >= 2 * 0.1 - 0.03


@pytest.mark.timeout(30)
def test_rate_limit_override_to_none_removes_the_default() -> None:
    @parallel(workers=3, rate_limit=RateLimit(1))
    def stamp(_: int) -> float:
        return time.monotonic()

    started = time.monotonic()
    assert len(stamp.map(range(3), rate_limit=None)) == 3
    assert list(stamp.stream(range(3), rate_limit=None))
    assert time.monotonic() - started < 1.0  # a 1/s default would take two seconds per run


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", ["map", "starmap"])
def test_timeout_override_takes_effect(method: str) -> None:
    release = threading.Event()
    try:
        started = time.monotonic()
        results = run(probe, method, [lambda: release.wait(10), lambda: "quick"], workers=2, timeout=0.2)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert isinstance(results[0].error, ItemTimeoutError)
    assert isinstance(results[0].error, TimeoutError)
    assert results[1].value == "quick"
    assert elapsed < 5


@pytest.mark.parametrize("method", ["map", "starmap"])
def test_on_progress_override_takes_effect(method: str) -> None:
    calls: list[tuple[int, int]] = []
    results = run(probe, method, [1, 2, 3], on_progress=lambda d, t: calls.append((d, t)))
    assert [r.value for r in results] == [1, 2, 3]
    assert calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("method", METHODS)
def test_batch_size_override_takes_effect(method: str) -> None:
    state = {"pulled": 0, "completed": 0, "max_ahead": 0}
    lock = threading.Lock()

    def source() -> Iterator[Callable[[], int]]:
        for value in range(20):
            with lock:
                state["pulled"] += 1
                state["max_ahead"] = max(state["max_ahead"], state["pulled"] - state["completed"])
            yield lambda value=value: finish(value)

    def finish(value: int) -> int:
        time.sleep(0.002)
        with lock:
            state["completed"] += 1
        return value

    results = run(probe, method, source(), workers=4, batch_size=2)
    assert [r.value for r in results] == list(range(20))
    assert state["max_ahead"] <= 2

    if method != "stream":  # without batch_size, map reads an unsized input fully first
        state.update(pulled=0, completed=0, max_ahead=0)
        run(probe, method, source(), workers=4)
        assert state["max_ahead"] == 20


@pytest.mark.parametrize("method", METHODS)
def test_retry_override_takes_effect(method: str) -> None:
    def flaky_items() -> list[Callable[[], str]]:
        attempts: list[int] = []

        def flaky() -> str:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError(len(attempts))
            return "finally"

        return [flaky]

    without = run(probe, method, flaky_items())
    assert isinstance(without[0].error, ConnectionError)
    assert without[0].error.args == (1,)

    retried = run(probe, method, flaky_items(), retry=Retry(attempts=3, backoff=0))
    assert retried[0].value == "finally"

    too_few = run(probe, method, flaky_items(), retry=Retry(attempts=2, backoff=0))
    assert too_few[0].error is not None
    assert too_few[0].error.args == (2,)


def test_decorator_defaults_apply_and_can_be_overridden() -> None:
    progress: list[int] = []
    attempts: dict[int, int] = {}

    @parallel(workers=2, retry=Retry(attempts=2, backoff=0), on_progress=lambda d, t: progress.append(d))
    def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] == 1:
            raise OSError(x)
        return x

    assert flaky.map([1, 2]).values() == [1, 2]
    assert progress == [1, 2]
    attempts.clear()
    assert [i for i, _ in flaky.map([1, 2], retry=None).failures()] == [0, 1]

    # a stream applies neither the default on_progress nor a default timeout
    progress.clear()
    attempts.clear()
    assert sorted(r.value for r in flaky.stream([3, 4])) == [3, 4]
    assert progress == []


def test_stream_refuses_timeout_and_on_progress() -> None:
    with pytest.raises(TypeError, match="timeout"):
        probe.stream([1], timeout=1.0)
    with pytest.raises(TypeError, match="on_progress"):
        probe.stream([1], on_progress=lambda d, t: None)
    with pytest.raises(TypeError):
        probe.stream([1], timeout=None)

    @parallel(timeout=0.05)
    def slowish(x: int) -> int:
        time.sleep(0.2)
        return x

    # the decorator's default timeout applies to map but not to stream
    assert isinstance(slowish.map([1]).failures()[0][1], ItemTimeoutError)
    assert [r.value for r in slowish.stream([1])] == [1]


# -- methods ----------------------------------------------------------------------------


class Service:
    factor = 3

    def __init__(self, offset: int) -> None:
        self.offset = offset

    @parallel(workers=4)
    def process(self, item: int) -> int:
        """Add this service's offset."""
        return item + self.offset

    @staticmethod
    @parallel(workers=4)
    def compute(x: int) -> int:
        return x**2

    @parallel(workers=2)
    @classmethod
    def scale(cls, x: int) -> int:
        return cls.factor * x


class SubService(Service):
    factor = 5


def test_instance_method_binds_self() -> None:
    first, second = Service(10), Service(100)
    assert first.process(1) == 11
    assert first.process.map([1, 2, 3]) == [11, 12, 13]
    assert second.process.map([1, 2, 3]) == [101, 102, 103]
    assert second.process.starmap([(1,), (2,)]) == [101, 102]
    assert sorted(r.value for r in first.process.stream([5, 6])) == [15, 16]
    assert first.process.__name__ == "process"
    assert list(inspect.signature(first.process).parameters) == ["item"]
    # accessed on the class it is the plain (unbound) function
    assert Service.process(first, 2) == 12
    assert Service.process.starmap([(first, 1), (second, 1)]) == [11, 101]


@pytest.mark.timeout(60)
def test_instance_method_on_process_executor_uses_instance_state() -> None:
    service = Service(7)
    assert service.process.map([1, 2], executor="process", workers=2) == [8, 9]


def test_staticmethod_above_parallel() -> None:
    assert Service.compute(3) == 9
    assert Service.compute.map([1, 2, 3]) == [1, 4, 9]
    assert Service(0).compute.map([4]) == [16]
    assert sorted(r.value for r in Service.compute.stream([2, 3])) == [4, 9]


def test_parallel_above_classmethod_binds_cls() -> None:
    assert Service.scale(2) == 6
    assert SubService.scale(2) == 10
    assert Service.scale.map([1, 2]) == [3, 6]
    assert SubService.scale.map([1, 2]) == [5, 10]
    assert SubService(0).scale.map([1]) == [5]
    assert Service.scale.starmap([(4,)]) == [12]
    assert sorted(r.value for r in SubService.scale.stream([1, 2])) == [5, 10]


@pytest.mark.timeout(60)
def test_module_level_function_decorated_for_processes() -> None:
    here = os.getpid()
    assert square_in_process(3) == (9, here)  # a direct call runs here
    result = square_in_process.map([1, 2, 3, 4])
    assert [value for value, _ in result] == [1, 4, 9, 16]
    assert here not in {pid for _, pid in result}
    streamed = sorted(r.value for r in square_in_process.stream([5, 6]) if r.value is not None)
    assert [value for value, _ in streamed] == [25, 36]
    assert square_in_process.map([2], executor="thread")[0] == (4, here)


# -- static typing ----------------------------------------------------------------------

BAD_CALL = """\
from pyarallel import parallel


@parallel
def double(x: int) -> int:
    return x * 2


ok: int = double(2)
bad: int = double("a")
"""


BAD_METHOD_CALL = """\
from pyarallel import parallel


class Service:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    @parallel(workers=4)
    def process(self, item: int) -> int:
        return item + self.offset


ok: int = Service(1).process(2)
bad: int = Service(1).process("a")
"""


@pytest.fixture(scope="module")
def mypy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], subprocess.CompletedProcess[str]]:
    """Run ``mypy --strict`` on a file (from the repository root, with a cache shared by this
    module's tests)."""
    pytest.importorskip("mypy")
    cache = tmp_path_factory.mktemp("mypy-cache")

    def run_mypy(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )

    return run_mypy


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if ": error:" in line]


@pytest.mark.timeout(180)
def test_type_checker_sees_the_original_signature(
    tmp_path: Path, mypy: Callable[[Path], subprocess.CompletedProcess[str]]
) -> None:
    good = mypy(REPO / "tests" / "typing_decorator_check.py")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Success" in good.stdout

    bad_file = tmp_path / "bad_call.py"
    bad_file.write_text(BAD_CALL)
    bad = mypy(bad_file)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    errors = _errors(bad)
    assert len(errors) == 1, bad.stdout
    assert "bad_call.py:10:" in errors[0]
    assert "[arg-type]" in errors[0]
    assert '"int"' in errors[0]


@pytest.mark.timeout(180)
def test_type_checker_sees_a_bound_methods_signature(
    tmp_path: Path, mypy: Callable[[Path], subprocess.CompletedProcess[str]]
) -> None:
    bad_file = tmp_path / "bad_method_call.py"
    bad_file.write_text(BAD_METHOD_CALL)
    bad = mypy(bad_file)
    errors = _errors(bad)
    assert len(errors) == 1, bad.stdout
    assert "bad_method_call.py:14:" in errors[0]
    assert "[arg-type]" in errors[0]
