"""From the options a user passes to a plan the scheduler can run.

``RunOptions`` holds the options as given (the decorator keeps one as its defaults);
``make_plan`` validates everything, before any work starts, and resolves the plugins that
will serve the run (once per run, never per item).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any, TypedDict

from pyarallel import _plugins
from pyarallel._options import (
    ProgressCallback,
    RateLimit,
    check_coroutine_function,
    check_count,
    check_iterable,
    check_optional_callable,
    check_positive_number,
    check_progress,
    check_sync_function,
    check_timeout,
)
from pyarallel.contracts import (
    NO_BACKEND_OPTIONS,
    Backend,
    BackendOptions,
    Capabilities,
    CheckpointStore,
    RateLimiter,
    RetryPolicy,
    RunInfo,
)

if TYPE_CHECKING:
    from pyarallel._options import (
        CheckpointOption,
        ExecutorOption,
        KeyFunction,
        ProgressOption,
        RateLimitOption,
        ResultCallback,
        RetryOption,
    )
    from pyarallel._stopping import StopToken

__all__ = [
    "ASYNC_MAP",
    "ASYNC_STREAM",
    "FORM_OPTIONS",
    "MAP",
    "OPTION_TABLE",
    "STREAM",
    "AsyncRunOptionOverrides",
    "AsyncStreamOptionOverrides",
    "RunOptionOverrides",
    "RunOptions",
    "RunPlan",
    "StreamOptionOverrides",
    "make_plan",
    "validate_options",
]

_run_ids = itertools.count(1)


class RunOptionOverrides(TypedDict, total=False):
    """Per-call overrides accepted by ``@parallel``'s ``.map`` and ``.starmap``."""

    workers: int | None
    executor: ExecutorOption
    rate_limit: RateLimitOption
    timeout: float | None
    on_progress: ProgressCallback | None
    batch_size: int | None
    retry: RetryOption
    task_timeout: float | None
    max_errors: int | None
    stop: StopToken | None
    checkpoint: CheckpointOption
    checkpoint_key: KeyFunction | None
    on_result: ResultCallback | None
    sequential: bool
    worker_init: Callable[[], object] | None
    max_tasks_per_worker: int | None
    progress: ProgressOption


class StreamOptionOverrides(TypedDict, total=False):
    """Per-call overrides accepted by ``@parallel``'s ``.stream`` (no timeout, no progress)."""

    workers: int | None
    executor: ExecutorOption
    rate_limit: RateLimitOption
    batch_size: int | None
    retry: RetryOption
    task_timeout: float | None
    max_errors: int | None
    stop: StopToken | None
    checkpoint: CheckpointOption
    checkpoint_key: KeyFunction | None
    on_result: ResultCallback | None
    ordered: bool
    sequential: bool
    worker_init: Callable[[], object] | None
    max_tasks_per_worker: int | None
    progress: ProgressOption


class AsyncRunOptionOverrides(TypedDict, total=False):
    """Per-call overrides accepted by ``@async_parallel``'s ``.map`` and ``.starmap``."""

    concurrency: int
    rate_limit: RateLimitOption
    timeout: float | None
    on_progress: ProgressCallback | None
    batch_size: int | None
    retry: RetryOption
    task_timeout: float | None
    max_errors: int | None
    stop: StopToken | None
    checkpoint: CheckpointOption
    checkpoint_key: KeyFunction | None
    on_result: ResultCallback | None
    progress: ProgressOption


class AsyncStreamOptionOverrides(TypedDict, total=False):
    """Per-call overrides accepted by ``@async_parallel``'s ``.stream``."""

    concurrency: int
    rate_limit: RateLimitOption
    batch_size: int | None
    retry: RetryOption
    task_timeout: float | None
    max_errors: int | None
    stop: StopToken | None
    checkpoint: CheckpointOption
    checkpoint_key: KeyFunction | None
    on_result: ResultCallback | None
    ordered: bool
    progress: ProgressOption


# Every option, in the one place it is defined: the ``RunOptions`` field it is kept in,
# its default, and the call forms that take it (the blocking ``parallel_map`` family and
# ``@parallel``'s ``.map``/``.starmap``; ``parallel_iter`` and ``.stream``; their async
# mirrors). The public signatures list the same parameters in this order, with these
# defaults, and the ``*OptionOverrides`` dicts above the same names:
# ``tests/test_option_table.py`` checks every one of them against this table.
MAP, STREAM, ASYNC_MAP, ASYNC_STREAM = "map", "stream", "async map", "async stream"
_EVERY = (MAP, STREAM, ASYNC_MAP, ASYNC_STREAM)
OPTION_TABLE: dict[str, tuple[str, object, tuple[str, ...]]] = {
    "workers": ("workers", None, (MAP, STREAM)),
    "concurrency": ("workers", 4, (ASYNC_MAP, ASYNC_STREAM)),
    "executor": ("executor", "thread", (MAP, STREAM)),
    "rate_limit": ("rate_limit", None, _EVERY),
    "timeout": ("timeout", None, (MAP, ASYNC_MAP)),
    "on_progress": ("on_progress", None, (MAP, ASYNC_MAP)),
    "batch_size": ("batch_size", None, _EVERY),
    "retry": ("retry", None, _EVERY),
    "task_timeout": ("task_timeout", None, _EVERY),
    "max_errors": ("max_errors", None, _EVERY),
    "stop": ("stop", None, _EVERY),
    "checkpoint": ("checkpoint", None, _EVERY),
    "checkpoint_key": ("checkpoint_key", None, _EVERY),
    "on_result": ("on_result", None, _EVERY),
    "ordered": ("ordered", False, (STREAM, ASYNC_STREAM)),
    "sequential": ("sequential", False, (MAP, STREAM)),
    "worker_init": ("worker_init", None, (MAP, STREAM)),
    "max_tasks_per_worker": ("max_tasks_per_worker", None, (MAP, STREAM)),
    "progress": ("progress", False, _EVERY),
}
FORM_OPTIONS: dict[str, tuple[str, ...]] = {
    form: tuple(name for name, (_, _, forms) in OPTION_TABLE.items() if form in forms) for form in _EVERY
}
"""The options each call form takes, by their public names, in signature order."""


class RunOptions:
    """The options of one call, as given (not yet validated), by field: an async call's
    ``concurrency`` is kept as ``workers``, and it has no ``executor`` (``None``). Treated
    as immutable: change one with ``replace``. Build one with ``for_call``.

    (Plain slotted classes here, not dataclasses: building a dataclass costs about 1 ms of
    a first call's import time.)
    """

    __slots__ = (
        "batch_size",
        "checkpoint",
        "checkpoint_key",
        "executor",
        "max_errors",
        "max_tasks_per_worker",
        "on_progress",
        "on_result",
        "ordered",
        "progress",
        "rate_limit",
        "retry",
        "sequential",
        "stop",
        "task_timeout",
        "timeout",
        "worker_init",
        "workers",
    )

    def __init__(self, **fields: Any) -> None:
        unknown = set(fields) - set(self.__slots__)
        if unknown:
            raise TypeError(f"unknown RunOptions field(s): {', '.join(sorted(unknown))}")
        for name in self.__slots__:
            setattr(self, name, fields.get(name, _FIELD_DEFAULTS[name]))

    if TYPE_CHECKING:  # the fields' types, for type checkers
        workers: int | None
        executor: ExecutorOption
        rate_limit: Any
        timeout: float | None
        on_progress: ProgressCallback | None
        batch_size: int | None
        retry: Any
        task_timeout: float | None
        max_errors: int | None
        stop: StopToken | None
        checkpoint: Any
        checkpoint_key: KeyFunction | None
        on_result: ResultCallback | None
        ordered: bool
        sequential: bool
        worker_init: Callable[[], object] | None
        max_tasks_per_worker: int | None
        progress: ProgressOption

    @classmethod
    def for_call(cls, form: str, arguments: Mapping[str, Any]) -> RunOptions:
        """The options of a call of ``form`` (``MAP``...) from its ``arguments`` by public
        name (a public function passes its ``locals()``); options the form does not take
        keep their defaults, and async forms have no executor."""
        fields: dict[str, Any] = {OPTION_TABLE[name][0]: arguments[name] for name in FORM_OPTIONS[form]}
        if form in (ASYNC_MAP, ASYNC_STREAM):
            fields["executor"] = None
        return cls(**fields)

    def as_dict(self) -> dict[str, Any]:
        """Every option by field."""
        return {name: getattr(self, name) for name in self.__slots__}

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes`` (by field) applied."""
        return RunOptions(**{**self.as_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        return self.as_dict() == other.as_dict() if isinstance(other, RunOptions) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RunOptions({', '.join(f'{name}={value!r}' for name, value in self.as_dict().items())})"

    def with_overrides(self, overrides: Mapping[str, Any], form: str) -> RunOptions:
        """A copy with ``overrides`` (by public name) applied; a name the call ``form``
        does not take raises ``TypeError`` listing the ones it does."""
        allowed = FORM_OPTIONS[form]
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            hint = ""
            if "workers" in unknown and "concurrency" in allowed:
                hint = " (async functions take concurrency=, not workers=)"
            raise TypeError(
                f"unknown option(s) {', '.join(map(repr, unknown))}{hint}; allowed: {', '.join(allowed)}"
            )
        return self.replace(**{OPTION_TABLE[name][0]: value for name, value in overrides.items()})

    def check_executor_name(self) -> None:
        """Raise now if ``executor`` is a name no plugin provides."""
        if isinstance(self.executor, str):
            known = {name for names in _plugins.executor_names_by_plugin().values() for name in names}
            if self.executor not in known:
                raise ValueError(
                    f"executor={self.executor!r} is not a known executor; available: "
                    f"{_plugins.describe_executor_names()}"
                )


_FIELD_DEFAULTS: dict[str, object] = {
    "workers": None,  # a sync call's default; async calls always give concurrency
    "executor": OPTION_TABLE["executor"][1],
    **{name: OPTION_TABLE[name][1] for name in RunOptions.__slots__ if name not in ("workers", "executor")},
}


class RunPlan:
    """A validated run: what to call on what, and the plugins that serve it."""

    __slots__ = (
        "async_source",
        "backend",
        "backend_options",
        "checkpoint",
        "fn",
        "limiter",
        "options",
        "portable",
        "retry_policy",
        "source",
        "star",
        "total",
        "window",
    )

    def __init__(
        self,
        *,
        fn: Callable[..., Any],
        star: bool,
        portable: Callable[..., Any] | None,
        source: Iterator[Any] | None,
        async_source: AsyncIterator[Any] | None,
        total: int | None,
        window: int | None,
        options: RunOptions,
        limiter: RateLimiter | None,
        retry_policy: RetryPolicy | None,
        backend: Backend | None,
        checkpoint: CheckpointStore | None = None,
    ) -> None:
        self.fn = fn
        self.star = star
        self.portable = portable  # what pickles in place of ``fn`` (see TaskFunction)
        self.source = source  # a sync input, read by the schedule
        self.async_source = async_source  # an async input, read by the async driver
        self.total = total
        self.window = window
        self.options = options
        self.limiter = limiter
        self.retry_policy = retry_policy
        self.backend = backend  # already built when ``executor`` was an object
        self.checkpoint = checkpoint  # the store finished items are recorded in
        self.backend_options = backend_options(options)

    @property
    def form(self) -> str:
        """The call form, as a checkpoint identifies it: ``"map"`` or ``"starmap"``."""
        return "starmap" if self.star else "map"

    def start_backend(self) -> Backend:
        """This run's backend: the one built during validation, or a new one by name."""
        options = self.options
        backend = self.backend
        if backend is None:
            backend = start_backend(options.executor, options.workers, self.total, self.backend_options)
            _check_recycling(options, backend)
        return backend

    def describe(self, executor: str, workers: int) -> RunInfo:
        """The ``RunInfo`` observers receive."""
        options = self.options
        return RunInfo(
            run_id=next(_run_ids),
            function=getattr(self.fn, "__qualname__", repr(self.fn)),
            executor=executor,
            workers=workers,
            total=self.total,
            options={
                "rate_limit": options.rate_limit,
                "retry": options.retry,
                "timeout": options.timeout,
                "batch_size": options.batch_size,
                "star": self.star,
                "progress": options.progress,
                "max_errors": options.max_errors,
                "task_timeout": options.task_timeout,
                "checkpoint": options.checkpoint,
            },
        )


def start_backend(
    executor: object,
    workers: int | None,
    total: int | None = None,
    options: BackendOptions = NO_BACKEND_OPTIONS,
) -> Backend:
    """The backend a plugin builds for ``executor``, or a ``TypeError`` if none accepts it."""
    manager = _plugins.plugin_manager()
    backend: Backend | None = manager.hook.pyarallel_executor(
        executor=executor, workers=workers, total=total, options=options
    )
    if backend is None:
        raise TypeError(
            f"executor must be an executor name or an object a plugin accepts (such as a "
            f"concurrent.futures.Executor); got {executor!r}; available names: "
            f"{_plugins.describe_executor_names()}"
        )
    _check_backend(executor, backend)
    return backend


_BACKEND_MEMBERS = ("name", "capacity", "capabilities", "submit", "until_ready", "close")


def _check_backend(executor: object, backend: object) -> None:
    """Raise ``TypeError`` unless the plugin's answer for ``executor`` fulfils the
    ``Backend`` contract (members checked by name, on the class or the instance, so that
    no property is evaluated: a backend may compute its ``capacity`` lazily)."""
    kind, own = type(backend), getattr(backend, "__dict__", {})
    missing = [member for member in _BACKEND_MEMBERS if not hasattr(kind, member) and member not in own]
    problem = f"lacks {', '.join(missing)}" if missing else ""
    if not missing and not isinstance(backend.capabilities, Capabilities):  # type: ignore[attr-defined]
        problem = f"has capabilities={backend.capabilities!r}, not a pyarallel.contracts.Capabilities"  # type: ignore[attr-defined]
    if problem:
        backend_type = type(backend)
        raise TypeError(
            f"the backend a plugin built for executor={executor!r} (a "
            f"{backend_type.__module__}.{backend_type.__qualname__}) does not fulfil "
            f"pyarallel.contracts.Backend: it {problem}"
        )


def backend_options(options: RunOptions) -> BackendOptions:
    """The worker options a backend is given (see ``BackendOptions``)."""
    if options.task_timeout is None and options.max_tasks_per_worker is None:
        return NO_BACKEND_OPTIONS
    return BackendOptions(
        task_timeout=options.task_timeout, max_tasks_per_worker=options.max_tasks_per_worker
    )


class _Resolved:
    """Validated options and the plugin objects they resolved to."""

    __slots__ = ("backend", "checkpoint", "limiter", "options", "retry_policy")

    def __init__(
        self,
        options: RunOptions,
        limiter: RateLimiter | None,
        retry_policy: RetryPolicy | None,
        backend: Backend | None,
        checkpoint: CheckpointStore | None,
    ) -> None:
        self.options = options
        self.limiter = limiter
        self.retry_policy = retry_policy
        self.backend = backend
        self.checkpoint = checkpoint


def make_plan(
    fn: object,
    items: object,
    options: RunOptions,
    *,
    star: bool,
    materialize_unsized: bool,
    asynchronous: bool = False,
    portable: Callable[..., Any] | None = None,
) -> RunPlan:
    """Validate ``fn``, ``items`` and ``options`` and resolve the plugins for one run
    (each factory hook is asked once).

    An unsized ``items`` is read lazily when ``batch_size`` or ``timeout`` is set, or when
    ``materialize_unsized`` is false; otherwise it is read into a list first so that the
    total is known (a ``timeout`` bounds the whole call, reading the input included, so
    the input is then read as the run goes). ``asynchronous`` plans need a coroutine
    function and also accept an async iterable. ``portable`` is what pickles in place of
    ``fn`` when tasks travel (see ``TaskFunction``).
    """
    if asynchronous:
        check_coroutine_function("fn", fn)
    else:
        check_sync_function("fn", fn, "the blocking API")
    is_async_iterable = asynchronous and hasattr(items, "__aiter__")
    if not is_async_iterable:
        check_iterable("items", items)
    total: int | None = len(items) if isinstance(items, Sized) else None
    resolved = _resolve(options, asynchronous=asynchronous, total=total)
    options = resolved.options
    source: Iterator[Any] | None = None
    async_source: AsyncIterator[Any] | None = None
    if is_async_iterable:
        async_source = items.__aiter__()  # type: ignore[attr-defined]
    else:
        lazy = options.batch_size is not None or options.timeout is not None or not materialize_unsized
        if total is None and not lazy:
            items = list(items)  # type: ignore[call-overload]
            total = len(items)  # type: ignore[arg-type]
        source = iter(items)  # type: ignore[call-overload]
    return RunPlan(
        fn=fn,  # type: ignore[arg-type]
        star=star,
        portable=portable,
        source=source,
        async_source=async_source,
        total=total,
        window=options.batch_size,
        options=options,
        limiter=resolved.limiter,
        retry_policy=resolved.retry_policy,
        backend=resolved.backend,
        checkpoint=resolved.checkpoint,
    )


def validate_options(options: RunOptions, *, asynchronous: bool = False) -> RunOptions:
    """Check every option (raising ``ValueError``/``TypeError`` naming the bad one) and
    return them normalised (a number ``rate_limit`` becomes a ``RateLimit``).

    Async runs call the worker count ``concurrency``, require it, and use no executor.
    """
    resolved = _resolve(options, asynchronous=asynchronous)
    if resolved.backend is not None:
        resolved.backend.close(abort=False)
    return resolved.options


def _resolve(options: RunOptions, *, asynchronous: bool, total: int | None = None) -> _Resolved:
    if asynchronous:
        check_count("concurrency", options.workers, optional=False)
    else:
        check_count("workers", options.workers)
        if options.sequential is True:
            options = options.replace(executor=INLINE_EXECUTOR, workers=1)
        options.check_executor_name()
    task_timeout = check_timeout("task_timeout", options.task_timeout)
    if task_timeout == 0:
        raise ValueError("task_timeout must be a number > 0 or None; got 0")
    check_count("batch_size", options.batch_size)
    timeout = check_timeout("timeout", options.timeout)
    check_optional_callable("on_progress", options.on_progress)
    _check_long_job_options(options)
    rate_limit = _normalise_rate_limit(options.rate_limit)
    limiter = _resolve_rate_limiter(rate_limit)
    retry_policy = _resolve_retry_policy(options.retry)
    checkpoint = _resolve_checkpoint(options.checkpoint)
    options = options.replace(rate_limit=rate_limit, timeout=timeout, task_timeout=task_timeout)
    backend = None
    if not asynchronous and not isinstance(options.executor, str):
        # A plugin accepts an executor object by building its backend (a cheap wrapper
        # around the caller's executor or client): the one this run will use.
        backend = start_backend(options.executor, options.workers, total, backend_options(options))
        _check_recycling(options, backend)
    elif not asynchronous and options.max_tasks_per_worker is not None:
        # Whether a named executor can recycle its workers is its backend's to say; a
        # backend is cheap to build (it starts its workers on first use).
        _check_recycling(options, start_backend(options.executor, options.workers, total), close=True)
    return _Resolved(options, limiter, retry_policy, backend, checkpoint)


def _check_recycling(options: RunOptions, backend: Backend, *, close: bool = False) -> None:
    """Refuse ``max_tasks_per_worker`` for a backend that cannot replace its workers
    (closing the backend then, or always with ``close``)."""
    refused = options.max_tasks_per_worker is not None and not backend.capabilities.recycles_workers
    if refused or close:
        backend.close(abort=False)
    if refused:
        raise ValueError(
            f"max_tasks_per_worker={options.max_tasks_per_worker!r} needs an executor that "
            f"replaces its workers (such as executor='process'); executor={options.executor!r} "
            f"(backend {backend.name!r}) does not"
        )


INLINE_EXECUTOR = "inline"  # what ``sequential=True`` runs on (``_builtin.inline_executor``)


def _check_long_job_options(options: RunOptions) -> None:
    """Check the options of long jobs: ``max_errors``, ``stop``, ``checkpoint_key``,
    ``on_result``, ``ordered``, ``sequential``, ``worker_init``, ``max_tasks_per_worker``,
    ``progress``."""
    check_count("max_errors", options.max_errors)
    if options.stop is not None:
        from pyarallel._stopping import StopToken

        if not isinstance(options.stop, StopToken):
            raise TypeError(f"stop must be a pyarallel.StopToken or None; got {options.stop!r}")
    check_optional_callable("checkpoint_key", options.checkpoint_key)
    if options.checkpoint_key is not None and options.checkpoint is None:
        raise ValueError(
            f"checkpoint_key={options.checkpoint_key!r} identifies items in a checkpoint, but no "
            "checkpoint= was given"
        )
    check_optional_callable("on_result", options.on_result)
    for name in ("ordered", "sequential"):
        if not isinstance(getattr(options, name), bool):
            raise TypeError(f"{name} must be True or False; got {getattr(options, name)!r}")
    check_optional_callable("worker_init", options.worker_init)
    check_count("max_tasks_per_worker", options.max_tasks_per_worker)
    check_progress(options.progress)


def _resolve_checkpoint(checkpoint: object) -> CheckpointStore | None:
    if checkpoint is None:
        return None
    store: CheckpointStore | None = _plugins.plugin_manager().hook.pyarallel_checkpoint_store(
        checkpoint=checkpoint
    )
    if store is None:
        raise TypeError(
            "checkpoint must be a path (str or os.PathLike), a pyarallel.Checkpoint, a "
            f"CheckpointStore, None, or an object a checkpoint-store plugin accepts; got {checkpoint!r}"
        )
    missing = [name for name in _STORE_METHODS if not callable(getattr(store, name, None))]
    if missing:
        raise TypeError(
            f"the checkpoint store a plugin built for checkpoint={checkpoint!r} ({store!r}) does "
            f"not fulfil pyarallel.contracts.CheckpointStore: it has no {', '.join(missing)}"
        )
    return store


_STORE_METHODS = ("open", "record_successes", "record_failure", "close")


def _normalise_rate_limit(rate_limit: object) -> object:
    if isinstance(rate_limit, int | float) and not isinstance(rate_limit, bool):
        number = check_positive_number("rate_limit", rate_limit)
        try:
            return RateLimit(number)
        except ValueError as error:  # a rate too slow to pace
            raise ValueError(f"rate_limit={rate_limit!r} cannot be used: {error}") from None
    if isinstance(rate_limit, bool):
        raise TypeError(
            f"rate_limit must be a RateLimit, a number of calls per second, or None; got {rate_limit!r}"
        )
    return rate_limit


def _resolve_rate_limiter(rate_limit: object) -> RateLimiter | None:
    if rate_limit is None:
        return None
    limiter: RateLimiter | None = _plugins.plugin_manager().hook.pyarallel_rate_limiter(rate_limit=rate_limit)
    if limiter is None:
        raise TypeError(
            "rate_limit must be a RateLimit, a number of calls per second, a RateLimiter, a "
            f"RateLimitSpec, None, or an object a rate-limiter plugin accepts; got {rate_limit!r}"
        )
    if not callable(getattr(limiter, "request", None)):
        raise TypeError(
            f"the rate limiter a plugin built for rate_limit={rate_limit!r} ({limiter!r}) does "
            "not fulfil pyarallel.contracts.RateLimiter: it has no request()"
        )
    return limiter


def _resolve_retry_policy(retry: object) -> RetryPolicy | None:
    if retry is None:
        return None
    policy: RetryPolicy | None = _plugins.plugin_manager().hook.pyarallel_retry_policy(retry=retry)
    if policy is None:
        raise TypeError(
            "retry must be a Retry, a RetryPolicy, a RetrySpec, None, or an object a "
            f"retry-policy plugin accepts; got {retry!r}"
        )
    if not callable(getattr(policy, "decide", None)):
        raise TypeError(
            f"the retry policy a plugin built for retry={retry!r} ({policy!r}) does not fulfil "
            "pyarallel.contracts.RetryPolicy: it has no decide()"
        )
    return policy
