"""The function the scheduler sends to a backend: it runs the user's function on one
task's items and returns one outcome per item, so a failing item never hides the others.

It runs wherever the backend puts it (a thread, another process, another machine), so it
imports nothing heavy and returns only picklable values.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Outcome", "RemoteTraceback", "TaskReport", "run_task"]

# (True, value) for a success, (False, exception) for a failure.
Outcome = tuple[bool, Any]
# One outcome per item, and the seconds the task took where it ran.
TaskReport = tuple[list[Outcome], float]


def run_task(fn: Callable[..., Any], star: bool, payloads: Sequence[Any], origin_pid: int) -> TaskReport:
    """Call ``fn`` on each payload (``fn(*payload)`` when ``star``) and collect outcomes.

    ``origin_pid`` is the scheduler's process id: in any other process a failure's
    traceback would be lost on the way back, so it travels along as text. The task's own
    duration, measured where it runs, lets the scheduler size the next tasks.
    """
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    for payload in payloads:
        try:
            value = fn(*payload) if star else fn(payload)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # SystemExit too: it fails its own item only
            if os.getpid() != origin_pid:
                error = _with_remote_traceback(error)  # type: ignore[assignment]
            outcomes.append((False, error))
        else:
            outcomes.append((True, value))
    return outcomes, time.perf_counter() - started


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in another process; it is
    set as that exception's ``__cause__`` so it prints under the error."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class _RemoteFailure:
    """Pickles as the exception itself with its traceback text attached as ``__cause__``."""

    def __init__(self, error: BaseException, text: str) -> None:
        self.error = error
        self.text = text

    def __reduce__(self) -> tuple[object, ...]:
        return (_attach_traceback, (self.error, self.text))


def _with_remote_traceback(error: BaseException) -> _RemoteFailure:
    text = "".join(traceback.format_exception(error))
    return _RemoteFailure(error, f'\n"""\n{text}"""')


def _attach_traceback(error: BaseException, text: str) -> BaseException:
    error.__cause__ = RemoteTraceback(text)
    return error
