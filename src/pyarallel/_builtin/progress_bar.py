"""Built-in plugin: the progress bar that ``progress=`` draws for one run.

``progress=True`` draws a ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal,
nothing when stderr is not a terminal, so logs and pipes stay clean); a tqdm-compatible
bar object is drawn on as it is, and a factory is called as ``factory(total=..., desc=...)``
for each run. The bar shows items finished, the rate and the ETA; the total is the input's
length when known, else the items read so far; failures and retries appear in its postfix;
however the run ends, the bar is brought up to date and closed.

The bar is updated at most every ``REFRESH_SECONDS`` (and once at the end), never per item,
so it costs the run almost nothing. tqdm is imported only when a run asks for a bar.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

from pyarallel._errors import ItemAbortedError, ItemCancelledError, ItemTimeoutError
from pyarallel._options import is_progress_bar as _is_bar
from pyarallel.contracts import FinishedItems, RunInfo, RunObserver, RunSummary
from pyarallel.hookspecs import hookimpl

__all__ = ["REFRESH_SECONDS", "ProgressBar", "ProgressBarObserver", "pyarallel_run_observers"]

REFRESH_SECONDS = 0.1
"""The shortest time between two updates of a bar."""


class ProgressBar(Protocol):
    """What ``progress=`` draws on: a tqdm-compatible bar, of which pyarallel uses only
    ``update`` and ``close``, plus ``total``, ``set_postfix`` and ``refresh`` when the bar
    has them."""

    def update(self, n: int = 1) -> object:
        """``n`` more items finished."""
        ...

    def close(self) -> object:
        """The run ended: draw the final state and release the bar."""
        ...


@hookimpl
def pyarallel_run_observers(run: RunInfo) -> RunObserver | None:
    """A bar for a run given ``progress=``; ``None`` for the others."""
    progress = run.options.get("progress")
    if progress is None or progress is False:
        return None
    return ProgressBarObserver(progress)


class ProgressBarObserver(RunObserver):
    """Draws one run's progress on a bar (see the module's docstring)."""

    def __init__(self, progress: object) -> None:
        self._progress = progress
        self._bar: Any = None
        self._unsized = True
        self._pending = 0  # items finished and not yet given to the bar
        self._seen = 0  # items read from the input (the total of an unsized one)
        self._failed = 0
        self._retries = 0
        self._shown = (0, 0)  # the (failed, retries) the postfix shows
        self._next_refresh = 0.0

    def run_start(self, run: RunInfo) -> None:
        self._unsized = run.total is None
        self._bar = self._make_bar(run)
        if (
            run.total is not None
            and getattr(self._bar, "total", None) is None
            and hasattr(self._bar, "total")
        ):
            self._bar.total = run.total
        self._next_refresh = time.monotonic() + REFRESH_SECONDS

    def _make_bar(self, run: RunInfo) -> Any:
        progress = self._progress
        if progress is True:
            return _tqdm_bar(run.total, run.function)
        if _is_bar(progress):
            return progress
        return progress(total=run.total, desc=run.function)  # type: ignore[operator]

    def items_finished(self, run: RunInfo, finished: FinishedItems, done: int, seen: int) -> None:
        # Items the run ended without running them to a result (its timeout, max_errors, a
        # stop) are no progress: the bar shows what finished, and the status says why the
        # rest did not.
        ended = (
            sum(isinstance(result.error, _ENDED_EARLY) for result in finished.failures())
            if finished.failed
            else 0
        )
        self._pending += len(finished) - ended
        self._failed += finished.failed - ended
        self._seen = max(self._seen, seen)
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + REFRESH_SECONDS
            self._draw(seen)

    def item_retry(self, run: RunInfo, index: int, attempt: int, error: BaseException, delay: float) -> None:
        self._retries += 1

    def run_end(self, run: RunInfo, summary: RunSummary) -> None:
        bar = self._bar
        if bar is None:
            return
        finished = summary.succeeded + summary.failed
        self._draw(max(self._seen, finished) if self._unsized else None, final=summary.outcome)
        self._bar = None
        bar.close()

    def _draw(self, seen: int | None, final: str | None = None) -> None:
        """Give the bar the items finished since the last draw, the total read so far
        (unsized input), and the failures and retries when they changed."""
        bar = self._bar
        if self._unsized and seen is not None and hasattr(bar, "total"):
            bar.total = seen
        postfix: dict[str, object] = {}
        if (self._failed, self._retries) != self._shown or (final is not None and final != "completed"):
            self._shown = (self._failed, self._retries)
            if self._failed:
                postfix["failed"] = self._failed
            if self._retries:
                postfix["retries"] = self._retries
            if final is not None and final != "completed":
                postfix["status"] = final.replace("_", " ")
            set_postfix = getattr(bar, "set_postfix", None)
            if set_postfix is not None:
                set_postfix(postfix, refresh=False)
        pending, self._pending = self._pending, 0
        if pending:
            bar.update(pending)
        elif postfix or final is not None:
            refresh = getattr(bar, "refresh", None)
            if refresh is not None:
                refresh()


_ENDED_EARLY = (ItemTimeoutError, ItemAbortedError, ItemCancelledError)


def _tqdm_bar(total: int | None, description: str) -> Any:
    """A ``tqdm.auto`` bar: a widget in Jupyter; in a terminal, text on stderr; nothing
    when stderr is not a terminal."""
    from tqdm import autonotebook
    from tqdm.auto import tqdm  # first: it silences autonotebook's warning in notebooks

    notebook = autonotebook.tqdm.__module__ == "tqdm.notebook"
    quiet = not notebook and not _is_terminal(sys.stderr)
    return tqdm(total=total, desc=description, unit="item", dynamic_ncols=True, disable=quiet)


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False
