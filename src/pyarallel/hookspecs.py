"""The hook specifications: every point where a plugin can change what pyarallel does.

pyarallel's own thread and process executors, its rate limiter (``Limiter``) and its
exponential-backoff retry policy are plugins registered through these same hooks (see
``pyarallel/_builtin/``), so a third-party plugin can add to them or replace them. The
objects a factory hook returns must satisfy the protocols in :mod:`pyarallel.contracts`.

Rules for plugin authors
========================

Every rule below is enforced or relied on by pyarallel; a plugin that breaks one either
is refused when it is registered or misbehaves at run time.

**What a plugin is.** Any module, class or instance with functions decorated
``@pyarallel.hookimpl`` (this module's ``hookimpl``). Only decorated functions are hook
implementations: an undecorated function is ignored, even one named like a hook.

**Hook names are checked.** Each ``@hookimpl`` function must be named after a hook below
(or name one with ``@hookimpl(specname=...)``). A plugin with a ``@hookimpl`` function
that matches no hook (``pyarallel_item_reslt``) is refused at registration:
:func:`pyarallel.register_plugin` unregisters it again and raises
``pyarallel._plugins.UnknownHookError`` (a ``pluggy.PluginValidationError``) naming the
plugin and the hook and suggesting the closest hook name. ``@hookimpl(optionalhook=True)``
exempts a function, for hooks that another plugin adds with ``add_hookspecs``.

**Arguments are passed by keyword.** A hook implementation's parameters must be named
exactly like the hook's; it may accept any subset of them (so a hook can gain arguments
without breaking it). A parameter the hook does not have is refused at registration with
``pluggy.PluginValidationError``.

**Order.** Implementations are asked most recently registered first: run-time
registrations before installed plugins, installed plugins before the built-ins.
``@hookimpl(tryfirst=True)`` and ``@hookimpl(trylast=True)`` override that order.

**Factory hooks** (``pyarallel_executor``, ``pyarallel_rate_limiter``,
``pyarallel_retry_policy``) are ``firstresult``: the first answer that is not ``None``
wins and the remaining implementations are not asked. Answer ``None`` for every value you
do not handle, never raise for it: an exception propagates to the user's call (before
any work starts) and no other plugin is asked. Each is asked at most once per call of
``parallel_map`` & co. (only when its option is given), never per item; the rate-limiter
and retry-policy hooks, and the executor hook for an executor object, are also asked
when ``@parallel`` or ``@async_parallel`` validates its default options.

**Executor names.** An executor plugin whose ``pyarallel_executor`` accepts names (strings)
must list them in ``pyarallel_executor_names``. A string ``executor=`` that no plugin
lists is refused with ``ValueError`` while the options are validated, before any work
starts, with a message listing the known names; ``pyarallel_executor`` is then never
asked for it.

**Per-run observers.** ``pyarallel_run_observers`` is asked once as each run starts and
returns the :class:`~pyarallel.contracts.RunObserver` objects that watch that run alone
(pyarallel's progress bar, its log and its statistics are such observers): they hear of
everything the observer hooks below hear of, plus lost workers and waits, in batches
cheap enough for any run, and they never see another run in the same process.

**Observer hooks** (``pyarallel_run_start``, ``pyarallel_item_retry``,
``pyarallel_item_result``, ``pyarallel_run_end``) are told what happens to every run; every
implementation is called and return values are ignored. They are called in the thread
driving the run (the one that called ``parallel_map`` or iterates ``parallel_iter``; for
the async API, the event loop's thread), and the run waits for them: return quickly. They
must not raise: an exception propagates to the user's call and the remaining
implementations of that call are skipped (see each hook for what happens to the run).
When no plugin implements an observer hook, pyarallel does not call it at all; which
observer hooks have implementations is looked up once when a run starts.

**Threads.** Several runs may proceed at once in different threads (or event loops), so
every hook may be called from several threads at the same time; a plugin that keeps state
across calls must protect it.

**Registration.** Plugins are found through the ``pyarallel`` entry-point group (registered
under the entry point's name when the plugin manager is built, on first use), or
registered at run time with :func:`pyarallel.register_plugin`. An entry point that
cannot be imported or registered (an import error, an unknown hook, a bad signature) is
skipped with a ``pyarallel._plugins.PluginLoadWarning`` naming it and its distribution,
and listed by ``pyarallel._plugins.plugin_load_errors()``; pyarallel keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence

import pluggy

from pyarallel._result import ItemResult
from pyarallel.contracts import (
    Backend,
    BackendOptions,
    CheckpointStore,
    RateLimiter,
    RetryPolicy,
    RunInfo,
    RunObserver,
    RunSummary,
)

hookspec = pluggy.HookspecMarker("pyarallel")
hookimpl = pluggy.HookimplMarker("pyarallel")

# -- factories ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def pyarallel_executor(
    executor: object, workers: int | None, total: int | None, options: BackendOptions
) -> Backend | None:
    """Build the backend that runs one call's tasks.

    :param executor: The ``executor=`` argument exactly as the user gave it: a name such
        as ``"thread"`` or ``"process"``, or an object such as a
        ``concurrent.futures.Executor`` or a cluster client.
    :param workers: The user's worker count, or ``None``: the backend chooses.
    :param total: The number of input items when it is known up front, else ``None``; a
        backend need not start more workers than that.
    :param options: The call's worker options (``task_timeout``,
        ``max_tasks_per_worker``; see :class:`~pyarallel.contracts.BackendOptions`), for
        a backend whose :class:`~pyarallel.contracts.Capabilities` say it honours them.
        A backend that declares neither capability may ignore them (and leave the
        parameter out): the scheduler enforces ``task_timeout`` itself, and refuses
        ``max_tasks_per_worker`` for a backend that cannot recycle its workers.
    :returns: A new :class:`~pyarallel.contracts.Backend` for this one run if this plugin
        handles ``executor``, else ``None``. If no plugin answers, the user gets
        ``TypeError``.

    When: once per run. For a **name**, when the run starts (for ``parallel_iter``, at the
    first ``next()``), and only for names some ``pyarallel_executor_names`` lists (a name
    this plugin accepts but does not list never reaches it). For an **object**, while the
    options are validated, before the input is read; the backend built then is the one the
    run uses. When ``@parallel(executor=obj)`` validates its defaults, a backend is built
    and closed at once with ``close(abort=False)``: build backends cheaply and start
    resources lazily. The async API has no executor and never calls this hook.

    Thread: the thread that calls ``parallel_map`` & co. (or applies ``@parallel``), or,
    for a name under ``parallel_iter``, the one that first iterates it. The backend is
    then used from the thread driving the run; its ``close`` is called once when the run
    ends, however it ends.
    """


@hookspec
def pyarallel_executor_names() -> Sequence[str]:
    """List the executor names this plugin's ``pyarallel_executor`` accepts.

    :returns: The names (strings), or an empty sequence. Every implementation is called
        (this is not a ``firstresult`` hook) and the answers are combined.

    A string ``executor=`` that no implementation lists is refused with ``ValueError``
    during validation, before any work starts, even if some ``pyarallel_executor`` would
    accept it: **a plugin that accepts names must implement both hooks.** The names also
    appear in :func:`pyarallel.list_plugins` and in the error message for an unknown
    name.

    When: the answers are cached, and implementations are called again only when the set
    of registered implementations of this hook changes, so the answer must not change
    while the plugin is registered. Thread: whichever thread validates a call with a
    string ``executor=``, lists the plugins, or builds such an error message.
    """
    return ()


@hookspec(firstresult=True)
def pyarallel_rate_limiter(rate_limit: object) -> RateLimiter | None:
    """Build the rate limiter that paces one call, from the ``rate_limit=`` argument.

    :param rate_limit: The ``rate_limit=`` argument; a number has already been turned into
        a :class:`~pyarallel.RateLimit` (calls per second). Never ``None``. The built-in
        plugins answer a ``RateLimit`` with a new :class:`~pyarallel.Limiter`, private to
        the call, and a ``RateLimiter`` object (a shared ``Limiter``, say) with that very
        object.
    :returns: A :class:`~pyarallel.contracts.RateLimiter` if this plugin understands
        ``rate_limit``, else ``None``. If no plugin answers, the user gets ``TypeError``.
        Returning the same limiter object for several calls makes them share one budget,
        so a limiter must be safe to use from several threads at once.

    When: once per call whose ``rate_limit`` is not ``None``, while its options are
    validated (before any work starts), and once when a decorator validates its defaults.
    Thread: the thread that makes the call or applies the decorator (for the async API,
    the one running the event loop, or the one calling ``async_parallel_iter``). The
    limiter's ``request(item)``, and the methods of the reservations it returns, are
    later called in the thread driving the run, once per attempt.
    """


@hookspec(firstresult=True)
def pyarallel_retry_policy(retry: object) -> RetryPolicy | None:
    """Build the retry policy for one call, from the ``retry=`` argument.

    :param retry: The ``retry=`` argument as given (the built-in plugin understands
        :class:`~pyarallel.Retry`); never ``None``.
    :returns: A :class:`~pyarallel.contracts.RetryPolicy` if this plugin understands
        ``retry``, else ``None``. If no plugin answers, the user gets ``TypeError``.

    When: once per call whose ``retry`` is not ``None``, while its options are validated
    (before any work starts), and once when a decorator validates its defaults. Thread:
    as for ``pyarallel_rate_limiter``. The policy's ``decide`` is later called in the
    thread driving the run.
    """


@hookspec(firstresult=True)
def pyarallel_checkpoint_store(checkpoint: object) -> CheckpointStore | None:
    """Build the store that records one call's finished items, from ``checkpoint=``.

    :param checkpoint: The ``checkpoint=`` argument as given (never ``None``): the
        built-in plugin understands a path (``str`` or ``os.PathLike``) and a
        :class:`~pyarallel.Checkpoint`, and opens a SQLite file. A store object (one
        fulfilling :class:`~pyarallel.contracts.CheckpointStore`) is used as it is.
    :returns: A :class:`~pyarallel.contracts.CheckpointStore` if this plugin understands
        ``checkpoint``, else ``None``. If no plugin answers, the user gets ``TypeError``.

    When: once per call whose ``checkpoint`` is not ``None``, while its options are
    validated (before any work starts; a path in a missing directory is refused then).
    The store is opened when the run starts. Thread: as for ``pyarallel_rate_limiter``.
    """


@hookspec
def pyarallel_shutdown() -> None:
    """Release whatever this plugin keeps warm between calls (pools of worker threads or
    processes, a cluster it started), waiting for it to stop. Every implementation is
    called. Runs still in progress are not affected beyond losing those resources; the
    next call starts them again.

    When: on :func:`pyarallel.shutdown` (for services and tests that want a clean state),
    never by pyarallel itself. Thread: the caller's.
    """


# -- observers ---------------------------------------------------------------------------


@hookspec
def pyarallel_run_observers(run: RunInfo) -> RunObserver | Sequence[RunObserver] | None:
    """The observers that watch ``run``, and only it.

    :param run: Describes the run (its ``options`` hold ``progress`` and the other options
        as given); the same object every observer of the run receives.
    :return: A :class:`~pyarallel.contracts.RunObserver`, a sequence of them, or ``None``
        for a run you do not watch. Anything else is refused with ``TypeError``.

    When: once per run, as it starts, before any observer's ``run_start`` and before
    ``pyarallel_run_start`` (this is not a ``firstresult`` hook: every answer is used, the
    observers of later-registered plugins first, pyarallel's own statistics before all).
    Thread: the thread driving the run (for the async API, the event loop's). If an
    implementation raises, the exception propagates to the user's call and the run does
    not start. A plugin answers for the runs it is asked to watch (``progress=`` is read
    by pyarallel's built-in progress plugin from ``run.options["progress"]``), or for every
    run (a metrics exporter): observers cost nothing per item unless they override
    ``item_result``.
    """


@hookspec
def pyarallel_run_start(run: RunInfo) -> None:
    """A run is about to take its first item.

    :param run: Describes the run; the same object is passed to every observer hook of
        this run.

    When: once per run, after its backend is built and before the first item is taken
    from the input (for ``parallel_iter`` and ``async_parallel_iter``, at the first
    iteration). Thread: the thread driving the run (for the async API, the event loop's).
    If an implementation raises, the exception propagates to the user's call, the run
    does not start, and ``pyarallel_run_end`` is not called for it.
    """


@hookspec
def pyarallel_item_retry(run: RunInfo, index: int, attempt: int, error: BaseException, delay: float) -> None:
    """An attempt of an item failed, and the retry policy asked for another one.

    :param run: The run, as given to ``pyarallel_run_start``.
    :param index: The item's position in the input, from 0.
    :param attempt: The number of the attempt that failed, from 1.
    :param error: The exception that attempt raised.
    :param delay: The seconds the item will wait before it is tried again.

    When: once per retry scheduled, as the failure is handled. Thread: the thread driving
    the run (for the async API, the event loop's). If an implementation raises, the
    exception propagates to the user's call, the run is aborted, and
    ``pyarallel_run_end`` receives the outcome ``"error"`` with that exception.
    """


@hookspec
def pyarallel_item_result(run: RunInfo, result: ItemResult[object], done: int, seen: int) -> None:
    """An item reached its final result: success, failure after its last attempt, or
    timeout.

    :param run: The run, as given to ``pyarallel_run_start``.
    :param result: The item's :class:`~pyarallel.ItemResult` (its ``index``, and its value
        or its error).
    :param done: How many items have finished so far, counting this one.
    :param seen: How many items have been taken from the input so far; ``run.total`` is
        the final total when it is known.

    When: at most once per item, as it finishes (in completion order); for every item when
    the run completes or times out (at the timeout, every unfinished item fails with
    ``ItemTimeoutError``), but not for the items left unfinished by an interrupted run.
    Thread: the thread driving the run (for the async API, the event loop's). If an
    implementation raises, the exception propagates to the user's call, the run is
    aborted, and ``pyarallel_run_end`` receives the outcome ``"error"`` with that
    exception.
    """


@hookspec
def pyarallel_run_end(run: RunInfo, summary: RunSummary) -> None:
    """A run ended, normally or not.

    :param run: The run, as given to ``pyarallel_run_start``.
    :param summary: How it ended (``outcome``, counts, duration, and the ``error`` that
        escaped, if any).

    When: exactly once per run whose ``pyarallel_run_start`` returned, however it ended
    (normally, on its timeout, interrupted, or with an exception escaping: see
    ``summary.outcome``), after its backend has been closed. Thread: the thread driving
    the run (for the async API, the event loop's; for a stream closed early, the thread
    that closed it). If an implementation raises, the exception propagates to the user's
    call in place of its result (or of the exception that ended the run).
    """
