"""Stopping a run gracefully: a ``StopToken`` the caller, another thread or a signal
handler triggers, and ``stop_on_signals``, which turns the first Ctrl-C (or SIGTERM) of a
block into a graceful stop."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["StopToken", "stop_on_signals"]


class StopToken:
    """A request to stop, shared by every run given it as ``stop=``.

    Once :meth:`stop` is called, a run given this token takes no more items: items not
    started yet end as :class:`~pyarallel.ItemCancelledError` failures (no retry is
    started either), items already running finish (chunks running in this process stop
    between items), and the call returns its partial result with ``status``
    ``RunStatus.CANCELLED`` (a stream ends after the last result). A run started with a
    token already stopped does not start any item.

    ``stop()`` may be called from any thread, and from a signal handler. A token cannot
    be reset: use a new one for the next job.
    """

    __slots__ = ("_event", "_wakers")

    def __init__(self) -> None:
        self._event = threading.Event()
        # Callables that wake a run waiting for its tasks (appending to and removing from
        # a list is atomic, so no lock is held that a signal handler could wait for).
        self._wakers: list[Callable[[], object]] = []

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` has been called."""
        return self._event.is_set()

    def stop(self) -> None:
        """Ask every run given this token to stop gracefully (idempotent)."""
        if self._event.is_set():
            return
        self._event.set()
        for wake in list(self._wakers):
            wake()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the token is stopped or ``timeout`` seconds have passed; return
        ``stopped``."""
        return self._event.wait(timeout)

    def subscribe(self, wake: Callable[[], object]) -> Callable[[], None]:
        """Call ``wake()`` (from whichever thread stops the token) when it is stopped;
        return a function that cancels that. For drivers waiting on something else."""
        self._wakers.append(wake)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._wakers.remove(wake)

        return unsubscribe

    def __repr__(self) -> str:
        return f"StopToken(stopped={self.stopped})"


_DEFAULT_SIGNALS = ("SIGINT", "SIGTERM")


@contextlib.contextmanager
def stop_on_signals(
    token: StopToken | None = None, signals: tuple[int, ...] | None = None
) -> Iterator[StopToken]:
    """Within the block, the first SIGINT (Ctrl-C) or SIGTERM stops ``token`` (a new one
    if ``None``, given by ``as``) gracefully; a second one does what it would have done
    without the block (SIGINT raises ``KeyboardInterrupt`` at once). The previous handlers
    are restored when the block ends. Pass the token as ``stop=`` to the calls in the
    block::

        with stop_on_signals() as stop:
            result = parallel_map(fetch, urls, stop=stop)
        if result.status is RunStatus.CANCELLED: ...

    ``signals`` defaults to SIGINT and SIGTERM (those the platform has). Signal handlers
    can only be installed from the main thread: elsewhere this raises ``ValueError``.
    """
    if token is None:
        token = StopToken()
    elif not isinstance(token, StopToken):
        raise TypeError(f"token must be a StopToken or None; got {token!r}")
    numbers = _signal_numbers(signals)
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("stop_on_signals() must be used in the main thread: only it can handle signals")
    previous: dict[int, object] = {}

    def handle(number: int, frame: FrameType | None) -> None:
        if not token.stopped:
            token.stop()
            return
        _restore(previous)  # the second signal: what it would have done without the block
        handler = previous.get(number)
        if callable(handler):
            handler(number, frame)
        elif handler != signal.SIG_IGN:
            signal.raise_signal(number)

    for number in numbers:
        previous[number] = signal.signal(number, handle)
    try:
        yield token
    finally:
        _restore(previous)


def _signal_numbers(signals: tuple[int, ...] | None) -> list[int]:
    if signals is None:
        return [getattr(signal, name) for name in _DEFAULT_SIGNALS if hasattr(signal, name)]
    try:
        numbers = [signal.Signals(number) for number in signals]
    except (TypeError, ValueError):
        raise ValueError(
            f"signals must be a tuple of signal numbers (signal.SIGINT...); got {signals!r}"
        ) from None
    return [int(number) for number in numbers]


def _restore(previous: dict[int, object]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)  # type: ignore[arg-type]
