"""Every option is defined once, in ``pyarallel._plan.OPTION_TABLE``; the public signatures
and the decorators' override dicts must say the same. Adding an option to the table
without a signature (or the reverse) fails here, naming the place to change."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

import pyarallel
from pyarallel._plan import (
    ASYNC_MAP,
    ASYNC_STREAM,
    FORM_OPTIONS,
    MAP,
    OPTION_TABLE,
    STREAM,
    AsyncRunOptionOverrides,
    AsyncStreamOptionOverrides,
    RunOptionOverrides,
    RunOptions,
    StreamOptionOverrides,
)

PUBLIC_CALLS: list[tuple[Callable[..., Any], str]] = [
    (pyarallel.parallel_map, MAP),
    (pyarallel.parallel_starmap, MAP),
    (pyarallel.parallel, MAP),
    (pyarallel.parallel_iter, STREAM),
    (pyarallel.async_parallel_map, ASYNC_MAP),
    (pyarallel.async_parallel_starmap, ASYNC_MAP),
    (pyarallel.async_parallel, ASYNC_MAP),
    (pyarallel.async_parallel_iter, ASYNC_STREAM),
]

OVERRIDES = [
    (RunOptionOverrides, MAP),
    (StreamOptionOverrides, STREAM),
    (AsyncRunOptionOverrides, ASYNC_MAP),
    (AsyncStreamOptionOverrides, ASYNC_STREAM),
]


def keyword_options(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


@pytest.mark.parametrize(("fn", "form"), PUBLIC_CALLS, ids=lambda v: getattr(v, "__name__", v))
def test_a_public_signature_takes_its_forms_options_in_table_order_with_table_defaults(
    fn: Callable[..., Any], form: str
) -> None:
    parameters = keyword_options(fn)
    assert [p.name for p in parameters] == list(FORM_OPTIONS[form]), f"{fn.__name__}: edit its signature"
    for parameter in parameters:
        default = OPTION_TABLE[parameter.name][1]
        assert parameter.default == default, f"{fn.__name__}({parameter.name}=...) default"


def test_each_option_has_one_annotation_everywhere() -> None:
    seen: dict[str, set[str]] = {}
    for fn, _ in PUBLIC_CALLS:
        for parameter in keyword_options(fn):
            seen.setdefault(parameter.name, set()).add(str(parameter.annotation))
    for overrides, _ in OVERRIDES:
        for name, annotation in overrides.__annotations__.items():
            text = annotation if isinstance(annotation, str) else annotation.__forward_arg__
            seen.setdefault(name, set()).add(text)
    # ``concurrency`` is required in an override dict's sense of "int", never None.
    assert {name: len(kinds) for name, kinds in seen.items()} == dict.fromkeys(OPTION_TABLE, 1), seen
    assert seen["rate_limit"] == {"RateLimitOption"}
    assert seen["retry"] == {"RetryOption"}


@pytest.mark.parametrize(("overrides", "form"), OVERRIDES, ids=lambda v: getattr(v, "__name__", v))
def test_override_dicts_name_the_options_of_their_form(overrides: type, form: str) -> None:
    assert list(overrides.__annotations__) == list(FORM_OPTIONS[form])


def test_every_option_is_taken_by_some_form_and_kept_in_a_field() -> None:
    for name, (field, _, forms) in OPTION_TABLE.items():
        assert forms, name
        assert field in RunOptions.__slots__, name
    assert set(RunOptions.__slots__) == {field for field, _, _ in OPTION_TABLE.values()}


def test_run_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        RunOptions(4)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unknown RunOptions field"):
        RunOptions(wokers=4)
    assert RunOptions(workers=4).workers == 4
    assert RunOptions().executor == "thread"


def test_for_call_takes_the_forms_options_and_async_forms_have_no_executor() -> None:
    arguments = {name: f"<{name}>" for name in OPTION_TABLE}
    stream = RunOptions.for_call(STREAM, arguments)
    assert stream.rate_limit == "<rate_limit>"
    assert stream.timeout is None  # a stream has no timeout
    async_map = RunOptions.for_call(ASYNC_MAP, arguments)
    assert async_map.workers == "<concurrency>"
    assert async_map.executor is None


def test_an_override_outside_the_form_is_refused_listing_the_allowed_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'timeout'; allowed: workers, executor"):
        RunOptions().with_overrides({"timeout": 1}, STREAM)
    with pytest.raises(TypeError, match="async functions take concurrency=, not workers="):
        RunOptions().with_overrides({"workers": 1}, ASYNC_MAP)
    assert RunOptions().with_overrides({"concurrency": 3}, ASYNC_MAP).workers == 3
