"""``pyarallel.Limiter``: GCRA pacing, bursts, costs, keys, holds, pauses and adaptive rates.

Every test but the thread-safety ones drives the limiter on a fake clock (``limiter._clock``
replaced by a callable the test moves by hand), so the exact moments of the grants are known
and nothing sleeps.

The GCRA bound the properties check: a call of ``c`` units is granted at ``t`` only when
``max(full_at, t) + (c - burst) / rate <= t``, and taking it moves ``full_at`` to
``max(full_at, t) + c / rate``. Take the grants ``g_i <= ... <= g_j`` of one window: before
the grant at ``g_j``, ``full_at >= g_i + (c_i + ... + c_{j-1}) / rate``, so the grant needs
``c_i + ... + c_j <= (g_j - g_i) * rate + burst``. Hence the units granted in any half-open
window ``[t, t + W)`` are fewer than ``W * rate + burst``; with unit calls and a whole
``burst`` that is at most ``ceil(W * rate) + burst - 1`` calls (``ceil(W * rate)`` for
``burst=1``), and two grants are never closer than ``1 / rate`` with ``burst=1``. The bound
is reached by a busy run from idle.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyarallel import ItemResult, Limiter, RateLimit, RateLimitCostError
from pyarallel._limiting.adaptive import BETA, FLOOR, RECOVERY_SECONDS, SCALE
from pyarallel._limiting.bucket import HOLD_GRACE, LATE_HOLDER_POLL
from pyarallel._limiting.limiter import SWEEP_KEYS, SWEEP_SECONDS

START = 1000.0  # the fake clock starts here: nothing special about 0
TOLERANCE = 1e-7  # float slack on the fake clock (times near START have ulps ~1e-13)
NAN = float("nan")
INF = float("inf")

# -- helpers ------------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when the test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    def at(self, offset: float) -> None:
        """Set the clock to ``START + offset``."""
        self.now = START + offset


def make(*limits: RateLimit | float, adaptive: bool = False) -> tuple[Limiter, FakeClock]:
    limiter = Limiter(*limits, adaptive=adaptive)
    clock = FakeClock()
    limiter._clock = clock
    return limiter, clock


def granted(limiter: Limiter, item: object = None) -> Any:
    """A reservation for ``item``, granted now (the test asserts it is)."""
    reservation = limiter.request(item)
    wait = reservation.try_acquire()
    assert wait == 0.0, f"expected a grant now, was told to wait {wait}"
    return reservation


def refused(limiter: Limiter, item: object = None) -> tuple[Any, float]:
    """A reservation for ``item`` refused now, and the wait it was told."""
    reservation = limiter.request(item)
    wait = reservation.try_acquire()
    assert wait > 0, "expected a refusal now, was granted"
    return reservation, wait


def wait_of(limiter: Limiter, item: object = None) -> float:
    """How long a new reservation for ``item`` is told to wait now (cancelled after)."""
    reservation = limiter.request(item)
    wait = reservation.try_acquire()
    if wait > 0:
        reservation.cancel()
    return wait


def busy_run(limiter: Limiter, clock: FakeClock, count: int, item: object = None) -> list[float]:
    """Grant ``count`` calls back to back, each asked for as soon as the last was granted and
    again exactly when it was told to; the grant times, relative to ``START``."""
    times = []
    reservation = limiter.request(item)
    while len(times) < count:
        wait = reservation.try_acquire()
        if wait > 0:
            clock.advance(wait)
            continue
        times.append(clock.now - START)
        reservation = limiter.request(item)
    return times


def most_in_window(times: list[float], width: float) -> int:
    """The most of the sorted ``times`` in any half-open window ``[t, t + width)``."""
    return max((bisect.bisect_left(times, t + width) - i for i, t in enumerate(times)), default=0)


def assert_gcra_bound(grants: list[tuple[float, float]], rate: float, burst: float) -> None:
    """The units of any run of consecutive grants fit in ``(last - first) * rate + burst``."""
    grants = sorted(grants)
    for i, (first, _) in enumerate(grants):
        units = 0.0
        for last, cost in grants[i:]:
            units += cost
            assert units <= (last - first) * rate + burst + TOLERANCE * rate, (first, last, units)


def success(value: object = None) -> ItemResult[Any]:
    return ItemResult.success(0, value)


def failure() -> ItemResult[Any]:
    return ItemResult.failure(0, RuntimeError("boom"))


def identity(item: Any) -> Any:
    return item


# -- burst=1: one call per interval -------------------------------------------------------------


def test_first_call_at_once_then_one_per_interval() -> None:
    limiter, clock = make(RateLimit(10))
    assert busy_run(limiter, clock, 6) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], abs=TOLERANCE)


def test_an_early_ask_is_told_the_time_left() -> None:
    limiter, clock = make(RateLimit(4))  # one call every 0.25 s
    granted(limiter)
    clock.advance(0.1)
    _, wait = refused(limiter)
    assert wait == pytest.approx(0.15)


def test_asking_exactly_when_told_is_granted() -> None:
    limiter, clock = make(RateLimit(3))  # 1/3 is not exact in binary
    granted(limiter)
    reservation, wait = refused(limiter)
    clock.advance(wait)
    assert reservation.try_acquire() == 0.0


def test_a_per_minute_rate_paces_in_seconds() -> None:
    limiter, clock = make(RateLimit(120, "minute"))
    assert busy_run(limiter, clock, 3) == pytest.approx([0.0, 0.5, 1.0], abs=TOLERANCE)


def test_a_number_is_calls_per_second() -> None:
    limiter, clock = make(5)
    assert limiter.limits == (RateLimit(5),)
    assert busy_run(limiter, clock, 3) == pytest.approx([0.0, 0.2, 0.4], abs=TOLERANCE)


def test_the_average_of_a_long_busy_run_is_the_rate() -> None:
    limiter, clock = make(RateLimit(7))
    times = busy_run(limiter, clock, 701)
    assert (len(times) - 1) / (times[-1] - times[0]) == pytest.approx(7.0, rel=1e-9)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(1 / 7, rel=1e-9)
    assert max(gaps) == pytest.approx(1 / 7, rel=1e-9)


def test_after_idle_a_burst_one_limit_still_spaces_calls() -> None:
    limiter, clock = make(RateLimit(10))
    busy_run(limiter, clock, 3)
    clock.advance(60)
    start = clock.now - START
    assert busy_run(limiter, clock, 3) == pytest.approx([start, start + 0.1, start + 0.2], abs=TOLERANCE)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 10.0, 7.5, 250.0]),
    burst=st.integers(min_value=1, max_value=5),
    gaps=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=80),
    widths=st.lists(st.floats(min_value=0.001, max_value=5.0), min_size=1, max_size=5),
)
def test_unit_grants_never_exceed_the_gcra_bound(
    rate: float, burst: int, gaps: list[float], widths: list[float]
) -> None:
    """Calls asked at random moments (a refused one asks again at the next moment)."""
    limiter, clock = make(RateLimit(rate, burst=burst))
    grants: list[float] = []
    pending = None
    for gap in gaps:
        clock.advance(gap / rate)
        if pending is None:
            pending = limiter.request(None)
        if pending.try_acquire() == 0.0:
            grants.append(clock.now - START)
            pending = None
    assert grants, "the first ask is always granted"
    assert grants[0] == pytest.approx(gaps[0] / rate, abs=TOLERANCE)
    assert_gcra_bound([(t, 1.0) for t in grants], rate, burst)
    if burst == 1:
        gaps_between = [b - a for a, b in itertools.pairwise(grants)]
        assert all(gap >= 1 / rate - TOLERANCE for gap in gaps_between)
    for width in widths:
        window = width / rate * 3  # from a fraction of an interval to 15 intervals
        assert most_in_window(grants, window - TOLERANCE) <= math.ceil(window * rate) + burst - 1


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([2.0, 10.0, 100.0]),
    burst=st.sampled_from([1.0, 2.5, 8.0, 20.0]),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=2.0),  # gap, in units' time
            st.integers(min_value=0, max_value=3),  # which waiter asks
            st.floats(min_value=0.0, max_value=1.0),  # its cost, as a fraction of burst
            st.booleans(),  # cancel instead of asking
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_costed_grants_by_many_waiters_never_exceed_the_gcra_bound(
    rate: float, burst: float, steps: list[tuple[float, int, float, bool]]
) -> None:
    """Several waiters with random costs, asking, giving up (cancel) or abandoning a
    reservation without cancelling: the units granted still obey the bound (holds and
    refusals only ever take less)."""
    limiter, clock = make(RateLimit(rate, cost=identity, burst=burst))
    pending: dict[int, Any] = {}
    grants: list[tuple[float, float]] = []
    for gap, waiter, fraction, cancel in steps:
        clock.advance(gap / rate)
        if cancel:
            if waiter in pending:
                pending.pop(waiter).cancel()
            continue
        if waiter not in pending:
            pending[waiter] = limiter.request(fraction * burst)
        reservation = pending[waiter]
        wait = reservation.try_acquire()
        assert wait >= 0
        if wait == 0.0:
            grants.append((clock.now - START, reservation.item))
            del pending[waiter]
    assert_gcra_bound(grants, rate, burst)


def test_the_bound_is_reached_by_a_busy_run_from_idle() -> None:
    limiter, clock = make(RateLimit(10, burst=5))
    times = busy_run(limiter, clock, 30)
    assert most_in_window(times, 1.0) == math.ceil(1.0 * 10) + 5 - 1  # 14 in [0, 1)
    assert bisect.bisect_left(times, 1.0 - TOLERANCE) == 14


# -- burst=N, cost= -----------------------------------------------------------------------------


def test_burst_grants_that_many_at_once_then_the_steady_rate() -> None:
    limiter, clock = make(RateLimit(10, burst=5))
    times = busy_run(limiter, clock, 8)
    assert times == pytest.approx([0, 0, 0, 0, 0, 0.1, 0.2, 0.3], abs=TOLERANCE)


def test_burst_refills_at_the_rate_while_idle() -> None:
    limiter, clock = make(RateLimit(10, burst=5))
    busy_run(limiter, clock, 5)  # drained at START
    clock.at(0.2)  # two units back
    granted(limiter)
    granted(limiter)
    assert wait_of(limiter) == pytest.approx(0.1)
    clock.at(60)  # full again, never more than burst
    for _ in range(5):
        granted(limiter)
    assert wait_of(limiter) == pytest.approx(0.1)


def test_cost_counts_units_against_the_burst() -> None:
    limiter, clock = make(RateLimit(10, cost=identity, burst=5))
    granted(limiter, 2)
    granted(limiter, 2)
    granted(limiter, 1)  # 5 units: the burst
    assert wait_of(limiter, 1) == pytest.approx(0.1)
    assert wait_of(limiter, 3) == pytest.approx(0.3)
    clock.at(0.3)
    granted(limiter, 3)


def test_a_zero_cost_call_is_granted_even_when_the_budget_is_spent() -> None:
    limiter, _ = make(RateLimit(10, cost=identity, burst=5))
    granted(limiter, 5)
    granted(limiter, 0)
    assert wait_of(limiter, 1) == pytest.approx(0.1)


def test_a_cost_equal_to_the_burst_is_granted_from_full() -> None:
    limiter, _ = make(RateLimit(10, cost=identity, burst=5))
    granted(limiter, 5)
    assert wait_of(limiter, 5) == pytest.approx(0.5)


def test_fractional_costs_and_bursts() -> None:
    limiter, _ = make(RateLimit(4, cost=identity, burst=0.5))
    granted(limiter, 0.25)
    granted(limiter, 0.25)
    assert wait_of(limiter, 0.25) == pytest.approx(0.0625)


# -- refusals take nothing ----------------------------------------------------------------------


def test_asking_early_again_and_again_does_not_move_the_due_time() -> None:
    limiter, clock = make(RateLimit(10))
    granted(limiter)
    reservation = limiter.request(None)
    for offset in (0.0, 0.01, 0.05, 0.07, 0.0999):
        clock.at(offset)
        wait = reservation.try_acquire()
        assert offset + wait == pytest.approx(0.1, abs=TOLERANCE)
    clock.at(0.1)
    assert reservation.try_acquire() == 0.0
    assert wait_of(limiter) == pytest.approx(0.1)  # the next one a whole interval later


def test_a_cancelled_reservation_takes_nothing() -> None:
    limiter, clock = make(RateLimit(10))
    granted(limiter)
    reservation, wait = refused(limiter)
    assert wait == pytest.approx(0.1)
    reservation.cancel()
    clock.at(0.1)
    granted(limiter)  # another call, at the moment the cancelled one was due
    assert wait_of(limiter) == pytest.approx(0.1)


def test_request_alone_takes_nothing() -> None:
    limiter, _ = make(RateLimit(10, burst=3))
    for _ in range(10):
        limiter.request(None)
    for _ in range(3):
        granted(limiter)


def test_cancel_is_harmless_before_any_ask_and_twice() -> None:
    limiter, _ = make(RateLimit(10, key=identity))
    reservation = limiter.request("a")
    reservation.cancel()
    reservation.cancel()
    granted(limiter, "a")


# -- several limits -----------------------------------------------------------------------------


def composite() -> tuple[Limiter, FakeClock]:
    """10 calls per second and 100 units per second, 50 at once."""
    return make(RateLimit(10), RateLimit(100, cost=identity, burst=50))


def test_composite_wait_is_the_longest() -> None:
    limiter, clock = composite()
    granted(limiter, 50)  # calls: due again at 0.1; units: full again at 0.5
    clock.at(0.05)
    assert wait_of(limiter, 50) == pytest.approx(0.45)  # the units bind
    assert wait_of(limiter, 0) == pytest.approx(0.05)  # the calls bind


def test_composite_refused_by_the_units_debits_no_call() -> None:
    limiter, clock = composite()
    granted(limiter, 50)
    clock.at(0.05)
    reservation, wait = refused(limiter, 50)
    assert wait == pytest.approx(0.45)
    reservation.cancel()
    clock.at(0.1)  # the call limit's next slot, untouched by the refusal
    granted(limiter, 0)
    assert wait_of(limiter, 0) == pytest.approx(0.1)


def test_composite_refused_by_the_calls_debits_no_unit() -> None:
    limiter, clock = composite()
    granted(limiter, 10)  # units: 40 left, full again at 0.1
    clock.at(0.01)
    reservation, wait = refused(limiter, 40)
    assert wait == pytest.approx(0.09)  # the calls bind
    reservation.cancel()
    clock.at(0.1)
    granted(limiter, 40)  # the 40 units were not debited at 0.01...
    clock.at(0.2)
    # ...else the units would be full again only at 0.9, not 0.5
    assert wait_of(limiter, 50) == pytest.approx(0.3)


def test_composite_a_grant_debits_every_limit() -> None:
    limiter, clock = composite()
    granted(limiter, 30)
    assert wait_of(limiter, 0) == pytest.approx(0.1)
    clock.at(0.1)
    assert wait_of(limiter, 50) == pytest.approx(0.2)  # 30 units owed at 0.0, 20 repaid


# -- cost and key errors ------------------------------------------------------------------------


def test_a_cost_above_the_burst_names_the_cost_and_the_burst() -> None:
    limiter, _ = make(RateLimit(100, cost=identity, burst=50))
    with pytest.raises(RateLimitCostError) as caught:
        limiter.request(60)
    message = str(caught.value)
    assert "60" in message
    assert "burst=50" in message
    assert caught.value.__cause__ is None


def test_a_cost_above_the_burst_of_one_limit_of_several_fails() -> None:
    limiter, _ = make(RateLimit(1000, cost=identity, burst=500), RateLimit(10, cost=identity, burst=5))
    with pytest.raises(RateLimitCostError, match="burst=5"):
        limiter.request(6)


def test_a_failed_request_takes_nothing() -> None:
    limiter, _ = make(RateLimit(10, cost=identity, burst=5))
    with pytest.raises(RateLimitCostError):
        limiter.request(6)
    granted(limiter, 5)


def test_a_raising_cost_function_is_the_cause() -> None:
    def cost(item: object) -> float:
        raise KeyError("tokens")

    limiter, _ = make(RateLimit(10, cost=cost, burst=5))
    with pytest.raises(RateLimitCostError, match="cost function") as caught:
        limiter.request("x")
    assert isinstance(caught.value.__cause__, KeyError)


@pytest.mark.parametrize("value", [-1, -0.5, "x", NAN, INF, -INF, True, False, None, [1], 2j])
def test_a_cost_function_returning_a_bad_value(value: object) -> None:
    limiter, _ = make(RateLimit(10, cost=lambda item: value, burst=5))
    with pytest.raises(RateLimitCostError, match="cost function") as caught:
        limiter.request("x")
    assert repr(value) in str(caught.value)


def test_a_cost_function_returning_a_huge_int() -> None:
    limiter, _ = make(RateLimit(10, cost=lambda item: 10**400, burst=5))
    with pytest.raises(RateLimitCostError):
        limiter.request("x")


def test_a_raising_key_function_is_the_cause() -> None:
    def key(item: object) -> Hashable:
        raise LookupError("no host")

    limiter, _ = make(RateLimit(10, key=key))
    with pytest.raises(RateLimitCostError, match="key function") as caught:
        limiter.request("x")
    assert isinstance(caught.value.__cause__, LookupError)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, {1}])
def test_a_key_function_returning_an_unhashable_value(value: object) -> None:
    limiter, _ = make(RateLimit(10, key=lambda item: value))
    with pytest.raises(RateLimitCostError, match="key function") as caught:
        limiter.request("x")
    assert isinstance(caught.value.__cause__, TypeError)


def test_a_key_of_none_is_a_key_like_any_other() -> None:
    limiter, _ = make(RateLimit(10, key=lambda item: item))
    assert granted(limiter, None).lane == (None,)
    assert wait_of(limiter, None) == pytest.approx(0.1)
    granted(limiter, "other")


# -- settle: reserve, then reconcile ------------------------------------------------------------


def settled() -> tuple[Limiter, FakeClock]:
    """10 units per second, 10 at once; the item is the estimate, the result value the use."""
    return make(RateLimit(10, cost=identity, burst=10, settle=lambda item, result: result.value))


def test_a_refund_of_an_overestimate_lets_the_next_call_start_earlier() -> None:
    limiter, _ = settled()
    reservation = granted(limiter, 10)
    assert wait_of(limiter, 10) == pytest.approx(1.0)
    reservation.finished(success(2))  # 8 units back
    assert wait_of(limiter, 10) == pytest.approx(0.2)


def test_an_underestimate_charges_more() -> None:
    limiter, _ = settled()
    reservation = granted(limiter, 2)
    assert wait_of(limiter, 10) == pytest.approx(0.2)
    reservation.finished(success(6))  # 4 units more
    assert wait_of(limiter, 10) == pytest.approx(0.6)


def test_a_refund_never_fills_beyond_the_burst() -> None:
    limiter, clock = settled()
    reservation = granted(limiter, 10)
    clock.at(5.0)  # full again long ago
    reservation.finished(success(0))  # a refund of all 10
    granted(limiter, 10)
    assert wait_of(limiter, 1) == pytest.approx(0.1)


def test_refunds_of_calls_in_flight_never_fill_beyond_the_burst() -> None:
    limiter, clock = settled()
    first, second = granted(limiter, 5), granted(limiter, 5)
    clock.at(0.5)
    first.finished(success(0))
    second.finished(success(0))
    granted(limiter, 10)
    assert wait_of(limiter, 1) == pytest.approx(0.1)


def test_settle_is_told_the_item_and_the_result() -> None:
    seen: list[tuple[object, ItemResult[Any]]] = []

    def settle(item: object, result: ItemResult[Any]) -> float:
        seen.append((item, result))
        return 1

    limiter, _ = make(RateLimit(10, settle=settle))
    result = failure()
    granted(limiter, "item").finished(result)
    assert seen == [("item", result)]


def test_settle_without_cost_reconciles_against_one_unit() -> None:
    limiter, _ = make(RateLimit(10, burst=5, settle=lambda item, result: 3))
    granted(limiter).finished(success())  # 3 units used, not 1
    for _ in range(2):
        granted(limiter)
    assert wait_of(limiter) == pytest.approx(0.1)


def test_a_limiter_without_settle_ignores_finished() -> None:
    limiter, _ = make(RateLimit(10, burst=2))
    granted(limiter).finished(success())
    granted(limiter).finished(failure())
    assert wait_of(limiter) == pytest.approx(0.1)


def test_a_raising_settle_fails_finished() -> None:
    def settle(item: object, result: ItemResult[Any]) -> float:
        raise ValueError("no usage in the response")

    limiter, _ = make(RateLimit(10, cost=identity, burst=10, settle=settle))
    reservation = granted(limiter, 4)
    with pytest.raises(RateLimitCostError, match="settle function") as caught:
        reservation.finished(success())
    assert isinstance(caught.value.__cause__, ValueError)
    assert wait_of(limiter, 10) == pytest.approx(0.4)  # the estimate stands


@pytest.mark.parametrize("value", [-1, "x", NAN, INF, True, None])
def test_settle_returning_a_bad_value_fails_finished(value: object) -> None:
    limiter, _ = make(RateLimit(10, cost=identity, burst=10, settle=lambda item, result: value))
    reservation = granted(limiter, 4)
    with pytest.raises(RateLimitCostError, match="settle function"):
        reservation.finished(success())
    assert wait_of(limiter, 10) == pytest.approx(0.4)


def test_settle_of_a_keyed_limit_reconciles_that_key() -> None:
    limiter, _ = make(
        RateLimit(10, cost=lambda item: item[1], burst=10, key=lambda item: item[0], settle=lambda i, r: 0)
    )
    reservation = granted(limiter, ("a", 10))
    granted(limiter, ("b", 10))
    reservation.finished(success())
    granted(limiter, ("a", 10))
    assert wait_of(limiter, ("b", 1)) == pytest.approx(0.1)


def test_a_refund_during_a_pause_does_not_make_a_burst_at_resume() -> None:
    limiter, clock = make(RateLimit(10, cost=identity, burst=5, settle=lambda item, result: 0))
    reservation = granted(limiter, 5)
    limiter.pause(1.0)
    reservation.finished(success())  # 5 units refunded while paused
    clock.at(1.0)
    granted(limiter, 1)
    assert wait_of(limiter, 1) == pytest.approx(0.1)  # no burst on resume


# -- keys ---------------------------------------------------------------------------------------


def test_each_key_has_its_own_budget() -> None:
    limiter, clock = make(RateLimit(10, key=identity))
    granted(limiter, "a")
    granted(limiter, "b")
    assert wait_of(limiter, "a") == pytest.approx(0.1)
    assert wait_of(limiter, "b") == pytest.approx(0.1)
    clock.at(0.05)
    granted(limiter, "c")
    assert wait_of(limiter, "a") == pytest.approx(0.05)
    assert limiter.key_count() == 3


def test_a_keyed_and_a_shared_limit() -> None:
    limiter, _ = make(RateLimit(20, burst=2), RateLimit(1, key=identity))
    granted(limiter, "a")
    assert wait_of(limiter, "a") == pytest.approx(1.0)  # its key binds
    granted(limiter, "b")
    assert wait_of(limiter, "c") == pytest.approx(0.05)  # the shared limit binds


def test_lane_is_the_tuple_of_keys_or_none() -> None:
    plain, _ = make(RateLimit(10))
    assert plain.request("x").lane is None
    costed, _ = make(RateLimit(10, cost=len, burst=5))
    assert costed.request("x").lane is None
    keyed, _ = make(RateLimit(10, key=str.upper))
    assert keyed.request("x").lane == ("X",)
    mixed, _ = make(RateLimit(10, key=str.upper), RateLimit(100), RateLimit(10, key=len))
    assert mixed.request("abc").lane == ("ABC", 3)


def test_key_count_counts_keys_of_every_keyed_limit() -> None:
    limiter, clock = make(RateLimit(10, key=str.upper), RateLimit(10, key=len))
    assert limiter.key_count() == 0
    granted(limiter, "ab")
    assert limiter.key_count() == 2
    clock.at(0.1)
    granted(limiter, "cd")  # a new key for the first limit, the same for the second
    assert limiter.key_count() == 3


def test_idle_keys_are_forgotten_after_a_while() -> None:
    limiter, clock = make(RateLimit(10, key=identity))
    for key in range(SWEEP_KEYS + 1):
        granted(limiter, key)
    assert limiter.key_count() == SWEEP_KEYS + 1  # none at rest when they grew past the limit
    clock.at(SWEEP_SECONDS + 1)
    granted(limiter, "new")
    assert limiter.key_count() == 1
    granted(limiter, 0)  # a forgotten key starts afresh, with a full budget


def test_idle_keys_are_forgotten_when_there_are_many() -> None:
    limiter, clock = make(RateLimit(10, key=identity))  # a key is at rest 0.1 s after its call
    for key in range(SWEEP_KEYS + 1):
        clock.at(key * 0.01)
        granted(limiter, key)
    assert clock.now - START < SWEEP_SECONDS  # the size, not the time, made it sweep
    assert 5 <= limiter.key_count() <= 15  # those of the last 0.1 s
    assert wait_of(limiter, SWEEP_KEYS) == pytest.approx(0.1)  # the busy ones kept their state
    assert wait_of(limiter, SWEEP_KEYS - 5) > 0


def test_keys_not_at_rest_are_kept() -> None:
    limiter, clock = make(RateLimit(1, key=identity), adaptive=True)
    for key in range(10):
        granted(limiter, key)  # at rest a second later
    limiter.pause(1000, key="paused")
    granted(limiter, "cut").throttled(None)  # its rate cut, and no success to recover
    clock.at(SWEEP_SECONDS - 1)
    granted(limiter, "held")
    clock.at(SWEEP_SECONDS - 0.5)
    holder, _ = refused(limiter, "held")  # due at SWEEP_SECONDS, held until + HOLD_GRACE
    clock.at(SWEEP_SECONDS + HOLD_GRACE / 2)  # "held" is full, but its waiter may still come
    granted(limiter, "busy")  # sweeps: "busy" itself is mid-interval
    assert limiter.key_count() == 4
    assert wait_of(limiter, "paused") == pytest.approx(1000 - SWEEP_SECONDS - HOLD_GRACE / 2)
    assert limiter.current_rates("cut") == (BETA,)
    assert wait_of(limiter, "busy") == pytest.approx(1.0)
    assert wait_of(limiter, "held") > 0  # still served to its waiter first
    assert holder.try_acquire() == 0.0


def test_a_settle_charge_survives_a_sweep_of_its_key() -> None:
    limiter, clock = make(
        RateLimit(1, cost=lambda item: item[1], burst=10, key=lambda item: item[0], settle=lambda i, r: 10)
    )
    granted(limiter, ("other", 1))  # the first grant sweeps: the next sweep is due SWEEP_SECONDS on
    clock.at(SWEEP_SECONDS - 0.5)
    in_flight = granted(limiter, ("a", 1))  # estimates 1 unit: "a" is full again 1 s later
    clock.at(SWEEP_SECONDS + 1)
    granted(limiter, ("other", 1))  # sweeps: "a" looks at rest
    in_flight.finished(success())  # it used 10 units, charged as of its start
    # 10 units owed since SWEEP_SECONDS - 0.5, 1.5 repaid: 1.5 units free now, not 10
    assert wait_of(limiter, ("a", 10)) == pytest.approx(8.5)


# -- holds: the first waiter refused is served first --------------------------------------------


def big_and_small() -> tuple[Limiter, FakeClock, Any, float]:
    """10 units per second, 10 at once, drained at 0; a 10-unit waiter refused at 0.1
    (due at 1.0)."""
    limiter, clock = make(RateLimit(10, cost=identity, burst=10))
    granted(limiter, 10)
    clock.at(0.1)
    big, wait = refused(limiter, 10)
    assert wait == pytest.approx(0.9)
    return limiter, clock, big, 0.1 + wait


def test_a_large_waiter_is_served_before_later_small_ones() -> None:
    limiter, clock, big, due = big_and_small()
    clock.at(0.5)  # a unit would fit (5 are back), but the big waiter is served first
    small, wait = refused(limiter, 1)
    assert 0.5 + wait == pytest.approx(due + (10 + 1 - 10) / 10)  # told: once the big one's units are in
    clock.at(due)
    assert small.try_acquire() == pytest.approx(LATE_HOLDER_POLL)  # not before the big one
    assert big.try_acquire() == 0.0
    assert small.try_acquire() == pytest.approx(0.1)  # then at the rate
    clock.advance(0.1)
    assert small.try_acquire() == 0.0


def test_waiters_are_served_in_the_order_they_were_first_refused() -> None:
    limiter, clock, first, due = big_and_small()
    clock.at(0.2)
    second, wait = refused(limiter, 10)
    assert 0.2 + wait == pytest.approx(due + 1.0)  # behind the first one's 10 units
    clock.at(0.3)
    small, wait = refused(limiter, 1)
    assert 0.3 + wait == pytest.approx(due + 1.1)  # behind both
    clock.at(due)
    assert small.try_acquire() == pytest.approx(LATE_HOLDER_POLL)
    assert second.try_acquire() == pytest.approx(LATE_HOLDER_POLL)
    assert first.try_acquire() == 0.0
    clock.at(due + LATE_HOLDER_POLL)  # both come back as told
    assert second.try_acquire() == pytest.approx(1.0 - LATE_HOLDER_POLL)
    assert small.try_acquire() == pytest.approx(1.1 - LATE_HOLDER_POLL)  # the second one is ahead
    clock.at(due + 1.0)
    assert small.try_acquire() == pytest.approx(LATE_HOLDER_POLL)
    assert second.try_acquire() == 0.0
    assert small.try_acquire() == pytest.approx(0.1)
    clock.at(due + 1.1)
    assert small.try_acquire() == 0.0


def test_a_stream_of_small_waiters_cannot_starve_a_large_one() -> None:
    limiter, clock, big, due = big_and_small()
    step = 0.0
    while clock.now - START < due - 0.05:
        step += 0.05
        clock.at(0.1 + step)
        assert wait_of(limiter, 1) > 0
    clock.at(due)
    assert big.try_acquire() == 0.0


def test_the_holder_itself_asking_early_keeps_its_turn() -> None:
    _limiter, clock, big, due = big_and_small()
    clock.at(0.4)
    assert 0.4 + big.try_acquire() == pytest.approx(due)
    clock.at(due)
    assert big.try_acquire() == 0.0


def test_a_hold_expires_when_its_waiter_never_comes_back() -> None:
    limiter, clock, _big, due = big_and_small()
    clock.at(due + HOLD_GRACE - 0.01)
    assert wait_of(limiter, 1) == pytest.approx(LATE_HOLDER_POLL)  # still its turn
    clock.at(due + HOLD_GRACE + 1e-6)
    granted(limiter, 10)  # it missed its turn


def test_cancel_releases_a_hold_at_once() -> None:
    limiter, clock, big, _ = big_and_small()
    clock.at(0.5)
    big.cancel()
    granted(limiter, 5)


def test_granting_releases_the_hold() -> None:
    limiter, clock, big, due = big_and_small()
    clock.at(due)
    assert big.try_acquire() == 0.0
    clock.at(due + 0.5)
    granted(limiter, 5)


def test_a_hold_is_taken_only_on_the_binding_limit() -> None:
    """A waiter that its own key holds back does not hold the shared limit: other keys go on."""
    limiter, clock = make(RateLimit(100), RateLimit(1, key=identity))
    granted(limiter, "a")
    clock.at(0.005)
    waiter, wait = refused(limiter, "a")
    assert wait == pytest.approx(0.995)  # its key, not the shared limit (0.005)
    clock.at(0.01)
    granted(limiter, "b")
    clock.at(0.02)
    granted(limiter, "c")
    clock.at(1.0)
    assert waiter.try_acquire() == 0.0


def test_a_waiter_held_back_by_the_shared_limit_holds_it() -> None:
    limiter, clock = make(
        RateLimit(10, cost=lambda item: item[1], burst=10), RateLimit(100, key=lambda item: item[0])
    )
    granted(limiter, ("a", 10))
    clock.at(0.1)
    waiter, wait = refused(limiter, ("bb", 10))
    assert wait == pytest.approx(0.9)
    clock.at(0.5)  # another key waits its turn: after the 10 units queued ahead of it
    assert wait_of(limiter, ("ccc", 1)) == pytest.approx(1.0 + (10 + 1 - 10) / 10 - 0.5)
    clock.at(1.0)
    assert waiter.try_acquire() == 0.0


# -- pause --------------------------------------------------------------------------------------


def test_pause_holds_every_caller_until_its_deadline() -> None:
    limiter, clock = make(RateLimit(10, burst=5))
    limiter.pause(2.0)
    assert wait_of(limiter) == pytest.approx(2.0)
    clock.at(1.5)
    reservation, wait = refused(limiter)
    assert wait == pytest.approx(0.5)
    clock.at(2.0)
    assert reservation.try_acquire() == 0.0


def test_pause_of_a_keyed_limiter_holds_new_keys_too() -> None:
    limiter, clock = make(RateLimit(10, key=identity))
    granted(limiter, "old")
    limiter.pause(1.0)
    clock.at(0.5)
    assert wait_of(limiter, "old") == pytest.approx(0.5)
    assert wait_of(limiter, "new") == pytest.approx(0.5)
    clock.at(1.0)
    granted(limiter, "old")
    granted(limiter, "new")


def test_the_furthest_pause_wins() -> None:
    limiter, clock = make(RateLimit(10))
    limiter.pause(2.0)
    clock.at(1.0)
    limiter.pause(0.5)  # ends at 1.5: sooner, so it does not shorten the first
    assert wait_of(limiter) == pytest.approx(1.0)
    limiter.pause(3.0)  # ends at 4.0: later, so it wins
    assert wait_of(limiter) == pytest.approx(3.0)


def test_a_pause_of_zero_holds_nothing_but_drops_the_burst() -> None:
    limiter, _ = make(RateLimit(10, burst=2))
    limiter.pause(0)
    granted(limiter)  # at once...
    assert wait_of(limiter) == pytest.approx(0.1)  # ...but restarting as after any pause


def test_after_a_pause_calls_resume_without_a_burst() -> None:
    limiter, clock = make(RateLimit(10, burst=5))
    limiter.pause(1.0)
    clock.at(1.0)
    times = busy_run(limiter, clock, 4)
    assert times == pytest.approx([1.0, 1.1, 1.2, 1.3], abs=TOLERANCE)


def test_after_a_pause_the_burst_refills_while_idle() -> None:
    limiter, clock = make(RateLimit(10, burst=5))
    limiter.pause(1.0)
    clock.at(1.4)  # 0.4 s after the restart with one unit ready: all five units back
    for _ in range(5):
        granted(limiter)
    assert wait_of(limiter) == pytest.approx(0.1)


def test_pause_of_a_key_holds_only_that_key() -> None:
    limiter, clock = make(RateLimit(10, burst=5, key=identity))
    limiter.pause(1.0, key="a")
    assert wait_of(limiter, "a") == pytest.approx(1.0)
    for _ in range(5):
        granted(limiter, "b")
    clock.at(1.0)
    assert busy_run(limiter, clock, 2, "a") == pytest.approx([1.0, 1.1], abs=TOLERANCE)


def test_pause_of_a_key_leaves_the_shared_limits_alone() -> None:
    limiter, _ = make(RateLimit(100, burst=5), RateLimit(10, key=identity))
    limiter.pause(1.0, key="a")
    assert wait_of(limiter, "a") == pytest.approx(1.0)
    granted(limiter, "b")
    granted(limiter, "c")


def test_throttled_with_a_pause_pauses_the_whole_unkeyed_limiter() -> None:
    limiter, clock = make(RateLimit(10), RateLimit(100, cost=identity, burst=50))
    reservation = granted(limiter, 1)
    clock.at(0.5)
    reservation.throttled(2.0)
    assert wait_of(limiter, 0) == pytest.approx(2.0)
    clock.at(2.5)
    granted(limiter, 0)


def test_throttled_with_a_pause_pauses_only_the_key_of_a_keyed_limiter() -> None:
    limiter, clock = make(RateLimit(100), RateLimit(10, key=identity))
    reservation = granted(limiter, "a")
    clock.at(0.5)
    reservation.throttled(2.0)
    assert wait_of(limiter, "a") == pytest.approx(2.0)
    granted(limiter, "b")
    clock.at(2.5)
    granted(limiter, "a")


def test_throttled_without_a_pause_pauses_nothing() -> None:
    limiter, _ = make(RateLimit(10, burst=2))
    granted(limiter).throttled(None)
    granted(limiter)


# -- adaptive -----------------------------------------------------------------------------------


def test_a_throttle_cuts_the_rate() -> None:
    limiter, _ = make(RateLimit(100), adaptive=True)
    assert limiter.current_rates() == (100.0,)
    granted(limiter).throttled(None)
    assert limiter.current_rates() == pytest.approx((100 * BETA,))
    assert 0 < BETA < 1


def test_the_cut_rate_paces_the_calls() -> None:
    limiter, clock = make(RateLimit(100), adaptive=True)
    reservation = granted(limiter)
    reservation.throttled(None)
    clock.at(1.0)  # the budget is full again
    times = busy_run(limiter, clock, 3)
    cut = 100 * BETA
    assert times == pytest.approx([1.0, 1.0 + 1 / cut, 1.0 + 2 / cut], abs=TOLERANCE)


def test_throttles_of_calls_granted_before_the_cut_are_ignored() -> None:
    limiter, clock = make(RateLimit(100), adaptive=True)
    early = [granted(limiter)]
    for offset in (0.01, 0.02):
        clock.at(offset)
        early.append(granted(limiter))
    clock.at(0.1)
    for reservation in early:  # the answers to calls already in flight: one signal
        reservation.throttled(None)
    assert limiter.current_rates() == pytest.approx((100 * BETA,))
    clock.at(0.2)
    later = granted(limiter)
    clock.at(0.3)
    later.throttled(None)  # sent after the cut: a new signal
    assert limiter.current_rates() == pytest.approx((100 * BETA**2,))


def test_throttles_just_after_a_cut_are_ignored() -> None:
    from pyarallel._limiting import adaptive

    limiter, clock = make(RateLimit(100), adaptive=True)
    granted(limiter).throttled(None)  # cut at 0
    clock.at(adaptive.COOLDOWN / 2)
    granted(limiter).throttled(None)  # granted after the cut, but too soon after it
    assert limiter.current_rates() == pytest.approx((100 * BETA,))
    clock.at(adaptive.COOLDOWN)
    granted(limiter).throttled(None)
    assert limiter.current_rates() == pytest.approx((100 * BETA**2,))


def test_successes_recover_along_the_cubic() -> None:
    limiter, clock = make(RateLimit(100), adaptive=True)
    granted(limiter).throttled(None)  # cut at 0: peak 100
    expected = {
        0.5: 100 * (1 + SCALE * (0.5 - RECOVERY_SECONDS) ** 3),
        1.0: 100 * (1 - (1 - BETA) / 8),
        1.5: 100 * (1 + SCALE * (1.5 - RECOVERY_SECONDS) ** 3),
    }
    for offset, rate in expected.items():
        clock.at(offset)
        granted(limiter).finished(success())
        assert limiter.current_rates() == pytest.approx((rate,))
    clock.at(RECOVERY_SECONDS)
    granted(limiter).finished(success())
    assert limiter.current_rates() == pytest.approx((100.0,))  # back at the peak
    clock.at(10.0)
    granted(limiter).finished(success())
    assert limiter.current_rates() == (100.0,)  # never above the configured rate


def test_a_failure_does_not_recover_the_rate() -> None:
    limiter, clock = make(RateLimit(100), adaptive=True)
    granted(limiter).throttled(None)
    clock.at(1.0)
    granted(limiter).finished(failure())
    assert limiter.current_rates() == pytest.approx((100 * BETA,))


def test_recovery_from_a_second_cut_flattens_at_its_peak_then_probes_beyond() -> None:
    limiter, clock = make(RateLimit(100), adaptive=True)
    granted(limiter).throttled(None)
    clock.at(1.0)
    reservation = granted(limiter)
    reservation.finished(success())
    peak = 100 * (1 - (1 - BETA) / 8)
    assert limiter.current_rates() == pytest.approx((peak,))
    reservation.throttled(None)  # granted at the cut's time or later: a new cut at 1.0
    assert limiter.current_rates() == pytest.approx((peak * BETA,))
    clock.at(1.0 + RECOVERY_SECONDS)
    granted(limiter).finished(success())
    assert limiter.current_rates() == pytest.approx((peak,))
    clock.at(1.0 + RECOVERY_SECONDS + 1)
    granted(limiter).finished(success())
    assert limiter.current_rates() == pytest.approx((peak * (1 + SCALE),))  # beyond the peak
    clock.at(1.0 + RECOVERY_SECONDS + 3)
    granted(limiter).finished(success())
    assert limiter.current_rates() == (100.0,)


def test_the_rate_never_falls_below_the_floor() -> None:
    limiter, clock = make(RateLimit(100), adaptive=True)
    for step in range(100):
        clock.at(step * 1000.0)
        granted(limiter).throttled(None)
    assert limiter.current_rates() == pytest.approx((100 * FLOOR,))


def test_adaptive_per_key() -> None:
    limiter, clock = make(RateLimit(100), RateLimit(10, key=identity), adaptive=True)
    granted(limiter, "a").throttled(None)
    assert limiter.current_rates("a") == pytest.approx((100.0, 10 * BETA))  # only the key is cut
    assert limiter.current_rates("b") == (100.0, 10.0)
    clock.at(0.01)
    granted(limiter, "b")
    assert limiter.current_rates("b") == (100.0, 10.0)


def test_adaptive_success_of_one_key_does_not_recover_another() -> None:
    limiter, clock = make(RateLimit(10, key=identity), adaptive=True)
    granted(limiter, "a").throttled(None)
    clock.at(RECOVERY_SECONDS)
    granted(limiter, "b").finished(success())
    assert limiter.current_rates("a") == pytest.approx((10 * BETA,))


def test_throttled_with_a_pause_also_cuts_an_adaptive_rate() -> None:
    limiter, _ = make(RateLimit(100), adaptive=True)
    granted(limiter).throttled(1.0)
    assert limiter.current_rates() == pytest.approx((100 * BETA,))
    assert wait_of(limiter) == pytest.approx(1.0)


def test_a_non_adaptive_limiter_ignores_throttles() -> None:
    limiter, clock = make(RateLimit(100))
    granted(limiter).throttled(None)
    assert limiter.current_rates() == (100.0,)
    clock.at(0.01)
    assert busy_run(limiter, clock, 2) == pytest.approx([0.01, 0.02], abs=TOLERANCE)


def test_current_rates_of_an_unknown_key_is_the_configured_rate() -> None:
    limiter, _ = make(RateLimit(100), RateLimit(6, "minute", key=identity), adaptive=True)
    assert limiter.current_rates("never seen") == (100.0, 0.1)
    assert limiter.current_rates() == (100.0, 0.1)


def test_a_throttle_never_frees_budget() -> None:
    limiter, _ = make(RateLimit(100, burst=5), adaptive=True)
    reservations = [granted(limiter) for _ in range(5)]
    before = wait_of(limiter)
    assert before == pytest.approx(0.01)
    reservations[0].throttled(None)
    assert wait_of(limiter) >= before - TOLERANCE  # slowing down must not make room sooner


def test_after_a_throttled_pause_an_adaptive_limiter_resumes_without_a_burst() -> None:
    limiter, clock = make(RateLimit(100, burst=5), adaptive=True)
    granted(limiter).throttled(1.0)
    clock.at(1.0)
    granted(limiter)
    (rate,) = limiter.current_rates()
    assert wait_of(limiter) == pytest.approx(1 / rate)  # the steady (cut) rate, no burst


# -- validation ---------------------------------------------------------------------------------


def test_limiter_needs_a_limit() -> None:
    with pytest.raises(ValueError, match="at least one limit"):
        Limiter()


@pytest.mark.parametrize("limit", ["x", None, True, [RateLimit(1)], RateLimit])
def test_limiter_refuses_what_is_no_limit(limit: object) -> None:
    with pytest.raises(TypeError, match="Limiter limits"):
        Limiter(limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -1, NAN, INF])
def test_limiter_refuses_a_bad_number(limit: float) -> None:
    with pytest.raises(ValueError, match="Limiter limit 0"):
        Limiter(limit)


def test_limiter_takes_numbers_and_rate_limits() -> None:
    limiter = Limiter(5, RateLimit(100, "minute"))
    assert limiter.limits == (RateLimit(5.0), RateLimit(100, "minute"))
    assert "RateLimit" in repr(limiter)
    assert "adaptive=True" in repr(Limiter(5, adaptive=True))


@pytest.mark.parametrize("adaptive", ["yes", 1, None])
def test_limiter_adaptive_must_be_a_bool(adaptive: object) -> None:
    with pytest.raises(TypeError, match="adaptive"):
        Limiter(RateLimit(1), adaptive=adaptive)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "error"), [(-1, ValueError), (NAN, ValueError), ("1", TypeError)])
def test_pause_refuses_bad_seconds(seconds: object, error: type[Exception]) -> None:
    limiter, _ = make(RateLimit(1))
    with pytest.raises(error, match="pause"):
        limiter.pause(seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"burst": -1}, ValueError),
        ({"burst": 0}, ValueError),
        ({"burst": 0.5}, ValueError),
        ({"burst": NAN}, ValueError),
        ({"burst": INF}, ValueError),
        ({"burst": "5"}, TypeError),
        ({"burst": True}, TypeError),
        ({"burst": 0, "cost": len}, ValueError),
    ],
)
def test_rate_limit_refuses_a_bad_burst(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="RateLimit burst"):
        RateLimit(10, **kwargs)


def test_rate_limit_allows_a_fractional_burst_with_a_cost() -> None:
    assert RateLimit(10, burst=0.5, cost=len).burst == 0.5


@pytest.mark.parametrize("name", ["cost", "key", "settle"])
@pytest.mark.parametrize("value", [5, "len", [len]])
def test_rate_limit_functions_must_be_callable(name: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"RateLimit {name}"):
        RateLimit(10, **{name: value})


# -- threads (real clock) -----------------------------------------------------------------------


def hammer(limiter: Limiter, cost: Callable[[], object], threads: int = 8, seconds: float = 0.3) -> list:
    """``threads`` threads asking for calls as fast as they are told to for ``seconds``; the
    (grant time, cost) of every grant, on the limiter's clock."""
    grants: list[tuple[float, float]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds
    start = threading.Barrier(threads)

    def work() -> None:
        try:
            start.wait()
            while time.monotonic() < deadline:
                reservation = limiter.request(cost())
                while (wait := reservation.try_acquire()) > 0:
                    if time.monotonic() >= deadline:
                        reservation.cancel()
                        return
                    time.sleep(min(wait, 0.002))
                with lock:
                    grants.append((reservation.granted_at, float(reservation.item or 1)))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    return grants


def test_threads_hammering_one_limiter_never_beat_the_rate() -> None:
    rate = 2000.0
    grants = hammer(Limiter(RateLimit(rate)), lambda: None)
    times = sorted(t for t, _ in grants)
    assert len(times) > 50, "the threads made progress"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / rate - 1e-9
    assert len(times) <= (times[-1] - times[0]) * rate + 1 + 1e-6


def test_threads_with_costs_and_a_burst_never_beat_the_bound() -> None:
    rate, burst = 2000.0, 20.0
    generator = random.Random(11)
    grants = hammer(Limiter(RateLimit(rate, cost=identity, burst=burst)), lambda: generator.randint(1, 5))
    assert len(grants) > 20
    assert_gcra_bound(grants, rate, burst)


def test_pausing_a_key_of_a_limiter_without_keyed_limits_is_an_error() -> None:
    limiter = Limiter(RateLimit(10))
    with pytest.raises(ValueError, match=r"pause\(key='a'\) needs a keyed limit"):
        limiter.pause(1.0, key="a")


def test_a_cost_may_be_any_real_number_type() -> None:
    from fractions import Fraction

    limiter = Limiter(RateLimit(10, cost=lambda item: Fraction(1, 2), burst=1))
    assert limiter.request("x").costs == (0.5,)


def test_a_rate_limit_checks_its_own_functions_for_any_limiter() -> None:
    """``cost_of``, ``key_of`` and ``settled`` are what a plugin's limiter calls, so it
    refuses the same items with the same errors as the built-in one."""
    from pyarallel import ItemResult

    limit = RateLimit(
        100, cost=lambda item: item["tokens"], burst=50, key=lambda item: item["host"], settle=lambda i, r: 3
    )
    item = {"tokens": 20, "host": "a"}
    assert limit.cost_of(item) == 20.0
    assert limit.key_of(item) == "a"
    assert limit.settled(item, ItemResult.success(0, None)) == 3.0
    with pytest.raises(RateLimitCostError, match="burst=50"):
        limit.cost_of({"tokens": 51, "host": "a"})
    with pytest.raises(RateLimitCostError, match="key function"):
        limit.key_of({"tokens": 1})
    plain = RateLimit(10)
    assert (plain.cost_of("x"), plain.key_of("x"), plain.settled("x", ItemResult.success(0, None))) == (
        1.0,
        None,
        1.0,
    )


def test_a_key_budget_made_during_a_pause_of_the_whole_limiter_resumes_without_a_burst() -> None:
    clock = FakeClock()
    limiter = Limiter(RateLimit(10, burst=5, key=lambda item: item))
    limiter._clock = clock
    limiter.pause(2.0)
    limiter.pause(0.5, key="k")  # makes the budget of "k" while everything is paused
    clock.advance(1.0)
    assert limiter.request("k").try_acquire() == pytest.approx(1.0)
    clock.advance(1.0)
    assert limiter.request("k").try_acquire() == 0.0
    assert limiter.request("k").try_acquire() == pytest.approx(0.1)  # one unit, not a burst of 5
    # A key first seen after the pause ended is fresh: its full burst.
    assert [limiter.request("fresh").try_acquire() for _ in range(5)] == [0.0] * 5
