"""Every bad input is refused before any work starts, with a ValueError or TypeError whose
message names the parameter and shows the bad value.

"Before any work starts" is checked, not assumed: every call gets a function that records
its calls and a generator input that records whether it was pulled, and neither may have
happened when the error arrives. A control test shows the same probes do see work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyarallel import (
    ParallelFunction,
    RateLimit,
    Retry,
    list_plugins,
    parallel,
    parallel_iter,
    parallel_map,
    parallel_starmap,
)

NAN = float("nan")
INF = float("inf")


class NoPluginAcceptsMe:
    """An executor object no executor plugin knows."""

    def __repr__(self) -> str:
        return "<NoPluginAcceptsMe>"


@dataclass
class Probe:
    """A function and an input that record whether any work happened."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    called: threading.Event = field(default_factory=threading.Event)
    pulled: threading.Event = field(default_factory=threading.Event)

    def fn(self, *args: Any) -> Any:
        self.called.set()
        self.calls.append(args)
        return args

    def items(self, *, star: bool) -> Iterator[Any]:
        for i in range(5):
            self.pulled.set()
            yield (i, i) if star else i

    def assert_no_work(self) -> None:
        assert not self.pulled.is_set(), "the input was read before the error"
        assert not self.called.is_set(), f"fn was called before the error: {self.calls}"
        assert self.calls == []


ENTRY_POINTS = [
    "parallel_map",
    "parallel_starmap",
    "parallel_iter",
    "@parallel(...)",
    ".map",
    ".starmap",
    ".stream",
]
STREAMING = {"parallel_iter", ".stream"}  # no timeout / on_progress there


DEFAULT: Any = object()  # "use the probe's function / input"


def invoke(
    entry: str, probe: Probe, options: dict[str, Any], *, fn: Any = DEFAULT, items: Any = DEFAULT
) -> object:
    """Call ``entry`` with ``options``; the decorator entry validates them at decoration time."""
    star = entry in {"parallel_starmap", ".starmap"}
    function = probe.fn if fn is DEFAULT else fn
    source = probe.items(star=star) if items is DEFAULT else items
    if entry == "parallel_map":
        return parallel_map(function, source, **options)
    if entry == "parallel_starmap":
        return parallel_starmap(function, source, **options)
    if entry == "parallel_iter":
        return parallel_iter(function, source, **options)  # must raise here, not on next()
    if entry == "@parallel(...)":
        return parallel(**options)(function)
    decorated = parallel(workers=2)(function)
    if entry == ".map":
        return decorated.map(source, **options)
    if entry == ".starmap":
        return decorated.starmap(source, **options)
    if entry == ".stream":
        return decorated.stream(source, **options)  # must raise here, not on next()
    raise AssertionError(entry)


@dataclass(frozen=True)
class Case:
    """One bad option: the keyword, its value, the error type and what the message must contain."""

    name: str
    value: Any
    error: type[Exception]
    mentions: tuple[str, ...] = ()

    @property
    def options(self) -> dict[str, Any]:
        return {self.name: self.value}

    def id(self) -> str:
        return f"{self.name}={self.value!r}"


OPTION_CASES = [
    Case("workers", 0, ValueError),
    Case("workers", -1, ValueError),
    Case("workers", -100, ValueError),
    Case("workers", 2.5, TypeError),
    Case("workers", 4.0, TypeError),
    Case("workers", "4", TypeError),
    Case("workers", True, TypeError),
    Case("batch_size", 0, ValueError),
    Case("batch_size", -5, ValueError),
    Case("batch_size", 10.0, TypeError),
    Case("batch_size", "100", TypeError),
    Case("timeout", -1, ValueError),
    Case("timeout", -0.001, ValueError),
    Case("timeout", NAN, ValueError),
    Case("timeout", "5", TypeError),
    Case("on_progress", "print", TypeError),
    Case("rate_limit", 0, ValueError),
    Case("rate_limit", 0.0, ValueError),
    Case("rate_limit", -10, ValueError),
    Case("rate_limit", NAN, ValueError),
    Case("rate_limit", INF, ValueError),
    Case("rate_limit", "10/s", TypeError),
    Case("rate_limit", True, TypeError),
    Case("retry", 3, TypeError),
    Case("retry", "3 times", TypeError),
    Case("retry", {"attempts": 3}, TypeError),
    Case("retry", True, TypeError),
    Case("executor", "bogus", ValueError, ("'thread'", "'process'")),
    Case("executor", "Thread", ValueError, ("'thread'", "'process'")),
    Case("executor", None, TypeError),
]

EXECUTOR_OBJECT = Case("executor", NoPluginAcceptsMe(), TypeError)


def option_params() -> list[Any]:
    params = []
    for entry in ENTRY_POINTS:
        for case in OPTION_CASES:
            if entry in STREAMING and case.name in {"timeout", "on_progress"}:
                continue
            params.append(pytest.param(entry, case, id=f"{entry}-{case.id()}"))
    return params


def check_message(error: BaseException, case: Case) -> None:
    message = str(error)
    assert case.name in message, f"message does not name {case.name!r}: {message}"
    assert repr(case.value) in message, f"message does not show {case.value!r}: {message}"
    for text in case.mentions:
        assert text in message, f"message does not mention {text}: {message}"


@pytest.mark.parametrize(("entry", "case"), option_params())
def test_bad_option_is_refused_before_any_work(entry: str, case: Case) -> None:
    probe = Probe()
    with pytest.raises(case.error) as excinfo:
        invoke(entry, probe, case.options)
    check_message(excinfo.value, case)
    probe.assert_no_work()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_valid_options_do_reach_the_probes(entry: str) -> None:
    """Control: the probes used above do notice work when nothing is wrong."""
    probe = Probe()
    outcome = invoke(entry, probe, {"workers": 2, "batch_size": 2, "retry": Retry(attempts=1)})
    if isinstance(outcome, ParallelFunction):
        assert outcome(7) == (7,)
    elif not hasattr(outcome, "ok"):
        outcome = list(outcome)  # type: ignore[call-overload]
    assert probe.called.is_set()
    if entry != "@parallel(...)":
        assert probe.pulled.is_set()
        assert len(probe.calls) == 5


# -- the executor ------------------------------------------------------------------------------


def executor_plugins() -> dict[str, tuple[str, ...]]:
    return {info.name: info.executors for info in list_plugins() if info.executors}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_unknown_executor_name_lists_the_available_names_and_their_plugins(entry: str) -> None:
    probe = Probe()
    with pytest.raises(ValueError, match="executor") as excinfo:
        invoke(entry, probe, {"executor": "dask-but-not-installed"})
    message = str(excinfo.value)
    assert "'dask-but-not-installed'" in message
    providers = executor_plugins()
    provided = {name for names in providers.values() for name in names}
    assert {"thread", "process"} <= provided
    for plugin, names in providers.items():
        assert plugin in message, f"plugin {plugin!r} missing from: {message}"
        for name in names:
            assert repr(name) in message
    probe.assert_no_work()


@pytest.mark.parametrize("entry", ["parallel_map", "parallel_starmap", ".map", ".starmap"])
def test_executor_object_no_plugin_accepts_is_refused_before_fn_runs_on_a_list(entry: str) -> None:
    probe = Probe()
    items = [(1, 2), (3, 4)] if "starmap" in entry else [1, 2]
    with pytest.raises(TypeError) as excinfo:
        invoke(entry, probe, EXECUTOR_OBJECT.options, items=items)
    check_message(excinfo.value, EXECUTOR_OBJECT)
    assert "'thread'" in str(excinfo.value)
    probe.assert_no_work()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_executor_object_no_plugin_accepts_is_refused_before_any_work(entry: str) -> None:
    probe = Probe()
    with pytest.raises(TypeError) as excinfo:
        invoke(entry, probe, EXECUTOR_OBJECT.options)
    check_message(excinfo.value, EXECUTOR_OBJECT)
    probe.assert_no_work()


# -- fn and items -------------------------------------------------------------------------------

NOT_CALLABLE = [42, "fn", None, [print]]
NOT_ITERABLE = [42, None, 3.5, object()]


@pytest.mark.parametrize("entry", ["parallel_map", "parallel_starmap", "parallel_iter"])
@pytest.mark.parametrize("fn", NOT_CALLABLE, ids=repr)
def test_non_callable_fn_is_refused(entry: str, fn: object) -> None:
    probe = Probe()
    with pytest.raises(TypeError) as excinfo:
        invoke(entry, probe, {}, fn=fn)
    message = str(excinfo.value)
    assert "fn" in message
    assert repr(fn) in message
    probe.assert_no_work()


@pytest.mark.parametrize("fn", [42, "fn", [print]], ids=repr)
def test_decorating_a_non_callable_is_refused(fn: object) -> None:
    with pytest.raises(TypeError) as excinfo:
        parallel(workers=2)(fn)  # type: ignore[call-overload]
    assert "callable" in str(excinfo.value)
    assert repr(fn) in str(excinfo.value)


@pytest.mark.parametrize("entry", [e for e in ENTRY_POINTS if e != "@parallel(...)"])
@pytest.mark.parametrize("items", NOT_ITERABLE, ids=lambda v: type(v).__name__)
def test_non_iterable_items_are_refused(entry: str, items: object) -> None:
    probe = Probe()
    with pytest.raises(TypeError) as excinfo:
        invoke(entry, probe, {}, items=items)
    message = str(excinfo.value)
    assert "items" in message
    assert repr(items) in message
    probe.assert_no_work()


def test_fn_is_checked_before_items_are_touched() -> None:
    probe = Probe()
    with pytest.raises(TypeError, match="fn"):
        parallel_map(42, probe.items(star=False))  # type: ignore[arg-type]
    probe.assert_no_work()


# -- RateLimit and Retry objects are refused when built -----------------------------------------


BAD_OPTION_OBJECTS = [
    pytest.param("rate_limit", lambda: RateLimit(0), ValueError, ("count", "0"), id="RateLimit(0)"),
    pytest.param(
        "rate_limit", lambda: RateLimit(-3, "minute"), ValueError, ("count", "-3"), id="RateLimit(-3)"
    ),
    pytest.param("rate_limit", lambda: RateLimit(NAN), ValueError, ("count", "nan"), id="RateLimit(nan)"),
    pytest.param(
        "rate_limit", lambda: RateLimit(INF, "hour"), ValueError, ("count", "inf"), id="RateLimit(inf)"
    ),
    pytest.param(
        "rate_limit",
        lambda: RateLimit(10, "fortnight"),  # type: ignore[arg-type]
        ValueError,
        ("per", "'fortnight'"),
        id="RateLimit(per=fortnight)",
    ),
    pytest.param("retry", lambda: Retry(attempts=0), ValueError, ("attempts", "0"), id="Retry(attempts=0)"),
    pytest.param(
        "retry", lambda: Retry(attempts=-2), ValueError, ("attempts", "-2"), id="Retry(attempts=-2)"
    ),
    pytest.param(
        "retry", lambda: Retry(backoff=-1.0), ValueError, ("backoff", "-1.0"), id="Retry(backoff=-1)"
    ),
    pytest.param(
        "retry", lambda: Retry(backoff=NAN), ValueError, ("backoff", "nan"), id="Retry(backoff=nan)"
    ),
    pytest.param(
        "retry", lambda: Retry(max_delay=-0.5), ValueError, ("max_delay", "-0.5"), id="Retry(max_delay=-0.5)"
    ),
    pytest.param(
        "retry", lambda: Retry(max_delay=NAN), ValueError, ("max_delay", "nan"), id="Retry(max_delay=nan)"
    ),
    pytest.param(
        "retry",
        lambda: Retry(on="ConnectionError"),  # type: ignore[arg-type]
        TypeError,
        ("on", "'ConnectionError'"),
        id="Retry(on=str)",
    ),
]


@pytest.mark.parametrize("entry", ["parallel_map", "parallel_iter", "@parallel(...)", ".map"])
@pytest.mark.parametrize(("keyword", "make", "error", "mentions"), BAD_OPTION_OBJECTS)
def test_bad_option_objects_are_refused_before_any_work(
    entry: str, keyword: str, make: Callable[[], object], error: type[Exception], mentions: tuple[str, str]
) -> None:
    probe = Probe()
    with pytest.raises(error) as excinfo:
        invoke(entry, probe, {keyword: make()})
    message = str(excinfo.value)
    for text in mentions:
        assert text in message
    probe.assert_no_work()


# -- decorator overrides ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["map", "starmap", "stream"])
@pytest.mark.parametrize("name", ["wokers", "rate", "retries", "fn"])
def test_unknown_override_names_raise_type_error(method: str, name: str) -> None:
    probe = Probe()
    decorated = parallel(workers=2)(probe.fn)
    with pytest.raises(TypeError) as excinfo:
        getattr(decorated, method)(probe.items(star=method == "starmap"), **{name: 1})
    assert repr(name) in str(excinfo.value)
    probe.assert_no_work()


@pytest.mark.parametrize("name", ["timeout", "on_progress"])
def test_stream_refuses_timeout_and_on_progress(name: str) -> None:
    probe = Probe()
    decorated = parallel(workers=2)(probe.fn)
    with pytest.raises(TypeError, match=name):
        decorated.stream(probe.items(star=False), **{name: 5.0 if name == "timeout" else print})
    probe.assert_no_work()


def test_a_bad_override_leaves_the_decorator_defaults_usable() -> None:
    probe = Probe()
    decorated = parallel(workers=3, rate_limit=1000, retry=Retry(attempts=1))(probe.fn)
    # A bad override on one call does not break the defaults for the next call.
    with pytest.raises(ValueError, match="workers"):
        decorated.map(probe.items(star=False), workers=0)
    probe.assert_no_work()
    assert decorated.map([1, 2]) == [(1,), (2,)]


@pytest.mark.parametrize("case", [c for c in OPTION_CASES if c.name != "executor"], ids=Case.id)
def test_bad_option_in_a_method_decorator_is_refused_at_class_creation(case: Case) -> None:
    with pytest.raises(case.error) as excinfo:

        class Service:
            @parallel(**case.options)
            def handle(self, item: int) -> int:
                return item

    check_message(excinfo.value, case)


def test_parallel_iter_refuses_at_call_time_even_if_never_iterated() -> None:
    probe = Probe()
    with pytest.raises(ValueError, match="workers"):
        parallel_iter(probe.fn, probe.items(star=False), workers=0)
    probe.assert_no_work()
    # The valid call returns a lazy iterator: creating it does no work either.
    lazy = parallel_iter(probe.fn, probe.items(star=False), workers=1)
    probe.assert_no_work()
    assert sorted(r.value for r in lazy) == [(i,) for i in range(5)]


HUGE = 10**400  # an int too large for a float


def test_rate_limit_shorthand_too_large_for_a_float_is_refused_by_name() -> None:
    probe = Probe()
    with pytest.raises(ValueError, match="rate_limit"):
        parallel_map(probe.fn, probe.items(star=False), rate_limit=HUGE)
    probe.assert_no_work()


@pytest.mark.parametrize("timeout", [INF, 1e12, HUGE], ids=["inf", "1e12", "10**400"])
def test_a_huge_timeout_that_validation_accepts_means_no_timeout(timeout: float) -> None:
    assert parallel_map(abs, [-1, -2], timeout=timeout) == [1, 2]
