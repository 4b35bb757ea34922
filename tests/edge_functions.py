"""Module-level functions for the edge-case tests (test_pickling_edges, test_lying_inputs,
test_async_parity, test_api_edges).

They live in a module of their own, importable by name, because a spawn-context
``ProcessPoolExecutor`` worker imports the module a pickled function names: ``tests`` is
not a package, and pytest puts this directory on ``sys.path`` (which spawned workers
inherit), so the name is ``edge_functions``.
"""

from __future__ import annotations

from typing import Any

from pyarallel import ItemResult, async_parallel, parallel, parallel_iter


@parallel
def double(x: int) -> int:
    return 2 * x


@parallel(workers=2)
def add(x: int, y: int) -> int:
    return x + y


@async_parallel
async def adouble(x: int) -> int:
    return 2 * x


def plain_double(x: int) -> int:
    return 2 * x


def identity(x: Any) -> Any:
    return x


class Svc:
    """A class with every way ``@parallel`` (and ``@async_parallel``) can sit on a method."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    @parallel
    def scale(self, x: int) -> int:
        return self.factor * x

    @parallel
    @classmethod
    def cm(cls, x: int) -> tuple[str, int]:
        return (cls.__name__, x)

    @staticmethod
    @parallel
    def st_over(x: int) -> int:  # @staticmethod over @parallel
        return x + 100

    @parallel
    @staticmethod
    def st_under(x: int) -> int:  # @parallel over @staticmethod
        return x + 200

    @async_parallel
    async def ascale(self, x: int) -> int:
        return self.factor * x


def item_result_from_parallel_iter(x: int) -> ItemResult[int]:
    """Made in a worker process, sent back as the task's result."""
    return next(iter(parallel_iter(plain_double, [x])))


def failed_item_result_from_parallel_iter(message: str) -> ItemResult[Any]:
    return next(iter(parallel_iter(raise_value_error, [message])))


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def describe_item_result(result: ItemResult[Any]) -> tuple[int, bool, Any, str | None]:
    """Received in a worker process as the task's argument."""
    error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
    return (result.index, result.ok, result.value, error)
