"""Chunks that run in the scheduler's own process, handed out one item at a time, so the
items of a chunk stuck behind an unexpectedly slow one can be taken back."""

from __future__ import annotations

from pyarallel._scheduling.items import Task
from pyarallel._tasks import ChunkClaim

__all__ = ["Reclaimer"]


class Reclaimer:
    """Keeps a ``ChunkClaim`` and a deadline for every chunk in flight; a chunk still
    running at its deadline (``stall_seconds`` after it was submitted, far longer than
    planned) is *stalled*."""

    def __init__(self, stall_seconds: float) -> None:
        self._stall_seconds = stall_seconds
        self._claims: dict[Task, tuple[ChunkClaim, float]] = {}  # task -> claim, deadline
        self._reported: dict[Task, int] = {}  # task -> items settled when it was reclaimed

    def watch(self, task: Task, now: float) -> None:
        """``task`` (a chunk) is being submitted now."""
        self._claims[task] = (ChunkClaim(len(task)), now + self._stall_seconds)

    def claim(self, task: Task) -> ChunkClaim | None:
        """The claim through which ``task`` takes its items, if it is watched."""
        entry = self._claims.get(task)
        return None if entry is None else entry[0]

    def stalled(self, now: float) -> list[tuple[Task, ChunkClaim]]:
        """The chunks whose deadline has passed; they are watched no more."""
        stalled = [(task, claim) for task, (claim, deadline) in self._claims.items() if deadline <= now]
        for task, _ in stalled:
            del self._claims[task]
        return stalled

    def reclaimed(self, task: Task, settled: int) -> None:
        """The first ``settled`` outcomes of ``task`` were settled when it was reclaimed."""
        self._reported[task] = settled

    def finished(self, task: Task) -> int:
        """``task`` finished: how many of its first outcomes were settled already."""
        self._claims.pop(task, None)
        return self._reported.pop(task, 0)

    @property
    def next_deadline(self) -> float | None:
        """The earliest moment a watched chunk becomes stalled."""
        return min((deadline for _, deadline in self._claims.values()), default=None)

    def stop(self) -> None:
        """The run is ending early: chunks in flight start no further item."""
        for claim, _ in self._claims.values():
            claim.revoke()
        self._claims.clear()
