"""Static typing check for ``@parallel`` (run by ``test_decorator.py`` under ``mypy --strict``;
not collected by pytest). The decorated functions must keep their signatures."""

from __future__ import annotations

from collections.abc import Iterator

from pyarallel import ItemResult, ParallelResult, RateLimit, Retry, parallel


@parallel
def double(x: int) -> int:
    return x * 2


@parallel(workers=2, executor="thread", rate_limit=RateLimit(10), retry=Retry(attempts=2))
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


class Service:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    @parallel(workers=4)
    def process(self, item: int) -> int:
        return item + self.offset


def check() -> None:
    x: int = double(3)
    s: str = greet("ada", punctuation="?")
    r: ParallelResult[int] = double.map([1, 2, 3])
    r2: ParallelResult[int] = double.map([1, 2], workers=4, timeout=1.0, batch_size=2)
    g: ParallelResult[str] = greet.starmap([("a", "!"), ("b", "?")])
    stream: Iterator[ItemResult[int]] = double.stream(range(3), batch_size=2)
    first: ItemResult[int] = next(stream)
    value: int | None = first.value
    values: list[int] = r.values()
    bound: ParallelResult[int] = Service(1).process.map([1, 2])
    direct: int = Service(1).process(5)
    print(x, s, r, r2, g, value, values, bound, direct)
