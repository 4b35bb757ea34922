"""Typed usage: every documented form of ``@parallel`` (bare and with options, ``.map``,
``.starmap`` and ``.stream`` with overrides, instance methods, static methods on either
side of the decorator, class methods under it), as a user's script checked with
``mypy --strict`` would write them. A decorated function keeps its signature and return
type.

Checked and run by ``tests/test_typed_usage.py``; not collected by pytest. Sources: the
API reference (``pyarallel-api-core``), ``README.md``, ``docs/guide.md`` section 9 and
the docstrings of ``_decorator.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, assert_type

from pyarallel import ItemResult, ParallelFunction, ParallelResult, RateLimit, Retry, parallel


class Bar:
    """A progress bar whose ``update`` returns a value (as tqdm's and rich's do)."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int = 1) -> bool:
        self.n += n
        return True


def callback(done: int, total: int) -> None:
    print(done, total)


# -- functions ----------------------------------------------------------------------------


@parallel  # bare: every option at its default
def process(x: int) -> int:
    return x * 2


@parallel(workers=8)
def fetch(url: str) -> dict[str, int]:
    return {"length": len(url)}


@parallel(workers=4, executor="thread", rate_limit=None)
def plain(item: str) -> str:
    return item


@parallel(workers=2, executor="thread", rate_limit=RateLimit(10), retry=Retry(attempts=2))
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@parallel(workers=4)
def add(a: int, b: int) -> int:
    return a + b


@parallel(workers=4, retry=Retry(attempts=2, backoff=0), timeout=10)
def inc(x: int) -> int:
    return x + 1


@parallel(workers=8, retry=Retry(), timeout=30)
def with_retry(x: int) -> int:
    return x


@parallel(
    workers=2,
    executor="thread",
    rate_limit=100,
    timeout=5.0,
    on_progress=lambda d, t: Bar().update(1),  # a callback returning a value (issue 9)
    batch_size=10,
    retry=Retry(on=ConnectionError),  # a single class (issue 9)
)
def every_option(x: int) -> int:
    return x


@parallel(executor="process", workers=2)
def in_process(x: int) -> int:
    return x * x


URLS = [f"https://example.org/item/{i}" for i in range(4)]


def function_forms() -> None:
    # A normal call keeps the signature and the return type.
    assert_type(fetch("http://example.com"), dict[str, int])
    assert_type(process(3), int)
    assert_type(greet("ada", punctuation="?"), str)
    assert_type(greet("ada"), str)
    assert_type(add(1, 2), int)
    assert_type(every_option(1), int)

    # .map, with every documented override.
    assert_type(fetch.map(URLS), ParallelResult[dict[str, int]])
    fetch.map(URLS, workers=16)
    fetch.map(URLS[:1], rate_limit=100)
    fetch.map(URLS[:1], rate_limit=RateLimit(100, "minute"))
    fetch.map(URLS, timeout=30.0)
    fetch.map(URLS, on_progress=callback)
    fetch.map(URLS, on_progress=lambda d, t: Bar().update(1))
    fetch.map(URLS, executor="process")
    fetch.map(URLS, batch_size=2)
    fetch.map(URLS, retry=Retry(attempts=3))
    fetch.map(URLS, retry=Retry(on=(ConnectionError, TimeoutError)))
    fetch.map(URLS, retry=None)
    fetch.map(
        URLS,
        workers=2,
        executor="thread",
        rate_limit=None,
        timeout=None,
        on_progress=None,
        batch_size=None,
        retry=None,
    )
    assert_type(process.map([1, 2]), ParallelResult[int])
    assert_type(process.map(range(3), workers=2, timeout=5.0), ParallelResult[int])
    assert_type(inc.map(range(3), workers=2, rate_limit=100), ParallelResult[int])
    assert_type(in_process.map([1, 2]), ParallelResult[int])
    assert_type(in_process.map([2], executor="thread"), ParallelResult[int])
    assert_type(with_retry.map([1], timeout=30), ParallelResult[int])
    values: list[int] = process.map([1, 2, 3]).values()
    print(values)

    # .starmap
    assert_type(add.starmap([(1, 2), (3, 4)]), ParallelResult[int])
    assert_type(inc.starmap([(1,), (2,)]), ParallelResult[int])
    assert_type(greet.starmap([("a", "!"), ("b", "?")]), ParallelResult[str])
    add.starmap([(1, 2)], workers=2, timeout=1.0, on_progress=lambda d, t: Bar().update(1), retry=Retry())

    # .stream, with the overrides a stream takes.
    for item in process.stream(range(10), batch_size=1000):
        assert_type(item, ItemResult[int])
        if item.ok:
            print(item.value)
        else:
            print(item.index, item.error)
    stream: Iterator[ItemResult[int]] = process.stream(range(3), batch_size=2)
    first = next(stream)
    assert_type(first.value, int | None)
    assert_type(first.error, BaseException | None)
    print(sorted(r.value for r in process.stream([5, 6]) if r.value is not None))
    process.stream([1], workers=2, executor="thread", rate_limit=RateLimit(10), batch_size=1, retry=Retry())

    # The type the decorator returns.
    pf: ParallelFunction[[int], int] = process
    anything: ParallelFunction[..., Any] = greet
    print(pf, anything, process.__wrapped__, process.__name__)


# -- methods ------------------------------------------------------------------------------


class Service:
    factor = 10

    def __init__(self, k: int) -> None:
        self.k = k

    def transform(self, item: int) -> int:
        return item * self.k

    # An instance method.
    @parallel(workers=4)
    def process(self, item: int) -> int:
        return self.transform(item)

    # A static method: @staticmethod above @parallel (the documented order).
    @staticmethod
    @parallel(workers=4)
    def compute(x: int) -> int:
        return x**2

    # ... and @parallel above @staticmethod, which works too.
    @parallel
    @staticmethod
    def cube(x: int) -> int:
        return x**3

    # A class method: @parallel above @classmethod.
    @parallel(workers=2)
    @classmethod
    def times_factor(cls, x: int) -> int:
        return x * cls.factor

    @parallel
    @classmethod
    def cm(cls, x: int) -> int:
        return x + cls.factor


class Prices:
    def __init__(self, rate: float) -> None:
        self.rate = rate

    @parallel(workers=4)
    def convert(self, amount: int) -> float:
        return round(amount * self.rate, 2)

    @staticmethod
    @parallel(workers=4)
    def parse(text: str) -> float:
        return float(text)


def method_forms() -> None:
    svc = Service(3)

    # Instance methods: called directly and through .map/.starmap/.stream on an instance.
    assert_type(svc.process(5), int)
    assert_type(svc.process.map([1, 2]), ParallelResult[int])
    assert_type(svc.process.map([1, 2], executor="process"), ParallelResult[int])
    assert_type(svc.process.starmap([(1,), (2,)]), ParallelResult[int])
    for item in svc.process.stream([1, 2], workers=2):
        assert_type(item, ItemResult[int])
    prices = Prices(rate=0.5)
    assert_type(prices.convert(10), float)
    assert_type(prices.convert.map([10, 20]), ParallelResult[float])

    # Static methods, @staticmethod above @parallel: on the class and on an instance.
    # (``svc.compute(3)`` is left out: mypy binds ``x`` away through the instance
    # overload of ``ParallelFunction.__get__`` even under ``@staticmethod``.)
    assert_type(Service.compute(3), int)
    assert_type(Service.compute.map([1, 2, 3]), ParallelResult[int])
    assert_type(svc.compute.map([1, 2, 3]), ParallelResult[int])
    assert_type(Prices.parse.map(["1.5", "2"]), ParallelResult[float])

    # Static methods, @parallel above @staticmethod.
    assert_type(Service.cube(2), int)
    assert_type(Service.cube.map([1, 2]), ParallelResult[int])
    assert_type(svc.cube.map([1, 2]), ParallelResult[int])

    # Class methods, @parallel above @classmethod: called directly (issue 9), and
    # through .map/.starmap/.stream, on the class and on an instance.
    assert_type(Service.cm(1), int)
    assert_type(Service.times_factor(1), int)
    assert_type(Service.times_factor.map([1, 2]), ParallelResult[int])
    assert_type(Service.cm.map([1, 2]), ParallelResult[int])
    assert_type(Service.cm.starmap([(1,), (2,)]), ParallelResult[int])
    for item in Service.cm.stream([1, 2]):
        assert_type(item, ItemResult[int])
    assert_type(svc.cm(1), int)
    assert_type(svc.times_factor(1), int)
    assert_type(svc.times_factor.map([1, 2]), ParallelResult[int])
    assert_type(svc.cm.map([1, 2], workers=2), ParallelResult[int])


def main() -> None:
    function_forms()
    method_forms()


if __name__ == "__main__":
    main()
