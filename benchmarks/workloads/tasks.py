"""The functions the workloads map over.

They live in their own small module so that worker processes (forked, or spawned by loky)
import them by reference cheaply: this module imports nothing but ``time``.
"""

from __future__ import annotations

import time

__all__ = ["Lookup", "burn", "increment", "nap", "pause", "square"]


def increment(x: int) -> int:
    """W1, W6: the trivial item."""
    return x + 1


def square(x: int) -> int:
    """W3: the tiny CPU item."""
    return x * x


def pause(seconds: float) -> float:
    """W2: the I/O-like item."""
    time.sleep(seconds)
    return seconds


def burn(loops: int) -> int:
    """W4: pure-Python CPU work, about ``loops`` times a few tens of nanoseconds."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def nap(x: int) -> int:
    """Warm-up item: long enough that every worker of a pool picks one up."""
    time.sleep(0.02)
    return x


class Lookup:
    """W8: an item function that carries a large table (a model, a vocabulary), so that
    sending the function is the cost: each call pauses ``item_s`` and reads the table."""

    def __init__(self, size: int, item_s: float) -> None:
        self.table = list(range(size))
        self.item_s = item_s

    def __call__(self, x: int) -> int:
        time.sleep(self.item_s)
        return self.table[x % len(self.table)] + len(self.table)
