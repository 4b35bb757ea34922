"""Frozen value objects without ``dataclasses``.

Building a frozen dataclass costs about 1 ms, and importing ``dataclasses`` a few more: a
tenth of what a script pays for its first call, so the value objects on that path are
built on this small base instead.
"""

from __future__ import annotations

__all__ = ["FrozenValue"]


class FrozenValue:
    """Base of immutable value objects with slots: a subclass lists its fields in
    ``__slots__`` and, in constructor order, in ``__match_args__``, and sets them in its
    ``__init__`` with ``_set``. Instances are equal when of the same type with equal
    fields, hash by their fields, show them in ``repr``, pickle, and refuse assignment
    with ``dataclasses.FrozenInstanceError``, as a frozen dataclass would.
    """

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()  # the fields, in the order of the constructor's arguments

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError  # only when someone tries

        raise FrozenInstanceError(f"{type(self).__name__} is immutable; cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"{type(self).__name__} is immutable; cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._fields()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), self._fields())
