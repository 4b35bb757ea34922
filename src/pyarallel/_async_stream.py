"""``AsyncResultStream``: what ``async_parallel_iter`` and ``@async_parallel``'s ``.stream``
return."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from types import TracebackType
from typing import Generic, TypeVar

from pyarallel._result import ItemResult

__all__ = ["AsyncResultStream"]

R = TypeVar("R")


class AsyncResultStream(AsyncIterator[ItemResult[R]], Generic[R]):
    """The results of an async run, one ``ItemResult`` per item in completion order.

    Use it as an async context manager, so that leaving the block, however it is left,
    ends the run: every coroutine still running is cancelled and awaited, and the input is
    not pulled again::

        async with async_parallel_iter(fetch, urls) as results:
            async for item in results:
                ...

    ``aclose()`` does the same at any point. A stream dropped without either is closed
    by the event loop once it is garbage-collected, or when ``asyncio.run`` ends; until
    then, the coroutines it had started keep running. The run starts at the first
    ``async for`` step (entering the ``async with`` block starts nothing).
    """

    __slots__ = ("_results",)

    def __init__(self, results: AsyncGenerator[ItemResult[R], None]) -> None:
        self._results = results

    def __aiter__(self) -> AsyncResultStream[R]:
        return self

    def __anext__(self) -> Awaitable[ItemResult[R]]:
        return self._results.__anext__()

    async def aclose(self) -> None:
        """End the run: cancel and await every coroutine it started (idempotent)."""
        await self._results.aclose()

    async def __aenter__(self) -> AsyncResultStream[R]:
        return self

    async def __aexit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncResultStream {self._results!r}>"
