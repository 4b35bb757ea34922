"""Built-in plugin: the ``"inline"`` executor, which ``sequential=True`` selects.

Every task runs in the thread driving the run, at once, inside ``submit``: the user's
function is called from the caller's own stack, so exceptions carry their real
tracebacks, ``breakpoint()`` and debuggers work, and thread-local state is the caller's.
Everything else (retry, rate limit, the total timeout between items, progress, observers,
checkpoints) is the scheduler's and behaves as on any executor. ``task_timeout`` cannot
stop an inline call: an attempt that ran longer fails with ``TaskTimeoutError`` once it
returns. Ctrl-C interrupts the call at once, as it would a plain loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from pyarallel.contracts import Capabilities
from pyarallel.hookspecs import hookimpl

T = TypeVar("T")

NAME = "inline"


class InlineBackend:
    """Runs each task in the calling thread, during ``submit``."""

    name = NAME
    capacity = 1
    # Group tiny items so the scheduler's per-task cost is shared, as on threads.
    capabilities = Capabilities(task_seconds=0.002, in_caller_process=True, synchronous=True)

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:  # the task function reports items' own failures
            future.set_exception(error)
        return future

    def until_ready(self) -> None:
        return None

    def close(self, *, abort: bool) -> None:
        pass


@hookimpl
def pyarallel_executor_names() -> Sequence[str]:
    return (NAME,)


@hookimpl
def pyarallel_executor(executor: object) -> InlineBackend | None:
    return InlineBackend() if executor == NAME else None
