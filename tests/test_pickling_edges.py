"""Pickling and copying of what pyarallel hands its users (issue 9, defects 1 and 2).

- ``@parallel`` / ``@async_parallel`` functions pickle like the functions they wrap: a
  module-level one by reference (it unpickles as the very same object), a bound one
  (instance method, ``@classmethod``, ``@staticmethod`` over or under the decorator) as
  the attribute of the object it was looked up on. So they travel to a standard
  ``ProcessPoolExecutor`` (``submit``, and ``.map`` / ``.starmap`` / ``.stream`` with
  ``executor=pool``) and to the "process" executor, including from a script's
  ``__main__`` (run as a real script in a subprocess).
- ``ItemResult`` and ``ParallelResult`` pickle and copy like values, and cross process
  boundaries (a multiprocessing queue, a ``ProcessPoolExecutor`` argument or result).

The module-level decorated functions live in ``edge_functions``, a module a spawned
worker can import by name.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import pyarallel
from edge_functions import (
    Svc,
    add,
    adouble,
    describe_item_result,
    double,
    failed_item_result_from_parallel_iter,
    identity,
    item_result_from_parallel_iter,
)
from pyarallel import (
    AsyncParallelFunction,
    ItemResult,
    ParallelFunction,
    ParallelResult,
    RunStatus,
    parallel_iter,
    parallel_map,
)

PROTOCOLS = list(range(2, pickle.HIGHEST_PROTOCOL + 1))


def _spawn_pool(workers: int) -> ProcessPoolExecutor:
    # spawn: the test process runs threads, and forking it could deadlock a worker.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """One spawn-context pool for the module; its workers are started once, up front."""
    with _spawn_pool(2) as executor:
        executor.submit(identity, 0).result(timeout=60)
        yield executor


# -- @parallel functions pickle and copy ----------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "decorated", [double, add, adouble, Svc.st_over], ids=["double", "add", "adouble", "st_over"]
)
def test_module_level_decorated_function_pickles_by_reference(decorated: object, protocol: int) -> None:
    data = pickle.dumps(decorated, protocol=protocol)
    assert pickle.loads(data) is decorated
    assert b"edge_functions" in data  # a reference to its module, not the function's code


def _svc() -> Svc:
    return Svc(3)


BOUND: list[tuple[str, Callable[[], Any], Any]] = [
    ("instance_method", lambda: _svc().scale, 15),
    ("classmethod_on_class", lambda: Svc.cm, ("Svc", 5)),
    ("classmethod_on_instance", lambda: _svc().cm, ("Svc", 5)),
    ("staticmethod_over_parallel_on_instance", lambda: _svc().st_over, 105),
    ("staticmethod_under_parallel_on_class", lambda: Svc.st_under, 205),
    ("staticmethod_under_parallel_on_instance", lambda: _svc().st_under, 205),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("name", "get", "expected"), BOUND, ids=[case[0] for case in BOUND])
def test_bound_decorated_function_round_trips_and_still_works(
    name: str, get: Callable[[], Any], expected: Any, protocol: int
) -> None:
    restored = pickle.loads(pickle.dumps(get(), protocol=protocol))
    assert isinstance(restored, ParallelFunction)
    assert restored(5) == expected
    result = restored.map([5, 5])
    assert result.ok
    assert list(result) == [expected, expected]


def test_bound_instance_method_keeps_its_instance_through_pickle() -> None:
    restored = pickle.loads(pickle.dumps(Svc(7).scale))
    assert restored(2) == 14
    assert list(restored.map([1, 2, 3])) == [7, 14, 21]


def test_async_decorated_functions_round_trip_and_still_work() -> None:
    import asyncio

    restored_function = pickle.loads(pickle.dumps(adouble))
    restored_method = pickle.loads(pickle.dumps(Svc(4).ascale))
    assert isinstance(restored_method, AsyncParallelFunction)

    async def main() -> tuple[int, int, list[int], list[int]]:
        mapped = await restored_function.map([1, 2])
        method_mapped = await restored_method.map([1, 2])
        assert mapped.ok
        assert method_mapped.ok
        return await restored_function(5), await restored_method(5), list(mapped), list(method_mapped)

    assert asyncio.run(main()) == (10, 20, [2, 4], [4, 8])


def test_module_level_decorated_functions_copy_as_themselves() -> None:
    # Like a function: copying one gives the same object.
    for decorated in (double, add, adouble):
        assert copy.copy(decorated) is decorated
        assert copy.deepcopy(decorated) is decorated


def test_bound_decorated_functions_copy_and_deepcopy_and_still_work() -> None:
    svc = Svc(3)
    for copier in (copy.copy, copy.deepcopy):
        method = copier(svc.scale)
        assert isinstance(method, ParallelFunction)
        assert method(5) == 15
        assert list(method.map([1, 2])) == [3, 6]
        assert copier(Svc.cm)(1) == ("Svc", 1)
        assert copier(Svc.st_under)(1) == 201


# -- ... so they run on a standard ProcessPoolExecutor and the "process" executor ------------------


def test_process_pool_submit_of_a_decorated_function(pool: ProcessPoolExecutor) -> None:
    assert pool.submit(double, 4).result(timeout=60) == 8
    assert pool.submit(add, 4, 5).result(timeout=60) == 9
    assert pool.submit(Svc(3).scale, 4).result(timeout=60) == 12
    assert pool.submit(Svc.cm, 4).result(timeout=60) == ("Svc", 4)
    assert pool.submit(Svc.st_over, 4).result(timeout=60) == 104
    assert pool.submit(Svc.st_under, 4).result(timeout=60) == 204


def _streamed(results: Iterator[ItemResult[Any]]) -> list[Any]:
    ordered = sorted(results, key=lambda item: item.index)
    assert all(item.ok for item in ordered), ordered
    return [item.value for item in ordered]


EXECUTORS = ["ProcessPoolExecutor", "process"]


@pytest.mark.parametrize("executor_kind", EXECUTORS)
def test_decorated_map_starmap_and_stream_on_another_process(
    executor_kind: str, request: pytest.FixtureRequest
) -> None:
    executor: Any = request.getfixturevalue("pool") if executor_kind != "process" else "process"
    mapped = double.map(range(5), executor=executor)
    assert mapped.ok, mapped.failures()
    assert list(mapped) == [0, 2, 4, 6, 8]
    starmapped = add.starmap([(1, 2), (3, 4), (5, 6)], executor=executor)
    assert starmapped.ok, starmapped.failures()
    assert list(starmapped) == [3, 7, 11]
    assert _streamed(double.stream(range(5), executor=executor)) == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("executor_kind", EXECUTORS)
def test_bound_decorated_methods_map_on_another_process(
    executor_kind: str, request: pytest.FixtureRequest
) -> None:
    executor: Any = request.getfixturevalue("pool") if executor_kind != "process" else "process"
    svc = Svc(3)
    cases: list[tuple[Any, list[Any]]] = [
        (svc.scale, [0, 3, 6]),
        (Svc.cm, [("Svc", 0), ("Svc", 1), ("Svc", 2)]),
        (svc.cm, [("Svc", 0), ("Svc", 1), ("Svc", 2)]),
        (Svc.st_over, [100, 101, 102]),
        (Svc.st_under, [200, 201, 202]),
        (svc.st_under, [200, 201, 202]),
    ]
    for method, expected in cases:
        result = method.map(range(3), executor=executor)
        assert result.ok, (method, result.failures())
        assert list(result) == expected
    assert _streamed(svc.scale.stream(range(3), executor=executor)) == [0, 3, 6]


MAIN_SCRIPT = textwrap.dedent(
    """
    import json
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from pyarallel import parallel


    @parallel
    def triple(x):
        return 3 * x


    @parallel
    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)


    def attempt(report, name, thunk):
        try:
            report[name] = thunk()
        except BaseException as error:
            report[name] = f"error: {error!r}"


    def values(result):
        return list(result) if result.ok else f"failed: {result.failures()!r}"


    if __name__ == "__main__":
        report = {}
        for method in ("fork", "spawn"):
            context = multiprocessing.get_context(method)
            with ProcessPoolExecutor(2, mp_context=context) as pool:
                attempt(report, f"{method} submit", lambda: pool.submit(triple, 2).result(timeout=60))
                attempt(report, f"{method} submit fact", lambda: pool.submit(fact, 5).result(timeout=60))
                attempt(report, f"{method} map", lambda: values(triple.map(range(4), executor=pool)))
                attempt(report, f"{method} map fact", lambda: values(fact.map([1, 4, 5], executor=pool)))
        attempt(report, "process map", lambda: values(triple.map(range(4), executor="process")))
        attempt(report, "process map fact", lambda: values(fact.map([1, 4, 5], executor="process")))
        print("REPORT " + json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def main_script_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run ``MAIN_SCRIPT`` once as a real script (its functions live in ``__main__``) and
    return what it reported, check by check."""
    directory = tmp_path_factory.mktemp("main-script")
    script = directory / "fan_out_script.py"
    script.write_text(MAIN_SCRIPT)
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=directory, check=False
    )
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.startswith("REPORT ")]
    assert len(lines) == 1, completed.stdout + completed.stderr
    report: dict[str, Any] = json.loads(lines[0].removeprefix("REPORT "))
    return report


@pytest.mark.parametrize("way", ["fork", "spawn", "process"])
def test_decorated_functions_of_a_scripts_main_run_on_other_processes(
    way: str, main_script_report: dict[str, Any]
) -> None:
    # fork/spawn: a ProcessPoolExecutor of that context; process: executor="process" (loky).
    expected: dict[str, Any] = {
        f"{way} map": [0, 3, 6, 9],
        f"{way} map fact": [1, 24, 120],  # fact calls itself
    }
    if way != "process":
        expected[f"{way} submit"] = 6
        expected[f"{way} submit fact"] = 120
    got = {name: value for name, value in main_script_report.items() if name.split()[0] == way}
    assert got == expected


# -- ItemResult and ParallelResult pickle and copy -------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("value", [None, 0, "text", [1, [2, 3]], {"k": (1, 2)}])
def test_successful_item_result_pickles_equal(value: Any, protocol: int) -> None:
    result = ItemResult(3, value=value)
    restored = pickle.loads(pickle.dumps(result, protocol=protocol))
    assert restored == result
    assert restored.ok
    assert restored.index == 3
    assert restored.value == value
    assert restored.error is None


def _check_same_failure(restored: ItemResult[Any], original: ItemResult[Any]) -> None:
    assert isinstance(restored, ItemResult)
    assert not restored.ok
    assert restored.index == original.index
    assert restored.value is None
    assert type(restored.error) is type(original.error)
    assert str(restored.error) == str(original.error)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_failed_item_result_pickles_with_its_error(protocol: int) -> None:
    result: ItemResult[Any] = ItemResult.failure(2, ValueError("bad item"))
    _check_same_failure(pickle.loads(pickle.dumps(result, protocol=protocol)), result)


def test_item_result_of_a_base_exception_pickles() -> None:
    result: ItemResult[Any] = ItemResult(0, error=SystemExit(4))
    restored = pickle.loads(pickle.dumps(result))
    _check_same_failure(restored, result)
    assert isinstance(restored.error, SystemExit)
    assert restored.error.code == 4


def test_item_results_copy_and_deepcopy() -> None:
    success = ItemResult(1, value=[1, 2])
    none_success = ItemResult(0, value=None)
    failure: ItemResult[Any] = ItemResult.failure(5, KeyError("missing"))
    for copier in (copy.copy, copy.deepcopy):
        assert copier(success) == success
        assert copier(none_success) == none_success
        assert copier(none_success).ok
        _check_same_failure(copier(failure), failure)
    deep = copy.deepcopy(success)
    assert deep.value == [1, 2]
    assert deep.value is not success.value
    # a copy is as immutable as the original
    with pytest.raises(AttributeError):
        copy.copy(success).index = 7  # type: ignore[misc]


def _from_parallel_iter() -> tuple[ItemResult[Any], ItemResult[Any]]:
    results = sorted(
        parallel_iter(lambda x: 1 // x, [1, 0], workers=2),  # item 1 fails: ZeroDivisionError
        key=lambda item: item.index,
    )
    return results[0], results[1]


def test_item_results_from_parallel_iter_go_through_a_multiprocessing_queue() -> None:
    success, failure = _from_parallel_iter()
    queue = multiprocessing.get_context("spawn").SimpleQueue()
    try:
        queue.put(success)
        assert queue.get() == success
        queue.put(failure)
        _check_same_failure(queue.get(), failure)
    finally:
        queue.close()


def test_item_results_cross_a_process_pool_both_ways() -> None:
    # A pool of its own: one that failed to unpickle a task or a result would be broken
    # for good, and the shared one must not be.
    success, failure = _from_parallel_iter()
    with _spawn_pool(1) as own_pool:
        made_there = own_pool.submit(item_result_from_parallel_iter, 21).result(timeout=60)
        assert made_there == ItemResult(0, value=42)
        failed_there = own_pool.submit(failed_item_result_from_parallel_iter, "remote").result(timeout=60)
        assert not failed_there.ok
        assert isinstance(failed_there.error, ValueError)
        assert str(failed_there.error) == "remote"
        assert own_pool.submit(describe_item_result, success).result(timeout=60) == (0, True, 1, None)
        assert own_pool.submit(describe_item_result, failure).result(timeout=60) == (
            1,
            False,
            None,
            "ZeroDivisionError: integer division or modulo by zero",
        )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_parallel_result_pickles_with_values_failures_and_status(protocol: int) -> None:
    ok = parallel_map(lambda x: x * 2, range(4))
    restored_ok = pickle.loads(pickle.dumps(ok, protocol=protocol))
    assert restored_ok.ok
    assert restored_ok.status is RunStatus.COMPLETED
    assert restored_ok == [0, 2, 4, 6]

    mixed = parallel_map(lambda x: 1 // x, [1, 0, 2])
    restored = pickle.loads(pickle.dumps(mixed, protocol=protocol))
    assert not restored.ok
    assert restored.status is RunStatus.COMPLETED
    assert restored.successes() == [(0, 1), (2, 0)]
    [(index, error)] = restored.failures()
    assert index == 1
    assert isinstance(error, ZeroDivisionError)

    timed_out = parallel_map(abs, range(3), timeout=0)
    restored_timed_out = pickle.loads(pickle.dumps(timed_out, protocol=protocol))
    assert restored_timed_out.status is RunStatus.TIMED_OUT
    assert len(restored_timed_out) == 3
    assert [index for index, _ in restored_timed_out.failures()] == [0, 1, 2]


class _Liar:
    """Sized input whose ``__len__`` says 5 but that gives 3 items."""

    def __len__(self) -> int:
        return 5

    def __iter__(self) -> Iterator[int]:
        return iter(range(3))


def test_size_mismatch_parallel_result_pickles_with_what_len_said() -> None:
    result = parallel_map(abs, _Liar())
    restored = pickle.loads(pickle.dumps(result))
    assert restored.status == "size_mismatch"
    assert len(restored) == 3
    assert restored.successes() == [(0, 0), (1, 1), (2, 2)]
    with pytest.raises(ExceptionGroup) as raised:
        restored.values()
    [incomplete] = raised.value.exceptions
    assert isinstance(incomplete, pyarallel.IncompleteRunError)
    assert (incomplete.read, incomplete.finished, incomplete.expected) == (3, 3, 5)  # type: ignore[attr-defined]


def test_parallel_result_built_from_item_results_pickles() -> None:
    built = ParallelResult([ItemResult(1, value=None), ItemResult(0, value="a")])
    restored = pickle.loads(pickle.dumps(built))
    assert restored == ["a", None]
    assert copy.deepcopy(built) == ["a", None]
