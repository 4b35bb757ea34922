"""The hook specifications: every point where a plugin can change what pyarallel does.

A plugin is any object or module with functions decorated ``@pyarallel.hookimpl`` and
named after a hook below. pyarallel's own thread and process executors, its token-bucket
rate limiter and its exponential-backoff retry policy are plugins registered through these
same hooks (see ``pyarallel/_builtin/``), so a third-party plugin can add to them or
replace them. Plugins are found through the ``pyarallel`` entry-point group, or registered
at run time with :func:`pyarallel.register_plugin`.

Factory hooks (``firstresult``) are asked in turn, most recently registered plugin first,
and the first answer that is not ``None`` wins; answer ``None`` for specs you do not
handle. They are called once per run, never per item.

Observer hooks are told what happens; their return values are ignored. When no plugin
implements an observer hook, pyarallel does not call it at all, so observing costs
nothing unless somebody listens. Observer hooks are called from the scheduler's thread
(or event loop) and should return quickly.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from pyarallel._result import ItemResult
from pyarallel.contracts import Backend, RateLimiter, RetryPolicy, RunInfo, RunSummary

hookspec = pluggy.HookspecMarker("pyarallel")
hookimpl = pluggy.HookimplMarker("pyarallel")

# -- factories ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def pyarallel_executor(executor: object, workers: int | None, total: int | None) -> Backend | None:
    """Build the backend that runs one call's tasks.

    Called once at the start of each run with the ``executor=`` argument exactly as the
    user gave it: a name such as ``"thread"`` or ``"process"``, or an object such as a
    ``concurrent.futures.Executor`` or a cluster client. ``workers`` is the user's worker
    count (``None``: the backend chooses). ``total`` is the number of input items when it
    is known up front (else ``None``): a backend need not start more workers than that.
    Return a :class:`~pyarallel.contracts.Backend` if this plugin handles ``executor``,
    else ``None``.
    """


@hookspec
def pyarallel_executor_names() -> Sequence[str]:
    """Return the executor names this plugin's ``pyarallel_executor`` accepts.

    Used to list plugins (:func:`pyarallel.list_plugins`) and to tell a user who asks for
    an unknown name which names exist. Called when the plugin list changes, not per run.
    """
    return ()


@hookspec(firstresult=True)
def pyarallel_rate_limiter(rate_limit: object) -> RateLimiter | None:
    """Build the rate limiter that paces one call, from the ``rate_limit=`` argument.

    Called once per run when ``rate_limit`` is not ``None``; a number has already been
    turned into a :class:`~pyarallel.RateLimit` (calls per second). Return a
    :class:`~pyarallel.contracts.RateLimiter` if this plugin understands ``rate_limit``.
    Returning the same limiter object for several runs makes them share one budget.
    """


@hookspec(firstresult=True)
def pyarallel_retry_policy(retry: object) -> RetryPolicy | None:
    """Build the retry policy for one call, from the ``retry=`` argument.

    Called once per run when ``retry`` is not ``None``. Return a
    :class:`~pyarallel.contracts.RetryPolicy` if this plugin understands ``retry``
    (the built-in plugin understands :class:`~pyarallel.Retry`).
    """


# -- observers ---------------------------------------------------------------------------


@hookspec
def pyarallel_run_start(run: RunInfo) -> None:
    """A run is about to take its first item. ``run`` describes it."""


@hookspec
def pyarallel_item_retry(run: RunInfo, index: int, attempt: int, error: BaseException, delay: float) -> None:
    """Attempt number ``attempt`` of item ``index`` failed with ``error``; the item will
    be tried again after ``delay`` seconds."""


@hookspec
def pyarallel_item_result(run: RunInfo, result: ItemResult[object], done: int, seen: int) -> None:
    """An item reached its final result (success, or failure after its last attempt).

    ``done`` items of the ``seen`` taken from the input so far have finished, counting
    this one; ``run.total`` is the final total when it is known.
    """


@hookspec
def pyarallel_run_end(run: RunInfo, summary: RunSummary) -> None:
    """A run ended, normally or not; ``summary`` says how. Called exactly once per
    ``pyarallel_run_start``."""
