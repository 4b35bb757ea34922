"""Real pyarallel runs (threads, processes, the async API) with tenacity policies: retries
are per item, the final error is the last attempt's, successes are untouched, every
attempt draws a rate-limit token, and a waiting item holds no worker."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import tenacity
from pyarallel_tenacity import TenacityRetry, from_tenacity
from tenacity import (
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_none,
)

import pyarallel

pytestmark = pytest.mark.timeout(60)

# Scheduling latency on a loaded machine: how much a measured gap between two starts may
# fall short of the configured one, and how much later than planned a start may be.
SHORT = 0.03
LATE = 0.3

# how many times each item fails before it succeeds (items not listed never fail)
FAILS = {1: 1, 2: 2, 3: 3, 5: 10}
ITEMS = list(range(8))
# with stop_after_attempt(3): the attempts each item makes, and the items that fail
ATTEMPTS = {item: min(FAILS.get(item, 0) + 1, 3) for item in ITEMS}
GIVE_UP = [3, 5]


class Flaky:
    """Fails item ``i`` ``fails[i]`` times with ``ConnectionError(i, attempt)``, then returns
    ``10 * i``; records every attempt's start and every exception raised (thread-safe)."""

    def __init__(self, fails: dict[int, int], error: type[Exception] = ConnectionError) -> None:
        self.fails = fails
        self.error = error
        self.starts: dict[int, list[float]] = defaultdict(list)
        self.raised: dict[int, list[BaseException]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, item: int) -> int:
        now = time.monotonic()
        with self._lock:
            self.starts[item].append(now)
            attempt = len(self.starts[item])
        if attempt > self.fails.get(item, 0):
            return 10 * item
        error = self.error(item, attempt)
        with self._lock:
            self.raised[item].append(error)
        raise error

    def attempts(self) -> dict[int, int]:
        return {item: len(starts) for item, starts in sorted(self.starts.items())}


def check_result(result: pyarallel.ParallelResult[Any], flaky: Flaky) -> None:
    assert result.status == pyarallel.RunStatus.COMPLETED
    assert flaky.attempts() == ATTEMPTS
    assert result.successes() == [(item, 10 * item) for item in ITEMS if item not in GIVE_UP]
    failures = dict(result.failures())
    assert sorted(failures) == GIVE_UP
    for item in GIVE_UP:
        assert failures[item] is flaky.raised[item][-1]  # the last attempt's own exception
        assert failures[item].args == (item, 3)


FORMS = {
    "Retrying": lambda: tenacity.Retrying(stop=stop_after_attempt(3), wait=wait_fixed(0.01)),
    "TenacityRetry": lambda: TenacityRetry(stop=stop_after_attempt(3), wait=wait_fixed(0.01)),
    "from_tenacity": lambda: from_tenacity(
        tenacity.Retrying(stop=stop_after_attempt(3), wait=wait_fixed(0.01))
    ),
}


@pytest.mark.parametrize("form", FORMS)
def test_threads_retry_each_item_on_its_own(form: str) -> None:
    flaky = Flaky(FAILS)
    result = pyarallel.parallel_map(flaky, ITEMS, workers=4, retry=FORMS[form]())
    check_result(result, flaky)


def test_a_decorator_default_serves_every_call_with_a_fresh_policy() -> None:
    # a policy is built per call: a second call (or one running at the same time) starts afresh
    @pyarallel.parallel(workers=4, retry=tenacity.Retrying(stop=stop_after_attempt(3), wait=wait_fixed(0.01)))
    def fetch(item: int) -> int:
        return flaky(item)

    for _ in range(2):
        flaky = Flaky(FAILS)
        check_result(fetch.map(ITEMS), flaky)


def test_a_stream_retries_the_same() -> None:
    flaky = Flaky(FAILS)
    retry = tenacity.Retrying(stop=stop_after_attempt(3), wait=wait_fixed(0.01))
    results = sorted(
        pyarallel.parallel_iter(flaky, iter(ITEMS), workers=3, retry=retry), key=lambda r: r.index
    )
    assert [result.ok for result in results] == [item not in GIVE_UP for item in ITEMS]
    assert flaky.attempts() == ATTEMPTS


def test_retry_if_exception_type_restricts_what_is_retried() -> None:
    flaky = Flaky({0: 2, 1: 2})
    flaky.error = KeyError  # every failure a KeyError...
    mixed = Flaky({2: 2})  # ...except item 2's ConnectionErrors

    def work(item: int) -> int:
        return mixed(item) if item == 2 else flaky(item)

    retry = tenacity.Retrying(retry=retry_if_exception_type(ConnectionError), stop=stop_after_attempt(5))
    result = pyarallel.parallel_map(work, [0, 1, 2, 3], workers=4, retry=retry)
    assert flaky.attempts() == {0: 1, 1: 1, 3: 1}  # KeyError: not retried
    assert mixed.attempts() == {2: 3}
    assert [(index, type(error)) for index, error in result.failures()] == [(0, KeyError), (1, KeyError)]
    assert result.successes() == [(2, 20), (3, 30)]


def test_stop_after_delay_counts_from_the_items_first_attempt() -> None:
    # an item that always fails, waiting 0.05 s between attempts, stopped once 0.25 s have
    # passed since its first attempt started (not since its last one: it would never stop)
    flaky = Flaky({0: 10**6})
    retry = tenacity.Retrying(stop=stop_after_delay(0.25), wait=wait_fixed(0.05))
    result = pyarallel.parallel_map(flaky, [0], retry=retry)
    assert not result.ok
    starts = flaky.starts[0]
    assert 3 <= len(starts) <= 7, starts
    assert starts[-1] - starts[0] >= 0.25 - 0.05 - SHORT  # the last failure came at >= 0.25 s
    assert starts[-2] - starts[0] < 0.25  # the one before came earlier, and was retried
    assert starts[-1] - starts[0] < 0.25 + 0.05 + LATE


def test_stop_after_delay_does_not_count_time_spent_queued_behind_another_item() -> None:
    flaky = Flaky({1: 10**6})

    def work(item: int) -> int:
        if item == 0:
            time.sleep(0.4)  # the workload: item 1's first attempt starts after this one
        return flaky(item)

    retry = tenacity.Retrying(stop=stop_after_delay(0.2), wait=wait_fixed(0.02))
    pyarallel.parallel_map(work, [0, 1], workers=1, retry=retry)
    assert len(flaky.starts[1]) >= 3  # retried for 0.2 s after its first attempt started


def test_a_waiting_item_holds_no_worker() -> None:
    # one worker; item 0 fails once and waits 0.5 s: the other items run meanwhile
    flaky = Flaky({0: 1})
    retry = tenacity.Retrying(stop=stop_after_attempt(2), wait=wait_fixed(0.5))
    result = pyarallel.parallel_map(flaky, [0, 1, 2], workers=1, retry=retry)
    assert result.values() == [0, 10, 20]
    retried_at = flaky.starts[0][1]
    assert flaky.starts[1][0] < retried_at
    assert flaky.starts[2][0] < retried_at
    assert flaky.starts[2][0] - flaky.starts[0][0] < 0.5 - 0.1
    assert retried_at - flaky.starts[0][0] >= 0.5 - SHORT


def test_every_attempt_draws_a_rate_limit_token() -> None:
    # 3 items failing once each: 6 attempts, 20 per second, however fast retries are asked for
    flaky = Flaky({0: 1, 1: 1, 2: 1})
    retry = tenacity.Retrying(stop=stop_after_attempt(3), wait=wait_none())
    result = pyarallel.parallel_map(flaky, [0, 1, 2], workers=3, rate_limit=20, retry=retry)
    assert result.values() == [0, 10, 20]
    assert flaky.attempts() == {0: 2, 1: 2, 2: 2}
    starts = sorted(itertools.chain.from_iterable(flaky.starts.values()))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.05 - SHORT, gaps
    assert starts[-1] - starts[0] >= 5 * 0.05 - SHORT


def test_before_sleep_log_reports_every_retry(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("pyarallel_tenacity.tests.runs")
    flaky = Flaky(FAILS)
    retry = tenacity.Retrying(
        stop=stop_after_attempt(3),
        wait=wait_fixed(0.01),
        before_sleep=tenacity.before_sleep_log(logger, logging.INFO),
    )
    with caplog.at_level(logging.INFO, logger=logger.name):
        check_result(pyarallel.parallel_map(flaky, ITEMS, workers=4, retry=retry), flaky)
    retries = sum(attempts - 1 for attempts in ATTEMPTS.values())
    messages = [record.getMessage() for record in caplog.records if record.name == logger.name]
    assert len(messages) == retries
    assert all(
        message.startswith("Retrying <unknown> in 0.01 seconds as it raised ConnectionError")
        for message in messages
    )


# -- processes ------------------------------------------------------------------------------


def flaky_in_files(job: tuple[str, int, int]) -> int:
    """Fails ``fails`` times for ``item``, counting attempts in a file (each attempt runs
    in whichever worker process takes it)."""
    directory, item, fails = job
    with (Path(directory) / str(item)).open("a") as log:
        log.write("x")
    attempt = len((Path(directory) / str(item)).read_text())
    if attempt <= fails:
        raise ConnectionError(item, attempt)
    return 10 * item


@pytest.mark.timeout(120)
def test_processes_retry_each_item_on_its_own(tmp_path: Path) -> None:
    jobs = [(str(tmp_path), item, FAILS.get(item, 0)) for item in ITEMS]
    retry = tenacity.Retrying(
        stop=stop_after_attempt(3), wait=wait_fixed(0.01), retry=retry_if_exception_type(ConnectionError)
    )
    result = pyarallel.parallel_map(flaky_in_files, jobs, executor="process", workers=2, retry=retry)
    attempts = {item: len((tmp_path / str(item)).read_text()) for item in ITEMS}
    assert attempts == ATTEMPTS
    assert result.successes() == [(item, 10 * item) for item in ITEMS if item not in GIVE_UP]
    failures = dict(result.failures())
    assert sorted(failures) == GIVE_UP
    for item in GIVE_UP:
        assert type(failures[item]) is ConnectionError
        assert failures[item].args == (item, 3)  # the last attempt's


# -- the async API ------------------------------------------------------------------------------

ASYNC_FORMS = {
    "AsyncRetrying": lambda: tenacity.AsyncRetrying(stop=stop_after_attempt(3), wait=wait_fixed(0.01)),
    "Retrying": lambda: tenacity.Retrying(stop=stop_after_attempt(3), wait=wait_fixed(0.01)),
    "TenacityRetry": lambda: TenacityRetry(stop=stop_after_attempt(3), wait=wait_fixed(0.01)),
}


@pytest.mark.parametrize("form", ASYNC_FORMS)
def test_the_async_api_retries_each_item_on_its_own(form: str) -> None:
    flaky = Flaky(FAILS)

    async def work(item: int) -> int:
        await asyncio.sleep(0)
        return flaky(item)

    result = asyncio.run(pyarallel.async_parallel_map(work, ITEMS, concurrency=4, retry=ASYNC_FORMS[form]()))
    check_result(result, flaky)


def test_the_async_api_paces_every_attempt() -> None:
    flaky = Flaky({0: 1, 1: 1})

    async def work(item: int) -> int:
        return flaky(item)

    retry = tenacity.AsyncRetrying(stop=stop_after_attempt(2), wait=wait_none())
    result = asyncio.run(
        pyarallel.async_parallel_map(work, [0, 1], concurrency=2, rate_limit=20, retry=retry)
    )
    assert result.values() == [0, 10]
    starts = sorted(itertools.chain.from_iterable(flaky.starts.values()))
    assert len(starts) == 4
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.05 - SHORT
