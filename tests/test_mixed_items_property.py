"""Property tests over a generated mix of items: fast, slow, raising, failing once,
crashing their worker, and items whose argument, result or exception cannot make the trip
to another process, on every kind of backend (the thread and process executors, a
``ThreadPoolExecutor`` and a ``ProcessPoolExecutor`` passed as ``executor=``).

Tiny items are grouped into multi-item tasks once they measured fast and slow ones travel
alone, so the mix matters: a culprit among many fast items lands inside a group, which
must then be split (unpicklable argument or result) or rerun (a worker crash) so that
only the culprit fails.

For every example: exactly one outcome per input index; each outcome matches its item's
kind (the right value, or the right exception type at exactly that index); no innocent
item fails; the run completes and ``ok`` is true iff nothing failed; and the wall time is
bounded. Each call runs under a watchdog thread, so a hang fails the example instead of
blocking the session.

Run ``-s`` to see how many examples ran per backend (``test_zz_examples_run_per_backend``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from pyarallel import (
    ItemResult,
    ParallelResult,
    Retry,
    RunStatus,
    SerializationError,
    WorkerCrashedError,
    parallel_iter,
    parallel_map,
)

T = TypeVar("T")

_LOCK_TYPE = type(threading.Lock())
_case_numbers = itertools.count()

# How many examples (explicit and generated, shrinking included) each backend ran.
EXAMPLES_RUN: Counter[str] = Counter()

# -- the items ------------------------------------------------------------------------------

FAST, SLOW, RAISING, FLAKY, CRASHING = "fast", "slow", "raising", "flaky", "crashing"
BAD_ARG, BAD_RESULT, BAD_EXC, UNRESTORABLE_EXC = "bad_arg", "bad_result", "bad_exc", "unrestorable_exc"
# Beyond those, the same contract for arguments and results that pickle but cannot be unpickled.
UNRESTORABLE_ARG, UNRESTORABLE_RESULT = "unrestorable_arg", "unrestorable_result"
UNSENDABLE = (BAD_ARG, BAD_RESULT, BAD_EXC, UNRESTORABLE_EXC, UNRESTORABLE_ARG, UNRESTORABLE_RESULT)

RETRY = Retry(attempts=2, backoff=0, jitter=False)
RATE = 200.0  # calls per second under a rate limit: keep item counts small then
SLEEPS = (0.005, 0.01, 0.02, 0.03)


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.lock = threading.Lock()


class TwoArgError(Exception):
    """An exception that pickles but cannot be unpickled: ``__init__`` takes two
    required arguments and ``args`` holds one."""

    def __init__(self, index: int, why: str) -> None:
        super().__init__(f"item {index}: {why}")
        self.index = index


@dataclass(frozen=True)
class Spec:
    """One item: what ``work`` does with it. ``marker`` is the file a flaky item creates
    on its first attempt (shared by threads and processes alike); ``home`` is the test
    process's id, where a crashing item must never run."""

    index: int
    kind: str
    sleep: float = 0.0
    marker: str | None = None
    home: int = 0


class LockedArg:
    """An item that cannot be pickled (it holds a lock); ``work`` still knows its index."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LockedArg({self.index})"


class Unrestorable:
    """Pickles, but cannot be unpickled: its ``__reduce__`` gives ``__init__`` one of the
    two arguments it requires. As an item, ``work`` knows its index; as a result, it is
    what an unrestorable-result item returns."""

    def __init__(self, index: int, why: str) -> None:
        self.index = index
        self.why = why

    def __reduce__(self) -> tuple[object, ...]:
        return (Unrestorable, (self.index,))

    def __repr__(self) -> str:
        return f"Unrestorable({self.index}, {self.why!r})"


def value_of(index: int) -> int:
    return 7 * index + 1


def work(item: Spec | LockedArg | Unrestorable) -> object:
    """The function every test maps; module-level so every backend can pickle it."""
    if isinstance(item, (LockedArg, Unrestorable)):
        return value_of(item.index)
    index, kind = item.index, item.kind
    if kind == FAST:
        return value_of(index)
    if kind == SLOW:
        time.sleep(item.sleep)
        return value_of(index)
    if kind == RAISING:
        raise ValueError(index)
    if kind == FLAKY:
        assert item.marker is not None
        try:
            os.close(os.open(item.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return value_of(index)  # not the first attempt
        raise ValueError(index)
    if kind == CRASHING:
        if os.getpid() == item.home:
            raise RuntimeError("a crashing item ran in the test process")
        os._exit(1)
    if kind == BAD_RESULT:
        return threading.Lock()
    if kind == BAD_EXC:
        raise LockedError(index)
    if kind == UNRESTORABLE_EXC:
        raise TwoArgError(index, "two arguments")
    if kind == UNRESTORABLE_RESULT:
        return Unrestorable(index, "a result")
    raise AssertionError(f"unknown kind {kind!r}")


# -- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One example: the items ``(kind, sleep)`` and the call's options."""

    items: tuple[tuple[str, float], ...]
    workers: int | None = 2  # None: the executor's own size
    retry: bool = False
    rate_limit: bool = False
    batch_size: int | None = None
    api: str = "map"  # "map": parallel_map; "iter": parallel_iter

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.items]

    def __repr__(self) -> str:  # long lists of fast items stay readable
        runs = [f"{kind}x{len(list(group))}" for kind, group in itertools.groupby(self.kinds)]
        return (
            f"Case([{', '.join(runs)}], workers={self.workers}, retry={self.retry}, "
            f"rate_limit={self.rate_limit}, batch_size={self.batch_size}, api={self.api!r}, "
            f"sleeps={[s for k, s in self.items if k == SLOW]})"
        )


def case(kinds: Sequence[str], sleep: float = 0.01, **options: Any) -> Case:
    """A pinned case: ``kinds`` with every slow item sleeping ``sleep``."""
    return Case(tuple((kind, sleep if kind == SLOW else 0.0) for kind in kinds), **options)


def with_culprit(count: int, position: int, kind: str, filler: str = FAST, **options: Any) -> Case:
    kinds = [filler] * count
    kinds[position] = kind
    return case(kinds, **options)


@st.composite
def cases(draw: st.DrawFn, kinds: Sequence[str], max_items: int, max_crashes: int = 0) -> Case:
    """Mostly fast items (so that they get grouped), some slow ones, a few of each other
    kind in ``kinds``; at most ``max_crashes`` crashing items, placed anywhere."""
    rate_limit = draw(st.booleans())
    weighted = [FAST] * 8 + [SLOW] * 3 + [kind for kind in kinds if kind not in (FAST, SLOW, CRASHING)]
    entries = draw(
        st.lists(
            st.tuples(st.sampled_from(weighted), st.sampled_from(SLEEPS)),
            max_size=15 if rate_limit else max_items,
        )
    )
    items = [(kind, sleep if kind == SLOW else 0.0) for kind, sleep in entries]
    if max_crashes and items:
        positions = draw(
            st.lists(st.integers(0, len(items) - 1), max_size=max_crashes, unique=True),
        )
        for position in positions:
            items[position] = (CRASHING, 0.0)
    return Case(
        tuple(items),
        workers=draw(st.one_of(st.integers(1, 4), st.none())),
        retry=draw(st.booleans()),
        rate_limit=rate_limit,
        batch_size=draw(st.one_of(st.none(), st.integers(1, 8))),
        api=draw(st.sampled_from(["map", "iter"])),
    )


# -- what each item must end as ---------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A backend under test and what it does with each kind of item."""

    name: str
    executor: object
    size: int  # how many items can really run at once, at most
    in_process: bool  # nothing is pickled
    pyarallel_pickles: bool  # pyarallel's own process executor (SerializationError)
    startup: float  # seconds allowed on top, for pool starts and a loaded machine
    rerun_kinds: frozenset[str] = field(default_factory=frozenset)  # items that make others rerun


@dataclass(frozen=True)
class Expected:
    """What an item may end as: a failure of one of ``errors`` (none: it must succeed),
    or also a success when ``may_succeed``."""

    errors: tuple[type[BaseException], ...] = ()
    may_succeed: bool = False

    def allows_success(self) -> bool:
        return not self.errors or self.may_succeed


SUCCEEDS = Expected()


def expected(kind: str, backend: Backend, case_: Case) -> Expected:
    if kind in (FAST, SLOW):
        return SUCCEEDS
    if kind == RAISING:
        return Expected((ValueError,))
    if kind == FLAKY:
        if case_.retry:
            return SUCCEEDS
        # A task lost with a crashed worker (or a group whose report could not be pickled)
        # runs again, its attempts uncounted: the item's first, failed call may have
        # happened in it and never been reported, and the rerun succeeds.
        return Expected((ValueError,), may_succeed=bool(backend.rerun_kinds.intersection(case_.kinds)))
    if kind == CRASHING:
        return Expected((WorkerCrashedError,))
    if backend.in_process:  # nothing is pickled: items behave as they would in a loop
        return {BAD_EXC: Expected((LockedError,)), UNRESTORABLE_EXC: Expected((TwoArgError,))}.get(
            kind, SUCCEEDS
        )
    if backend.pyarallel_pickles:
        return Expected((SerializationError,))
    # A caller's process pool: what its pickler refuses is named a SerializationError; an
    # exception that cannot be rebuilt here arrives as whatever unpickling raised.
    if kind == UNRESTORABLE_EXC:
        return Expected((SerializationError, TypeError, pickle.PicklingError))
    return Expected((SerializationError,))


def check_outcomes(outcomes: dict[int, ItemResult[Any]], case_: Case, backend: Backend) -> None:
    assert sorted(outcomes) == list(range(len(case_.items))), "one outcome per index"
    for index, (kind, _) in enumerate(case_.items):
        outcome = outcomes[index]
        assert outcome.index == index
        assert outcome.ok == (outcome.error is None)
        want = expected(kind, backend, case_)
        where = f"item {index} ({kind})"
        if outcome.ok:
            assert want.allows_success(), f"{where} succeeded with {outcome.value!r}, expected {want}"
            if kind == BAD_RESULT:
                assert type(outcome.value) is _LOCK_TYPE, f"{where}: {outcome.value!r}"
            elif kind == UNRESTORABLE_RESULT:
                assert isinstance(outcome.value, Unrestorable), f"{where}: {outcome.value!r}"
                assert outcome.value.index == index
            else:
                assert outcome.value == value_of(index), f"{where}: {outcome.value!r}"
            continue
        error = outcome.error
        assert want.errors, f"{where} failed: {error!r}"
        assert isinstance(error, want.errors), f"{where} failed with {error!r}, expected {want}"
        if isinstance(error, (WorkerCrashedError, SerializationError, TwoArgError)):
            assert error.index == index, f"{where}: {error!r}"
        elif isinstance(error, (ValueError, LockedError)):
            assert error.args == (index,), f"{where}: {error!r}"


def wall_time_bound(case_: Case, backend: Backend) -> float:
    attempts = 2 if case_.retry else 1
    kinds = case_.kinds
    workers = min(case_.workers or backend.size, backend.size)
    slow = sum(sleep for kind, sleep in case_.items if kind == SLOW)
    crashes = kinds.count(CRASHING) * attempts
    paced = len(kinds) * attempts / RATE if case_.rate_limit else 0.0
    return 5.0 + backend.startup + slow / workers + 2.0 * crashes + paced


def call_with_watchdog(call: Callable[[], T], limit: float) -> tuple[T, float]:
    """``call()`` in a daemon thread; fail if it has not returned after ``limit`` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as error:
            box["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=target, name="mixed-items-call", daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - started
    if thread.is_alive():
        pytest.fail(f"the call had not returned after {limit:.1f} s (hang)")
    if "error" in box:
        raise box["error"]
    return box["value"], elapsed


def run_case(case_: Case, backend: Backend, markers: Path) -> None:
    EXAMPLES_RUN[backend.name] += 1
    note(repr(case_))
    directory = markers / f"case-{next(_case_numbers)}"
    directory.mkdir()
    items: list[Spec | LockedArg | Unrestorable] = []
    for index, (kind, sleep) in enumerate(case_.items):
        if kind == BAD_ARG:
            items.append(LockedArg(index))
        elif kind == UNRESTORABLE_ARG:
            items.append(Unrestorable(index, "an argument"))
        else:
            items.append(Spec(index, kind, sleep, str(directory / str(index)), os.getpid()))
    options: dict[str, Any] = {
        "workers": case_.workers,
        "executor": backend.executor,
        "retry": RETRY if case_.retry else None,
        "rate_limit": RATE if case_.rate_limit else None,
        "batch_size": case_.batch_size,
    }
    bound = wall_time_bound(case_, backend)

    if case_.api == "map":
        result, elapsed = call_with_watchdog(lambda: parallel_map(work, items, **options), 3 * bound)
        assert isinstance(result, ParallelResult)
        assert result.status is RunStatus.COMPLETED
        assert len(result) == len(items)
        successes, failures = result.successes(), result.failures()
        indices = [i for i, _ in successes] + [i for i, _ in failures]
        assert sorted(indices) == list(range(len(items))), "one slot per index"
        assert result.ok == (not failures)
        outcomes = {i: ItemResult.success(i, v) for i, v in successes}
        outcomes.update((i, ItemResult.failure(i, e)) for i, e in failures)
    else:
        yielded, elapsed = call_with_watchdog(lambda: list(parallel_iter(work, items, **options)), 3 * bound)
        counts = Counter(outcome.index for outcome in yielded)
        assert all(count == 1 for count in counts.values()), f"indices yielded twice: {counts}"
        outcomes = {outcome.index: outcome for outcome in yielded}
    check_outcomes(outcomes, case_, backend)
    assert elapsed <= bound, f"took {elapsed:.2f} s, bound {bound:.2f} s"


# -- the backends ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mixed-items")


@pytest.fixture(scope="module")
def user_thread_pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="user-pool") as pool:
        yield pool


@pytest.fixture(scope="module")
def user_process_pool() -> Iterator[ProcessPoolExecutor]:
    # spawn: the test process runs threads, and forking it could deadlock a worker.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(value_of, 0).result(timeout=60)  # start its workers outside the timings
        yield pool


@pytest.fixture(scope="module")
def warm_process_pools() -> Iterator[None]:
    """Keep an idle pool of every size the process examples use (1 to 4 workers on two
    cores) between examples, not just the usual two: the examples' point is each item's
    outcome, not a cold start, and a pool started for nearly every example made up most
    of the test's time. The first example of each size, and every example after a worker
    crash (its pool is replaced), still start a pool; ``test_process_trust`` tests the
    idle limits."""
    from pyarallel._builtin import _process_pools

    patch = pytest.MonkeyPatch()
    patch.setattr(_process_pools, "MAX_IDLE_POOLS", 4)
    patch.setattr(_process_pools, "MAX_IDLE_WORKERS", 1 + 2 + 3 + 4)
    try:
        yield
    finally:
        patch.undo()
        # The next run to give its pool back evicts the oldest idle pools down to the
        # usual limits, as after any run: no more idle workers are left behind than before.
        parallel_map(abs, [-1], executor="process", workers=1)


THREAD = Backend("thread", "thread", size=4, in_process=True, pyarallel_pickles=False, startup=0.0)
PROCESS = Backend(
    "process",
    "process",
    size=4,
    in_process=False,
    pyarallel_pickles=True,
    startup=5.0,
    # A crash reruns its task's other items; so does a result that pickles in the worker
    # but cannot be unpickled here: the group's report is refused as a whole, and its items
    # run again in halves until the culprit runs alone.
    rerun_kinds=frozenset({CRASHING, UNRESTORABLE_RESULT}),
)


def user_thread_backend(pool: ThreadPoolExecutor) -> Backend:
    return Backend("ThreadPoolExecutor", pool, size=4, in_process=True, pyarallel_pickles=False, startup=0.0)


def user_process_backend(pool: ProcessPoolExecutor) -> Backend:
    return Backend(
        "ProcessPoolExecutor",
        pool,
        size=2,
        in_process=False,
        pyarallel_pickles=False,
        startup=3.0,
        rerun_kinds=frozenset({BAD_RESULT, BAD_EXC}),  # a group's report cannot be pickled
    )


SETTINGS = settings(
    deadline=None,
    database=None,  # nothing written to the repository; failures are pinned with @example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
THREAD_KINDS = (FAST, SLOW, RAISING, FLAKY, *UNSENDABLE)
PROCESS_KINDS = THREAD_KINDS  # plus crashing items, placed by ``cases``
# A stdlib ProcessPoolExecutor breaks for good when a worker dies, when a result cannot
# be unpickled in the parent (its manager thread treats that as a broken pool) and when a
# task cannot be unpickled in a worker (the worker dies): none of those kinds go to it.
USER_PROCESS_KINDS = (FAST, SLOW, RAISING, FLAKY, BAD_ARG, BAD_RESULT, BAD_EXC)


def pinned_examples(culprits: Sequence[str]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The shapes that matter, for every backend: no items; all slow; many fast items
    with one culprit of each kind in ``culprits`` in the middle (so it lands in a group);
    fast and slow items alternating, with a culprit among them."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        shapes = [
            case([]),
            case([], api="iter"),
            case([SLOW] * 12, sleep=0.02, workers=3),
            case([SLOW] * 12, sleep=0.02, workers=3, api="iter", retry=True),
            case([FAST] * 200, workers=2),
            case([FAST, SLOW] * 30, sleep=0.005, workers=2),
            case([FAST] * 50 + [SLOW] * 5 + [FAST] * 50 + [RAISING] + [FAST] * 50, sleep=0.03, api="iter"),
            # Slow items right after many fast ones land in a group that overruns its
            # budget (it is reclaimed on threads, reports early elsewhere).
            case([FAST] * 60 + [SLOW] * 20 + [FAST] * 60, sleep=0.03, workers=None),
        ]
        for culprit in culprits:
            slow_around = [FAST] * 60 + [SLOW] * 6 + [culprit] + [SLOW] * 6 + [FAST] * 60
            shapes.append(case(slow_around, sleep=0.03, workers=2, api="iter"))
            shapes.append(with_culprit(200, 100, culprit, workers=2))
            shapes.append(with_culprit(200, 100, culprit, workers=4, api="iter", batch_size=8))
            shapes.append(with_culprit(61, 40, culprit, filler=FAST, workers=1, retry=True))
        shapes.append(case(([FAST] * 9 + [SLOW]) * 6 + [FLAKY], sleep=0.005, retry=True, workers=3))
        for shape in reversed(shapes):
            test = example(case_=shape)(test)
        return test

    return decorate


# -- the tests ------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=40)
@pinned_examples([RAISING, BAD_ARG, BAD_RESULT, BAD_EXC, UNRESTORABLE_EXC])
@given(case_=cases(THREAD_KINDS, max_items=40))
def test_thread_executor_mixed_items(case_: Case, markers: Path) -> None:
    run_case(case_, THREAD, markers)


@settings(SETTINGS, max_examples=30)
@pinned_examples([RAISING, BAD_RESULT, UNRESTORABLE_EXC])
@given(case_=cases(THREAD_KINDS, max_items=40))
def test_user_thread_pool_mixed_items(
    case_: Case, markers: Path, user_thread_pool: ThreadPoolExecutor
) -> None:
    run_case(case_, user_thread_backend(user_thread_pool), markers)


@settings(SETTINGS, max_examples=18)
@pinned_examples([RAISING, *UNSENDABLE])
@example(case_=with_culprit(100, 50, CRASHING, workers=2))
@example(case_=with_culprit(100, 50, CRASHING, workers=2, api="iter"))
@example(case_=case([FAST] * 30 + [CRASHING] + [SLOW] * 4 + [FAST] * 30 + [CRASHING], workers=2))
@example(case_=case([FLAKY, CRASHING, FLAKY] + [FAST] * 40, workers=1))
# Found in CI: a worker finished item 2, took item 5 and died on it while the pool was
# already breaking because of item 0; item 2 was blamed for the death of its worker.
@example(
    case_=case(
        [CRASHING, SLOW, FAST, BAD_ARG, UNRESTORABLE_RESULT, CRASHING],
        0.03,
        workers=3,
        batch_size=7,
        api="iter",
    )
)
@given(case_=cases(PROCESS_KINDS, max_items=40, max_crashes=2))
def test_process_executor_mixed_items(case_: Case, markers: Path, warm_process_pools: None) -> None:
    run_case(case_, PROCESS, markers)


@settings(SETTINGS, max_examples=15)
@pinned_examples([RAISING, BAD_ARG, BAD_RESULT, BAD_EXC])
@given(case_=cases(USER_PROCESS_KINDS, max_items=40))
def test_user_process_pool_mixed_items(
    case_: Case, markers: Path, user_process_pool: ProcessPoolExecutor
) -> None:
    run_case(case_, user_process_backend(user_process_pool), markers)


def test_zz_examples_run_per_backend() -> None:
    """Report how many examples each backend ran (``-s`` shows it). Runs last."""
    if not EXAMPLES_RUN:
        pytest.skip("no property test of this module ran")
    report = ", ".join(f"{name}: {count}" for name, count in sorted(EXAMPLES_RUN.items()))
    print(f"\nmixed-items examples run per backend: {report}")
    assert all(count > 0 for count in EXAMPLES_RUN.values())
