"""The checks a limiter makes on its limits and on what the ``cost``, ``key`` and ``settle``
functions of a :class:`~pyarallel.RateLimit` return.

What the ``cost``, ``key`` and ``settle`` functions give is checked by the limit itself
(``RateLimit.cost_of``, ``key_of`` and ``settled``, as for the local
:class:`pyarallel.Limiter`); this module adds the checks of the limiter's own arguments
and one rule of its own: a key must name the same budget in every process, so it must be
made of values whose ``repr`` is the same everywhere (see :func:`encode_key`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable
from typing import Any

from pyarallel import RateLimit, RateLimitCostError

__all__ = [
    "as_rate_limit",
    "check_name",
    "check_non_negative_number",
    "encode_key",
]

# A key's ``repr`` longer than this is replaced by its SHA-256 in the Redis key.
LONGEST_KEY = 200

_KEY_TYPES = (str, bytes, int, float, bool, type(None))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_positive_number(parameter: str, value: object) -> float:
    """``value`` as a float, or ``TypeError``/``ValueError`` if it is not a finite number > 0."""
    if not _is_number(value):
        raise TypeError(f"{parameter} must be a number greater than 0; got {value!r}")
    number = _as_float(value)
    if math.isnan(number) or number <= 0 or math.isinf(number):
        raise ValueError(f"{parameter} must be a finite number greater than 0; got {value!r}")
    return number


def check_non_negative_number(parameter: str, value: object) -> float:
    """``value`` as a float, or ``TypeError``/``ValueError`` if it is negative, NaN or not a number."""
    if not _is_number(value):
        raise TypeError(f"{parameter} must be a number >= 0; got {value!r}")
    number = _as_float(value)
    if math.isnan(number) or number < 0:
        raise ValueError(f"{parameter} must be a number >= 0; got {value!r}")
    return number


def as_rate_limit(limit: object, position: int, owner: str) -> RateLimit:
    if isinstance(limit, RateLimit):
        return limit
    if _is_number(limit):
        return RateLimit(check_positive_number(f"{owner} limit {position}", limit))
    raise TypeError(
        f"{owner} limits must be RateLimit objects or numbers of calls per second; "
        f"limit {position} is {limit!r}"
    )


def _portable(key: object) -> bool:
    if isinstance(key, tuple):
        return all(_portable(part) for part in key)
    return type(key) in _KEY_TYPES


def encode_key(key: object) -> str:
    """The part of a Redis key naming ``key``'s budget: the same in every process.

    Keys are told apart by their ``repr``, so only values whose ``repr`` does not depend on
    the process are accepted: ``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None`` and
    tuples of them (a ``frozenset``'s order, an object's ``repr`` with its address, would
    differ). Unlike a ``dict``, ``1``, ``1.0`` and ``True`` are three keys. Raises
    ``TypeError`` for any other value."""
    if not _portable(key):
        raise TypeError(
            f"a Redis rate-limit key must be the same in every process: a str, bytes, int, float, "
            f"bool, None or a tuple of them; got {key!r} ({type(key).__name__})"
        )
    text = repr(key)
    if len(text) > LONGEST_KEY:
        return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text


def encoded_key_of(limit: RateLimit, item: object) -> tuple[Hashable, str]:
    """``limit``'s key for ``item`` and its encoding, or ``RateLimitCostError``."""
    key = limit.key_of(item)
    try:
        return key, encode_key(key)
    except TypeError as error:
        raise RateLimitCostError(f"the key function of {limit!r} returned a bad key: {error}") from error


def check_name(name: object) -> str:
    """A limiter name: a non-empty string without braces (it is the Redis Cluster hash tag)."""
    if not isinstance(name, str):
        raise TypeError(f"a Redis limiter name must be a string; got {name!r}")
    if not name or "{" in name or "}" in name:
        raise ValueError(
            f"a Redis limiter name must be a non-empty string without '{{' or '}}'; got {name!r}"
        )
    return name
