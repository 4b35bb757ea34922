"""Read the HTTP status and ``Retry-After`` out of an exception, whichever HTTP client raised it.

This backs ``Retry.for_http()``. It understands the exceptions of **urllib**, **requests**,
**httpx** and **aiohttp** without importing any of them: it only reads attributes, so a user
who has none of those libraries pays nothing, and one who has them gets no import side effects.

Where each library keeps the status and the headers:

* ``urllib.error.HTTPError``: ``.status`` (the same as ``.code``) and ``.headers``
  (an ``email.message.Message``);
* ``requests.exceptions.HTTPError``: ``.response.status_code`` and ``.response.headers``
  (``.response`` may be ``None``);
* ``httpx.HTTPStatusError``: ``.response.status_code`` and ``.response.headers``;
* ``aiohttp.ClientResponseError``: ``.status`` and ``.headers`` (which may be ``None``).

Anything else that carries an int ``status_code`` or ``status`` attribute, on itself or on its
``.response``, is read the same way. A status counts only when it is an ``int`` (``bool`` is not)
between 100 and 599, so an unrelated attribute that happens to be called ``status`` is not taken
for an HTTP status. ``.code`` is never read: ``SystemExit.code`` is no HTTP status, and aiohttp's
``.code`` warns that it is deprecated.

**Chained exceptions.** When the exception itself carries no status, the exceptions behind it are
looked at too, in the order Python's traceback shows them: ``__cause__`` (``raise ... from err``),
else ``__context__`` (raised while handling ``err``) unless ``raise ... from None`` suppressed it.
At most :data:`MAX_CHAIN_DEPTH` exceptions behind it are looked at, and a cycle stops the walk.
So ``raise MyAPIError(...) from http_error`` is still recognised as that HTTP error.

Importing this module imports nothing beyond ``math``, ``time`` and ``collections.abc``; the date
parser (``email.utils``) is imported the first time a ``Retry-After`` date has to be read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping

__all__ = [
    "MAX_CHAIN_DEPTH",
    "RETRYABLE_STATUSES",
    "THROTTLE_STATUS",
    "header",
    "http_status",
    "parse_retry_after",
    "retry_after",
]

RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
"""Statuses worth retrying: too many requests, bad gateway, service unavailable, gateway timeout."""

THROTTLE_STATUS = 429
"""``429 Too Many Requests``: the server is rate limiting this client."""

MAX_CHAIN_DEPTH = 5
"""How many exceptions behind the raised one (through ``__cause__``/``__context__``) are looked at."""

_STATUS_ATTRIBUTES = ("status_code", "status")


def http_status(error: BaseException) -> int | None:
    """The HTTP status the exception (or one chained behind it) carries, or ``None`` if it carries none."""
    found = _find_http_error(error)
    return None if found is None else found[0]


def header(error: BaseException, name: str) -> str | None:
    """The value of response header ``name`` (any letter case) on the HTTP error found in ``error``.

    The headers are read from the same exception (or response) that :func:`http_status` takes
    the status from; ``None`` when there is no such error, it kept no headers, or lacks this one.
    """
    found = _find_http_error(error)
    if found is None:
        return None
    headers = _attribute(found[1], "headers")
    return None if headers is None else _lookup(headers, name)


def retry_after(error: BaseException, *, now: float | None = None) -> float | None:
    """Seconds the server asked the client to wait (its ``Retry-After`` header), or ``None``.

    ``None`` when the exception is no HTTP error, the response had no ``Retry-After`` or the
    value cannot be read; see :func:`parse_retry_after` for the forms that are read and for ``now``.
    """
    value = header(error, "Retry-After")
    return None if value is None else parse_retry_after(value, now=now)


def parse_retry_after(value: str, *, now: float | None = None) -> float | None:
    """Seconds to wait that a ``Retry-After`` value asks for, or ``None`` when it cannot be read.

    Two forms are read, with whitespace around them ignored:

    * delta-seconds, ``"120"`` (a decimal fraction such as ``"1.5"`` is tolerated); signs,
      exponents, ``inf`` and ``nan`` are not numbers here, and a value too large for a float gives
      ``None``;
    * an HTTP-date, ``"Sun, 06 Nov 1994 08:49:37 GMT"``, or the obsolete RFC 850
      (``"Sunday, 06-Nov-94 08:49:37 GMT"``) and asctime (``"Sun Nov  6 08:49:37 1994"``) forms;
      a date without a zone is taken as GMT, as HTTP-dates always are. The result is the date
      minus ``now`` (``time.time()`` when not given: HTTP-dates are wall-clock), and ``0.0`` for a
      date already past.

    Never raises for any string.
    """
    text = value.strip()
    if not text:
        return None
    if _is_delta_seconds(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None  # too many digits for a float
    return _seconds_until_date(text, time.time() if now is None else now)


def _find_http_error(error: BaseException) -> tuple[int, object] | None:
    """``(status, holder)`` for the first exception in the chain that carries a status, else ``None``.

    ``holder`` is the object the status was read from (the exception or its ``.response``);
    its ``.headers`` are the response headers.
    """
    for exception in _chain(error):
        found = _status_of(exception)
        if found is not None:
            return found
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The exception, then up to :data:`MAX_CHAIN_DEPTH` exceptions behind it, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) <= MAX_CHAIN_DEPTH:
        seen.add(id(current))
        yield current
        current = _behind(current)


def _behind(exception: BaseException) -> BaseException | None:
    """The exception Python's traceback shows behind this one, or ``None``."""
    if exception.__cause__ is not None:
        return exception.__cause__
    return None if exception.__suppress_context__ else exception.__context__


def _status_of(exception: BaseException) -> tuple[int, object] | None:
    """``(status, holder)`` if the exception, or else its ``.response``, carries an HTTP status."""
    # requests' Response is falsy for 4xx/5xx (``bool(response) == response.ok``): test for None only.
    for holder in (exception, _attribute(exception, "response")):
        if holder is None:
            continue
        for name in _STATUS_ATTRIBUTES:
            status = _as_status(_attribute(holder, name))
            if status is not None:
                return status, holder
    return None


def _as_status(value: object) -> int | None:
    """The value as an HTTP status (an ``int``, not a ``bool``, from 100 to 599), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int(value)  # an IntEnum such as http.HTTPStatus becomes a plain int
    return None


def _attribute(holder: object, name: str) -> object:
    """``holder.name``, or ``None`` when it is missing or reading it raises (a property may)."""
    try:
        return getattr(holder, name, None)
    except Exception:
        return None


def _lookup(headers: object, name: str) -> str | None:
    """Header ``name`` from a headers object, whatever the letter case; ``None`` if absent.

    The libraries' header objects (``email.message.Message``, requests' ``CaseInsensitiveDict``,
    ``httpx.Headers``, aiohttp's ``CIMultiDictProxy``) all match case-insensitively in ``.get``;
    a plain mapping is searched key by key as well.
    """
    get = _attribute(headers, "get")
    if callable(get):
        try:
            value = get(name)
        except Exception:
            value = None
        if isinstance(value, str):
            return value
    if isinstance(headers, Mapping):
        wanted = name.lower()
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
                return value
    return None


def _is_delta_seconds(text: str) -> bool:
    """Whether the text is ASCII digits, optionally followed by a dot and more digits."""
    whole, dot, fraction = text.partition(".")
    return _is_digits(whole) and (not dot or _is_digits(fraction))


def _is_digits(text: str) -> bool:
    """Whether the text is one or more ASCII digits."""
    return text.isascii() and text.isdigit()


def _seconds_until_date(text: str, now: float) -> float | None:
    """Seconds from ``now`` until the HTTP-date ``text`` (``0.0`` if past), or ``None`` if no date."""
    from datetime import UTC
    from email.utils import parsedate_to_datetime

    try:
        moment = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return max(0.0, moment.timestamp() - now)
    except (OverflowError, ValueError, OSError):
        return None
