"""Failures that come back from other processes, on the "process" executor (loky,
cloudpickle) and on a caller's ``concurrent.futures.ProcessPoolExecutor`` (pickle):

- an exception keeps its own ``__cause__``/``__context__`` chain and
  ``__suppress_context__``, and carries its traceback in the worker as a note (and as
  ``remote_traceback``);
- a chained exception that cannot make the trip is replaced in the chain by a
  ``RemoteTraceback`` standing for it, never costing the exception itself;
- a ``SerializationError`` says whether it was the function (and names it) or the item's
  arguments that could not be pickled or unpickled.

The work functions are module-level, so that a standard process pool can import them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from pyarallel import SerializationError, parallel_map

WORKERS = 2


@pytest.fixture(scope="module")
def process_pool() -> Iterator[ProcessPoolExecutor]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        yield pool


@pytest.fixture(params=["process", "ProcessPoolExecutor"])
def executor(request: pytest.FixtureRequest) -> object:
    """Both ways a failure comes back from another process: loky with cloudpickle, and a
    caller's standard process pool with pickle."""
    if request.param == "process":
        return "process"
    return request.getfixturevalue("process_pool")


def _failure(fn: object, executor: object, items: object = (0,)) -> BaseException:
    """The exception the first item failed with (every item is expected to fail)."""
    result = parallel_map(fn, items, executor=executor, workers=WORKERS)  # type: ignore[call-overload]
    failures = result.failures()
    assert failures, "expected the items to fail"
    assert not result.successes()
    return failures[0][1]


def _remote_note(error: BaseException) -> str:
    """The note holding ``error``'s traceback in a worker process (the last one added)."""
    notes = getattr(error, "__notes__", [])
    assert notes, f"{error!r} carries no note"
    note = notes[-1]
    assert isinstance(note, str)
    return note


def _printed(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


# -- work functions --------------------------------------------------------------------------------


class LockedError(Exception):
    """Cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TwoArgumentError(Exception):
    """Pickles, but cannot be unpickled: ``__init__`` takes two arguments, ``args`` has one."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def _raise_from(x: int) -> None:
    try:
        raise KeyError(f"inner {x}")
    except KeyError as error:
        raise ValueError(f"outer {x}") from error


def _raise_two_deep(x: int) -> None:
    try:
        try:
            raise OSError(f"root {x}")
        except OSError as root:
            raise LookupError(f"middle {x}") from root
    except LookupError as middle:
        raise RuntimeError(f"top {x}") from middle


def _raise_while_handling(x: int) -> None:
    try:
        {}[x]
    except KeyError:
        raise ValueError(f"while handling {x}")  # the implicit context is the point


def _raise_from_none(x: int) -> None:
    try:
        {}[x]
    except KeyError:
        raise ValueError(f"context suppressed {x}") from None


def _raise_looping_chain(x: int) -> None:
    first, second = KeyError(f"first {x}"), KeyError(f"second {x}")
    first.__cause__ = second
    second.__cause__ = first  # a loop: each is the other's cause
    raise ValueError(f"looped {x}") from first


def _raise_long_chain(x: int) -> None:
    error: BaseException = ValueError("link 0")
    for depth in range(1, 60):
        link = ValueError(f"link {depth}")
        link.__cause__ = error
        error = link
    raise error


def _raise_from_unpicklable(x: int) -> None:
    try:
        try:
            raise KeyError(f"under the lock {x}")
        except KeyError as root:
            raise LockedError(f"locked cause {x}") from root
    except LockedError as cause:
        raise ValueError(f"main {x}") from cause


def _raise_from_unloadable(x: int) -> None:
    try:
        raise TwoArgumentError("unloadable cause", str(x))
    except TwoArgumentError as cause:
        raise ValueError(f"main {x}") from cause


def _raise_unpicklable(x: int) -> None:
    raise LockedError(f"unpicklable {x}")


def _refuse_to_load() -> None:
    raise RuntimeError("this object refuses to be unpickled")


class Unloadable:
    """Pickles (by ``__reduce__``), but unpickling it raises."""

    def __call__(self, x: int) -> int:
        return x

    def __reduce__(self) -> tuple[object, ...]:
        return (_refuse_to_load, ())


class LockHolder:
    """A callable holding a lock: it cannot be pickled at all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, x: int) -> int:
        return x


def _identity(x: object) -> object:
    return x


# -- the exception's own chain -----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_users_cause_arrives_as_the_cause(executor: object) -> None:
    error = _failure(_raise_from, executor)

    assert type(error) is ValueError
    assert str(error) == "outer 0"
    cause = error.__cause__
    assert type(cause) is KeyError
    assert cause.args == ("inner 0",)
    assert error.__suppress_context__ is True
    assert error.__context__ is cause  # raised in the except block: both, like locally


@pytest.mark.timeout(120)
def test_a_two_deep_chain_of_causes_survives(executor: object) -> None:
    error = _failure(_raise_two_deep, executor)

    assert (type(error), str(error)) == (RuntimeError, "top 0")
    middle = error.__cause__
    assert (type(middle), str(middle)) == (LookupError, "middle 0")
    assert middle is not None
    root = middle.__cause__
    assert (type(root), str(root)) == (OSError, "root 0")
    assert root is not None
    assert root.__cause__ is None
    printed = _printed(error)
    assert printed.index("OSError: root 0") < printed.index("LookupError: middle 0")
    assert printed.index("LookupError: middle 0") < printed.index("RuntimeError: top 0")
    assert printed.count("The above exception was the direct cause of the following exception") == 2


@pytest.mark.timeout(120)
def test_the_implicit_context_survives(executor: object) -> None:
    error = _failure(_raise_while_handling, executor)

    assert (type(error), str(error)) == (ValueError, "while handling 0")
    assert error.__cause__ is None
    assert error.__suppress_context__ is False
    context = error.__context__
    assert type(context) is KeyError
    assert context.args == (0,)
    assert "During handling of the above exception, another exception occurred" in _printed(error)


@pytest.mark.timeout(120)
def test_raise_from_none_stays_suppressed(executor: object) -> None:
    error = _failure(_raise_from_none, executor)

    assert (type(error), str(error)) == (ValueError, "context suppressed 0")
    assert error.__cause__ is None
    assert error.__suppress_context__ is True
    assert type(error.__context__) is KeyError  # kept, as locally, but not shown
    printed = _printed(error)
    assert "During handling" not in printed
    assert "KeyError" not in printed


@pytest.mark.timeout(120)
def test_a_chain_that_loops_arrives_looping(executor: object) -> None:
    error = _failure(_raise_looping_chain, executor)

    first = error.__cause__
    assert (type(first), first.args if first else None) == (KeyError, ("first 0",))
    assert first is not None
    second = first.__cause__
    assert (type(second), second.args if second else None) == (KeyError, ("second 0",))
    assert second is not None
    assert second.__cause__ is first
    assert "looped 0" in _printed(error)  # printing a looping chain terminates


@pytest.mark.timeout(120)
def test_a_very_long_chain_is_cut_after_32_links(executor: object) -> None:
    error = _failure(_raise_long_chain, executor)

    chain: list[BaseException] = []
    link: BaseException | None = error
    while link is not None:
        chain.append(link)
        link = link.__cause__
    # the guide promises 32 chained exceptions (see MAX_CHAINED); the rest are cut off
    assert [str(link) for link in chain] == [f"link {59 - depth}" for depth in range(1 + 32)]


# -- the traceback in the worker ----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_worker_traceback_is_a_note_and_an_attribute(executor: object) -> None:
    error = _failure(_raise_from, executor)

    note = _remote_note(error)
    first_line, _, frames = note.partition("\n")
    assert first_line.startswith("Traceback in worker process ")
    assert first_line.endswith(" (most recent call last):")
    pid = int(first_line.split()[4])
    assert pid != os.getpid()
    assert "in _raise_from" in frames
    assert 'raise ValueError(f"outer {x}") from error' in frames
    assert "_run_items" not in frames  # pyarallel's own frame is left out
    assert error.remote_traceback == note  # type: ignore[attr-defined]

    # the cause carries the traceback it had, from its own raise
    cause_note = _remote_note(error.__cause__)  # type: ignore[arg-type]
    assert 'raise KeyError(f"inner {x}")' in cause_note
    assert "outer" not in cause_note

    printed = _printed(error)
    assert note in printed
    assert printed.index("KeyError: 'inner 0'") < printed.index(cause_note)
    assert printed.index(cause_note) < printed.index("ValueError: outer 0") < printed.index(note)


# -- chained exceptions that cannot make the trip ------------------------------------------------


@pytest.mark.timeout(120)
def test_an_unpicklable_cause_does_not_lose_the_exception(executor: object) -> None:
    error = _failure(_raise_from_unpicklable, executor)

    assert (type(error), str(error)) == (ValueError, "main 0")
    assert "in _raise_from_unpicklable" in _remote_note(error)
    stand_in = error.__cause__
    assert type(stand_in).__name__ == "RemoteTraceback"
    message = str(stand_in)
    assert "LockedError('locked cause 0')" in message
    assert "could not be pickled" in message
    assert "lock" in message.lower()
    assert 'raise LockedError(f"locked cause {x}") from root' in _remote_note(stand_in)  # type: ignore[arg-type]
    # the chain goes on beyond the exception that could not travel
    assert stand_in is not None
    root = stand_in.__cause__
    assert type(root) is KeyError
    assert root.args == ("under the lock 0",)


@pytest.mark.timeout(120)
def test_a_cause_that_cannot_be_unpickled_does_not_lose_the_exception(executor: object) -> None:
    error = _failure(_raise_from_unloadable, executor)

    assert (type(error), str(error)) == (ValueError, "main 0")
    stand_in = error.__cause__
    assert type(stand_in).__name__ == "RemoteTraceback"
    message = str(stand_in)
    assert "TwoArgumentError('unloadable cause: 0')" in message
    assert "could not be unpickled" in message
    assert "in _raise_from_unloadable" in _remote_note(stand_in)  # type: ignore[arg-type]


@pytest.mark.timeout(120)
def test_an_exception_that_cannot_be_pickled_still_carries_its_traceback() -> None:
    error = _failure(_raise_unpicklable, "process")

    assert isinstance(error, SerializationError)
    assert "the exception it raised could not be sent back" in str(error)
    assert "LockedError('unpicklable 0')" in str(error)
    assert "in _raise_unpicklable" in _remote_note(error)


# -- SerializationError: the function or the item ------------------------------------------------


def _assert_all_blame_the_function(
    fn: object, executor: object, name: str, what: str, cause: type[BaseException]
) -> None:
    result = parallel_map(fn, range(4), executor=executor, workers=WORKERS)  # type: ignore[call-overload]

    assert not result.successes()
    failures = result.failures()
    assert [index for index, _ in failures] == [0, 1, 2, 3]
    for index, error in failures:
        assert isinstance(error, SerializationError), repr(error)
        assert error.index == index
        message = str(error)
        assert message.startswith(f"item {index}: the function {name} could not be {what}"), message
        assert "argument" not in message
        assert isinstance(error.__cause__, cause), repr(error.__cause__)


@pytest.mark.timeout(120)
def test_a_function_holding_a_lock_is_named_on_processes() -> None:
    lock = threading.Lock()

    def holding_a_lock(x: int) -> int:
        with lock:
            return x

    name = "test_a_function_holding_a_lock_is_named_on_processes.<locals>.holding_a_lock"
    _assert_all_blame_the_function(holding_a_lock, "process", name, "pickled", TypeError)


@pytest.mark.timeout(120)
def test_a_function_that_cannot_be_unpickled_in_the_worker_is_named() -> None:
    # the worker's error travels through loky, which puts its own traceback as the cause
    _assert_all_blame_the_function(Unloadable(), "process", "(a Unloadable object)", "unpickled", Exception)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["lambda", "local function", "object holding a lock"])
def test_a_function_pickle_cannot_send_is_named_on_a_process_pool(
    process_pool: ProcessPoolExecutor, kind: str
) -> None:
    def local(x: int) -> int:
        return x

    here = "test_a_function_pickle_cannot_send_is_named_on_a_process_pool.<locals>"
    functions = {
        "lambda": (lambda x: x, f"{here}.<lambda>"),
        "local function": (local, f"{here}.local"),
        "object holding a lock": (LockHolder(), "(a LockHolder object)"),
    }
    fn, name = functions[kind]
    _assert_all_blame_the_function(fn, process_pool, name, "pickled for ProcessPoolExecutor", Exception)
    # the caller's pool is unharmed
    assert process_pool.submit(_identity, 5).result(timeout=60) == 5


@pytest.mark.timeout(120)
def test_an_item_whose_argument_cannot_be_pickled_says_so() -> None:
    result = parallel_map(_identity, [0, threading.Lock(), 2], executor="process", workers=WORKERS)

    assert result.successes() == [(0, 0), (2, 2)]
    [(index, error)] = result.failures()
    assert index == 1
    assert isinstance(error, SerializationError)
    message = str(error)
    assert message.startswith("item 1: the item's arguments could not be pickled for a worker process"), (
        message
    )
    assert "function" not in message
    assert isinstance(error.__cause__, TypeError)


@pytest.mark.timeout(120)
def test_an_item_whose_argument_cannot_be_unpickled_says_so() -> None:
    result = parallel_map(_identity, [0, Unloadable(), 2], executor="process", workers=WORKERS)

    assert result.successes() == [(0, 0), (2, 2)]
    [(index, error)] = result.failures()
    assert index == 1
    assert isinstance(error, SerializationError)
    message = str(error)
    assert message.startswith("item 1: the item's arguments could not be unpickled in the worker process"), (
        message
    )
    assert "refuses to be unpickled" in message
