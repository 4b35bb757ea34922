"""Helpers shared by the tests."""

from __future__ import annotations

import time

from pyarallel.contracts import Reservation


def acquire(reservation: Reservation, timeout: float = 10.0) -> float:
    """Ask until granted, sleeping the waits the limiter gives; the ``time.monotonic()`` of
    the grant."""
    deadline = time.monotonic() + timeout
    while (wait := reservation.try_acquire()) > 0:
        assert time.monotonic() < deadline, "not granted in time"
        time.sleep(wait)
    return time.monotonic()


def most_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` in any half-open window ``[t, t + window)``."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - window:
            first += 1
        most = max(most, last - first + 1)
    return most
