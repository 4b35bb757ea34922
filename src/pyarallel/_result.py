"""Result types: ``ItemResult`` for one item and ``ParallelResult`` for a whole call."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pyarallel._errors import IncompleteRunError

if TYPE_CHECKING:
    from pyarallel._stats import RunStats

__all__ = [
    "ItemResult",
    "ParallelResult",
    "ResultCollector",
    "RunStatus",
    "Settled",
    "Successes",
    "item_results",
]

R = TypeVar("R")

_REPR_MAX_VALUES = 10
_HTML_MAX_FAILURES = 5
_NO_VALUE: Any = object()  # ItemResult's value when none is given (None is a valid value)


class RunStatus(enum.StrEnum):
    """How a run ended, as ``ParallelResult.status`` (and ``RunSummary.status``) tell.

    - ``COMPLETED``: every item was read from the input and finished, successfully or
      not (failed items alone leave a run completed);
    - ``TIMED_OUT``: the run's ``timeout`` expired first; no more input was read, and the
      items not finished failed with ``ItemTimeoutError``;
    - ``SIZE_MISMATCH``: the input (a sized one: a list, or anything with ``__len__``)
      gave more or fewer items than its ``len()`` said when the run started (it was
      changed while the run read it, or its ``__len__`` is wrong). Every item read ran
      and the result holds exactly those, nothing invented.
    - ``ABORTED``: ``max_errors`` items failed for good, so no more work was admitted;
      items that had not finished then failed with ``ItemAbortedError``;
    - ``CANCELLED``: the run's ``stop=`` token was triggered; items running then
      finished, and those not started failed with ``ItemCancelledError``.

    For ``TIMED_OUT``, ``ABORTED`` and ``CANCELLED``, the items of a sized input that
    were never read are in the result as those failures too; an unsized input's are not
    (the ``IncompleteRunError`` says how many items were read).
    """

    COMPLETED = "completed"
    TIMED_OUT = "timed_out"
    SIZE_MISMATCH = "size_mismatch"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


class ItemResult(Generic[R]):
    """The outcome of one input item: its ``index`` and either a ``value`` or an ``error``.

    Exactly one of the two is set: ``ok`` is ``True`` when the item succeeded (``value``
    may legitimately be ``None``), ``False`` when it failed (``error`` is the exception,
    which may be a ``BaseException`` such as ``SystemExit`` raised by the item). Build one
    with ``ItemResult(index, value=...)`` (a success) or ``ItemResult(index,
    error=...)`` (a failure); giving neither or both raises ``ValueError``. Instances are
    immutable, compare by value, and pickle and copy like values.

    ``attempts`` and ``duration`` say how the item ran (they take no part in equality):
    see their docstrings.
    """

    __slots__ = ("_attempts", "_duration", "_error", "_index", "_value")
    _index: int
    _value: R | None
    _error: BaseException | None
    _attempts: int
    _duration: float

    def __init__(
        self,
        index: int,
        value: R | None = _NO_VALUE,
        error: BaseException | None = None,
        *,
        attempts: int = 1,
        duration: float = 0.0,
    ) -> None:
        _check_index(index)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise ValueError(f"ItemResult attempts must be an int >= 0; got {attempts!r}")
        if not isinstance(duration, int | float) or isinstance(duration, bool) or not duration >= 0:
            raise ValueError(f"ItemResult duration must be a number of seconds >= 0; got {duration!r}")
        if error is None:
            if value is _NO_VALUE:
                raise ValueError(
                    "an ItemResult needs a value (a success; None is a valid value) or an error "
                    f"(a failure); item {index} was given neither"
                )
        else:
            _check_error(error)
            if value is not None and value is not _NO_VALUE:
                raise ValueError(
                    f"an ItemResult holds a value or an error, not both; item {index} was given "
                    f"value={value!r} and error={error!r}"
                )
            value = None
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_error", error)
        object.__setattr__(self, "_attempts", attempts)
        object.__setattr__(self, "_duration", float(duration))

    @classmethod
    def success(cls, index: int, value: R, attempts: int = 1, duration: float = 0.0) -> ItemResult[R]:
        """The result of an item that returned ``value``."""
        # The scheduler makes one per item: skip __init__'s check and __setattr__ guard.
        result: ItemResult[R] = _new_item_result(cls)
        _set_index(result, index)
        _set_value(result, value)
        _set_error(result, None)
        _set_attempts(result, attempts)
        _set_duration(result, duration)
        return result

    @classmethod
    def failure(
        cls, index: int, error: BaseException, attempts: int = 1, duration: float = 0.0
    ) -> ItemResult[R]:
        """The result of an item that failed with ``error`` (an exception instance)."""
        _check_error(error)
        return cls(index, error=error, attempts=attempts, duration=duration)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ItemResult is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ItemResult is immutable; cannot delete {name!r}")

    def __reduce__(self) -> tuple[object, ...]:
        # The default would restore the slots through __setattr__, which refuses.
        fields = (type(self), self._index, self._value, self._error, self._attempts, self._duration)
        return (_rebuild_item_result, fields)

    @property
    def index(self) -> int:
        """The item's position in the input."""
        return self._index

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self._error is None

    @property
    def value(self) -> R | None:
        """The function's return value for a successful item; ``None`` for a failure."""
        return self._value

    @property
    def attempts(self) -> int:
        """How many attempts the item was given: 1 unless it was retried; 0 when the run
        ended before it started (timed out, aborted, cancelled), or when its result was
        read back from a checkpoint. Attempts lost with a dying worker and run again do
        not count."""
        return self._attempts

    @property
    def duration(self) -> float:
        """Seconds the item's last attempt ran, measured where it ran (items that
        travelled together in one task share the task's time equally); 0.0 when it ran
        no attempt to its end (see ``attempts``)."""
        return self._duration

    @property
    def error(self) -> BaseException | None:
        """The exception a failed item ended with (usually an ``Exception``; a
        ``BaseException`` such as ``SystemExit`` when the item raised one); ``None`` for a
        success."""
        return self._error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemResult):
            return NotImplemented
        return (self._index, self._value, self._error) == (other._index, other._value, other._error)

    def __hash__(self) -> int:
        return hash((self._index, self._error)) if not self.ok else hash(self._index)

    def __repr__(self) -> str:
        if self.ok:
            return f"ItemResult(index={self.index}, value={self._value!r})"
        return f"ItemResult(index={self.index}, error={self._error!r})"


def _check_index(index: object) -> None:
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"ItemResult index must be an int >= 0; got {index!r}")
    if index < 0:
        raise ValueError(f"ItemResult index must be an int >= 0; got {index!r}")


def _check_error(error: object) -> None:
    if not isinstance(error, BaseException):
        raise TypeError(
            f"ItemResult error must be an exception instance (or None for a success); got {error!r}"
        )


def _rebuild_item_result(  # noqa: PLR0917 - pickle passes the fields by position
    kind: type[ItemResult[Any]],
    index: int,
    value: Any,
    error: BaseException | None,
    attempts: int = 1,
    duration: float = 0.0,
) -> ItemResult[Any]:
    if error is None:
        return kind.success(index, value, attempts, duration)
    result: ItemResult[Any] = _new_item_result(kind)
    _set_index(result, index)
    _set_value(result, None)
    _set_error(result, error)
    _set_attempts(result, attempts)
    _set_duration(result, duration)
    return result


_new_item_result = object.__new__
_set_index = ItemResult.__dict__["_index"].__set__  # the slots' own setters
_set_value = ItemResult.__dict__["_value"].__set__
_set_error = ItemResult.__dict__["_error"].__set__
_set_attempts = ItemResult.__dict__["_attempts"].__set__
_set_duration = ItemResult.__dict__["_duration"].__set__


class Successes:
    """Consecutive items ``start``, ``start + 1``, ... that all succeeded on their first
    attempt, with ``values`` in order and ``seconds`` the time each took (their task's
    time shared equally): how the scheduler reports a whole chunk of successes without
    making an ``ItemResult`` per item until someone asks for one (internal)."""

    __slots__ = ("seconds", "start", "values")

    def __init__(self, start: int, values: list[Any], seconds: float = 0.0) -> None:
        self.start = start
        self.values = values
        self.seconds = seconds

    def __len__(self) -> int:
        return len(self.values)

    def results(self) -> list[ItemResult[Any]]:
        """One ``ItemResult`` per item, in order."""
        success, seconds = ItemResult.success, self.seconds
        return [success(index, value, 1, seconds) for index, value in enumerate(self.values, self.start)]

    def __repr__(self) -> str:
        return f"Successes(start={self.start}, {len(self.values)} values)"


# What the scheduler reports as finished: one item, or a run of successes.
Settled = ItemResult[Any] | Successes


def item_results(settled: Settled) -> Sequence[ItemResult[Any]]:
    """The ``ItemResult`` of every item that ``settled`` stands for, in order."""
    return settled.results() if isinstance(settled, Successes) else (settled,)


class ParallelResult(Sequence[R]):
    """The results of a call, in input order, and how the run ended (``status``).

    When the run completed and every item succeeded, it behaves like a read-only list of
    values (``len``, indexing, iteration, equality with a list). Otherwise ``ok`` is
    ``False``, ``successes()`` and ``failures()`` give structured access to what finished,
    and every operation that needs all the values (``values()``, indexing, iteration)
    raises an ``ExceptionGroup``: of the failures, plus an ``IncompleteRunError`` when
    the run did not complete (even if every item read succeeded). Its message says how
    many of how many items failed and, for an incomplete run, how it ended and how many
    items were read and finished.

    ``stats`` summarises what the run did (``print(result.stats)``); in Jupyter a result
    shows as that summary (``_repr_html_``).
    """

    __slots__ = ("_errors", "_expected", "_finished", "_read", "_stats", "_status", "_values")

    def __init__(
        self,
        results: Sequence[ItemResult[R]] | Iterator[ItemResult[R]],
        *,
        status: RunStatus = RunStatus.COMPLETED,
    ) -> None:
        """Build from item results whose indices are exactly 0..n-1, in any order."""
        ordered = sorted(_check_item_results(results), key=lambda item: item.index)
        _check_indices([item.index for item in ordered])
        self._values: list[R | None] = [item.value for item in ordered]
        self._errors: dict[int, BaseException] = {
            item.index: item.error for item in ordered if item.error is not None
        }
        self._status = RunStatus(status)
        self._read = self._finished = len(ordered)
        self._expected: int | None = None
        self._stats: RunStats | None = None

    @classmethod
    def _from_parts(  # noqa: PLR0917 - internal, called from one place
        cls,
        values: list[R | None],
        errors: dict[int, BaseException],
        status: RunStatus = RunStatus.COMPLETED,
        read: int | None = None,
        finished: int | None = None,
        expected: int | None = None,
    ) -> ParallelResult[R]:
        """Build directly from values in input order and the failures by index (no checks).
        ``read`` and ``finished`` count the items read and finished before an incomplete
        run ended (both ``len(values)`` by default); ``expected`` is what the input's
        ``len()`` said, for a ``SIZE_MISMATCH``."""
        result: ParallelResult[R] = cls.__new__(cls)
        result._values = values
        result._errors = errors
        result._status = status
        result._read = len(values) if read is None else read
        result._finished = len(values) if finished is None else finished
        result._expected = expected
        result._stats = None
        return result

    @property
    def stats(self) -> RunStats:
        """What the run did: wall time, items and calls per second, retries, failures by
        exception type, the slowest items, time spent waiting for the rate limiter (see
        :class:`~pyarallel.RunStats`). A result built by hand from ``ItemResult`` objects
        has only its counts and failures."""
        if self._stats is None:
            from pyarallel._stats import RunStats

            failures: dict[str, int] = {}
            for error in self._errors.values():
                failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
            by_type = sorted(failures.items(), key=lambda entry: (-entry[1], entry[0]))
            failed = len(self._errors)
            self._stats = RunStats(
                "?", self._status.value, 0.0, self._finished - failed, failed, failures_by_type=by_type
            )
        return self._stats

    def _repr_html_(self) -> str:
        """A compact HTML summary, for Jupyter: the statistics and the first failures."""
        import html

        failures = self.failures()[:_HTML_MAX_FAILURES]
        rows = "".join(
            f"<li>#{index}: {html.escape(type(error).__name__)}: {html.escape(str(error))}</li>"
            for index, error in failures
        )
        more = len(self._errors) - len(failures)
        listed = f"<ul>{rows}{f'<li>... {more} more</li>' if more else ''}</ul>" if rows else ""
        return f"<div><code>{html.escape(repr(self))}</code>{self.stats._repr_html_()}{listed}</div>"

    @property
    def status(self) -> RunStatus:
        """How the run ended: ``RunStatus.COMPLETED`` unless it stopped early."""
        return self._status

    @property
    def ok(self) -> bool:
        """True if the run completed and every item succeeded."""
        return not self._errors and self._status is RunStatus.COMPLETED

    def values(self) -> list[R]:
        """All values in input order; raises ``ExceptionGroup`` unless ``ok``."""
        self.raise_on_failure()
        return list(self._values)  # type: ignore[arg-type]

    def successes(self) -> list[tuple[int, R]]:
        """``(index, value)`` for every successful item, in input order."""
        errors = self._errors
        return [(i, v) for i, v in enumerate(self._values) if i not in errors]  # type: ignore[misc]

    def failures(self) -> list[tuple[int, BaseException]]:
        """``(index, exception)`` for every failed item, in input order (usually an
        ``Exception``; a ``BaseException`` when the item raised one, such as ``SystemExit``)."""
        return sorted(self._errors.items())

    def raise_on_failure(self) -> None:
        """Unless ``ok``, raise an ``ExceptionGroup`` of the failures (and of an
        ``IncompleteRunError`` when the run did not complete); else do nothing."""
        if self.ok:
            return
        errors: list[BaseException] = [error for _, error in self.failures()]
        parts = [f"{len(errors)} of {len(self._values)} items failed"] if errors else []
        if self._status is not RunStatus.COMPLETED:
            incomplete = IncompleteRunError(
                self._status, read=self._read, finished=self._finished, expected=self._expected
            )
            errors.append(incomplete)
            parts.append(str(incomplete))
        # An ExceptionGroup unless an item failed with a BaseException (SystemExit...).
        raise BaseExceptionGroup("; ".join(parts), errors)

    def __len__(self) -> int:
        return len(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> list[R]: ...
    def __getitem__(self, index: int | slice) -> R | list[R]:
        self.raise_on_failure()
        return self._values[index]  # type: ignore[return-value]

    def __iter__(self) -> Iterator[R]:
        self.raise_on_failure()
        return iter(self._values)  # type: ignore[arg-type]

    def __contains__(self, value: object) -> bool:
        self.raise_on_failure()
        return value in self._values

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ParallelResult):
            return (self._values, self._errors, self._status) == (other._values, other._errors, other._status)
        if isinstance(other, list | tuple):
            return self.ok and self._values == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not self.ok:
            failed = len(self._errors)
            status = "" if self._status is RunStatus.COMPLETED else f"{self._status.value}: "
            return f"ParallelResult({status}{len(self._values) - failed} ok, {failed} failed)"
        if len(self._values) <= _REPR_MAX_VALUES:
            return f"ParallelResult({self._values!r})"
        shown = ", ".join(repr(v) for v in self._values[:_REPR_MAX_VALUES])
        return f"ParallelResult([{shown}, ...], {len(self._values)} items)"


def _check_item_results(results: object) -> list[ItemResult[Any]]:
    items: list[ItemResult[Any]] = list(results)  # type: ignore[call-overload]
    for item in items:
        if not isinstance(item, ItemResult):
            raise TypeError(f"ParallelResult needs ItemResult objects; got {item!r}")
    return items


def _check_indices(indices: list[int]) -> None:
    """Raise unless the sorted ``indices`` are exactly 0..n-1, naming the first index
    repeated or missing."""
    for position, index in enumerate(indices):
        if index == position:
            continue
        expected = f"one result per index 0..{len(indices) - 1}"
        if position and index == indices[position - 1]:
            raise ValueError(f"ParallelResult needs {expected}; index {index} is repeated")
        raise ValueError(f"ParallelResult needs {expected}; index {position} is missing")


class ResultCollector(Generic[R]):
    """Gathers item results arriving in any order into a ``ParallelResult``."""

    def __init__(self, total: int | None) -> None:
        self._values: list[R | None] = [None] * total if total is not None else []
        self._errors: dict[int, BaseException] = {}

    def add(self, settled: ItemResult[R] | Successes) -> None:
        """Place one item's result, or a run of successes, at its index."""
        if type(settled) is Successes:
            start, end = settled.start, settled.start + len(settled.values)
            if end > len(self._values):
                self._values.extend([None] * (end - len(self._values)))
            self._values[start:end] = settled.values
            return
        result: ItemResult[R] = settled  # type: ignore[assignment]
        index, values = result._index, self._values
        if index >= len(values):
            values.extend([None] * (index + 1 - len(values)))
        if result._error is None:
            values[index] = result._value
        else:
            self._errors[index] = result._error

    def result(
        self,
        status: RunStatus = RunStatus.COMPLETED,
        read: int | None = None,
        finished: int | None = None,
        expected: int | None = None,
    ) -> ParallelResult[R]:
        """The results gathered so far, in input order, for a run that ended with
        ``status`` (see ``ParallelResult._from_parts`` for ``read``, ``finished`` and
        ``expected``). For a ``SIZE_MISMATCH`` they are cut to the ``read`` items: room
        was made for the ``len()`` the input claimed."""
        if status is RunStatus.SIZE_MISMATCH and read is not None:
            del self._values[read:]
        return ParallelResult._from_parts(self._values, self._errors, status, read, finished, expected)
