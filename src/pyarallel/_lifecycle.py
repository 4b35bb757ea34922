"""Warming pools up before the first call, and releasing what pyarallel keeps warm."""

from __future__ import annotations

from pyarallel import _plugins
from pyarallel._options import check_count, check_timeout

__all__ = ["shutdown", "warm_up"]


def warm_up(executor: str = "process", *, workers: int | None = None, timeout: float | None = None) -> None:
    """Start the workers of ``executor`` now and keep them warm, so that the next call
    with the same ``executor`` and ``workers`` starts its first item at once (a service's
    start-up, a benchmark's set-up). Returns once every worker is up, or after
    ``timeout`` seconds (``TimeoutError``). The workers stay warm until they have been
    idle for a while, or until :func:`shutdown`.
    """
    from pyarallel._plan import RunOptions, start_backend

    check_count("workers", workers)
    seconds = check_timeout("timeout", timeout)
    RunOptions(executor=executor, workers=workers).check_executor_name()
    backend = start_backend(executor, workers)
    try:
        ready = backend.until_ready()
        if ready is not None:
            try:
                ready.result(timeout=seconds)
            except TimeoutError:
                call = f"warm_up({executor!r}, workers={workers!r})"
                raise TimeoutError(f"{call}: the workers were not up within {seconds:g} s") from None
    except BaseException:
        backend.close(abort=True)
        raise
    backend.close(abort=False)


def shutdown() -> None:
    """Stop every pool of workers pyarallel keeps warm between calls (threads, processes,
    a cluster a plugin started), waiting until they have stopped: for services and tests
    that want a clean process. Calls made afterwards start new workers."""
    _plugins.plugin_manager().hook.pyarallel_shutdown()
