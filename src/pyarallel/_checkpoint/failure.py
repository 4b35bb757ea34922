"""How a checkpoint keeps an item's failure: as text, never as a pickled exception."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from pyarallel._errors import PyarallelError

__all__ = ["RecordedFailure", "describe_failure"]


class RecordedFailure(PyarallelError):
    """The failure of an item as an earlier run of the job recorded it in its checkpoint.

    The original exception is not kept: only ``error_type`` (its class, qualified by its
    module unless a built-in), ``message`` (its ``str()``) and ``traceback`` (the
    formatted traceback, as text), so that reading a checkpoint never unpickles an
    exception. ``key`` is the item's key (its input index, or its ``checkpoint_key=``).
    The recorded traceback is also a note of the exception, so that printing it shows
    where the original failure happened.
    """

    def __init__(self, error_type: str, message: str, traceback: str, *, key: Hashable = None) -> None:
        super().__init__(error_type, message, traceback)
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.key = key
        if traceback:  # shown under this exception's own traceback when it is printed
            self.add_note(f"The traceback recorded by the earlier run:\n{traceback.rstrip()}")

    def __str__(self) -> str:
        described = f"{self.error_type}: {self.message}" if self.message else self.error_type
        return f"the recorded failure of an earlier run: {described}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_type!r}, {self.message!r}, key={self.key!r})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.error_type, self.message, self.traceback, self.key))


def _rebuild(error_type: str, message: str, traceback: str, key: Hashable) -> RecordedFailure:
    return RecordedFailure(error_type, message, traceback, key=key)


def describe_failure(error: BaseException) -> tuple[str, str, str]:
    """``error`` as text: its type's name (module-qualified unless a built-in), its
    ``str()`` and its formatted traceback (with its causes), whatever its methods raise.
    A :class:`RecordedFailure` (recorded again by a later run) keeps its original text."""
    if isinstance(error, RecordedFailure):
        return error.error_type, error.message, error.traceback
    kind = type(error)
    module = kind.__module__
    name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    return name, _text(error, str, "message"), _text(error, _formatted_traceback, "traceback")


def _formatted_traceback(error: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(error))


def _text(error: BaseException, render: Callable[[BaseException], object], what: str) -> str:
    """``render(error)`` as a str; a placeholder naming ``what`` if it raises."""
    try:
        text = render(error)
    except Exception as failure:
        return f"<{what} unavailable: {type(failure).__name__} raised while formatting it>"
    return text if isinstance(text, str) else repr(text)
