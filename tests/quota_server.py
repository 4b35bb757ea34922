"""A real local HTTP API that enforces its own quotas, for the tests of pyarallel's quotas.

``QuotaServer`` answers ``GET`` (or ``POST``, whose body is ignored) on any path, on
127.0.0.1 and an OS-chosen port, with a JSON body. Query parameters:

- ``key``: the budget the request is charged to, for a :class:`Quota` with ``per_key``;
- ``tokens``: the request's declared cost in tokens (a float, default 1);
- ``used``: the tokens the request really used (default: ``tokens``), echoed back;
- ``item``: echoed back.

Every quota is checked atomically, under one lock: a request is accepted only if, for every
quota, the units it already accepted in the last ``window`` seconds (for the request's key
if ``per_key``) plus the request's own units fit within ``limit``. The request's own units
are 1 for a ``"requests"`` quota and its declared ``tokens`` for a ``"tokens"`` quota. An
accepted request is then charged to every quota: 1 to a requests quota, and to a tokens
quota its ``used`` figure (``charge="used"``, the default, as an LLM API charges the tokens
really used) or its declared ``tokens`` (``charge="declared"``). With ``charge="used"`` a
request that used more than it declared can therefore take a tokens window past its limit.

An accepted request at time ``t`` counts in the window ``[t, t + window)``. Accepted: 200,
``{"ok": true, "key", "item", "used_tokens", "at"}``. Refused: 429 with a ``Retry-After``
header saying when the request would fit (see ``retry_after=``) and the body
``{"error": "rate limited", "retry_after": <float seconds>}``. A request whose own units
exceed a quota's limit can never fit: 429 without ``Retry-After`` and ``"retry_after": null``.
A malformed ``tokens`` or ``used`` (not a finite number >= 0) answers 400.

Every request is recorded, refused ones included, with its arrival time on
``time.monotonic()``'s clock; the arrival time is taken under the quota lock, so the
recorded times are exactly the ones the quota accounting used and are in order.
"""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

__all__ = ["Quota", "QuotaServer", "Request", "get"]

HOST = "127.0.0.1"

Unit = Literal["requests", "tokens"]
RetryAfterForm = Literal["seconds", "date", "none"]
Charge = Literal["used", "declared"]


@dataclass(frozen=True)
class Quota:
    """``limit`` units per sliding ``window`` seconds.

    ``unit`` is ``"requests"`` (each request costs 1) or ``"tokens"`` (each request costs
    its ``tokens`` query parameter, default 1). ``per_key``: a separate budget for each
    value of the ``key`` query parameter (requests without one share the budget of ``None``).
    """

    limit: float
    window: float
    unit: Unit = "requests"
    per_key: bool = False

    def __post_init__(self) -> None:
        if self.unit not in ("requests", "tokens"):
            raise ValueError(f"unit must be 'requests' or 'tokens', not {self.unit!r}")
        if not (self.limit > 0 and math.isfinite(self.limit)):
            raise ValueError(f"limit must be a finite number > 0, not {self.limit!r}")
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ValueError(f"window must be a finite number > 0, not {self.window!r}")


@dataclass(frozen=True)
class Request:
    """One request the server received, accepted or not."""

    at: float  # time.monotonic() when the server took it up (before the quota check)
    path: str  # without the query string
    key: str | None
    tokens: float  # declared (the ``tokens`` parameter; 1 if absent, 0 if malformed)
    status: int  # 200, 429, the forced ``fail_status``, or 400 for a malformed query
    used_tokens: float  # the ``used`` parameter (default: ``tokens``)
    item: str | None = None  # the ``item`` parameter


class _Window:
    """The (time, units) charges within one quota's window, for one key, oldest first."""

    __slots__ = ("charges", "total")

    def __init__(self) -> None:
        self.charges: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def prune(self, now: float, window: float) -> None:
        # A charge at t counts in [t, t + window): it is out once t + window <= now.
        while self.charges and self.charges[0][0] + window <= now:
            _, units = self.charges.popleft()
            self.total -= units
        if not self.charges:
            self.total = 0.0  # no float drift left behind

    def add(self, at: float, units: float) -> None:
        self.charges.append((at, units))
        self.total += units

    def fits_at(self, units: float, limit: float, window: float, now: float) -> float:
        """When (>= ``now``) a request of ``units`` would fit, if nothing else is accepted."""
        if self.total + units <= limit:
            return now
        remaining = self.total
        for at, charged in self.charges:
            remaining -= charged
            if remaining + units <= limit:
                return at + window
        # Reached only by float rounding (units <= limit is checked first): once all leave.
        return self.charges[-1][0] + window if self.charges else now


class QuotaServer:
    """The API server, its quotas and the record of every request it received.

    ``retry_after`` is the form of the ``Retry-After`` header on a 429: ``"seconds"``
    (whole seconds rounded up, at least 1), ``"date"`` (an HTTP-date of the wall-clock time
    the request would fit, rounded up to the next whole second) or ``"none"`` (no header).
    ``latency``: seconds the handler sleeps before answering any request. ``fail_status``:
    answer this status to the first ``fail_first`` requests (to every request if
    ``fail_first`` is 0), without checking or charging the quotas. ``charge``: what an
    accepted request is charged to a tokens quota (see the module docstring).
    """

    def __init__(
        self,
        quotas: Sequence[Quota] = (),
        *,
        retry_after: RetryAfterForm = "seconds",
        latency: float = 0.0,
        fail_status: int | None = None,
        fail_first: int = 0,
        charge: Charge = "used",
    ) -> None:
        if retry_after not in ("seconds", "date", "none"):
            raise ValueError(f"retry_after must be 'seconds', 'date' or 'none', not {retry_after!r}")
        if charge not in ("used", "declared"):
            raise ValueError(f"charge must be 'used' or 'declared', not {charge!r}")
        if latency < 0 or fail_first < 0:
            raise ValueError("latency and fail_first must be >= 0")
        self.retry_after: RetryAfterForm = retry_after
        self.latency = latency
        self.fail_status = fail_status
        self.fail_first = fail_first
        self.charge: Charge = charge
        self._lock = threading.Lock()
        self._quotas: tuple[Quota, ...] = tuple(quotas)
        self._windows: list[dict[str | None, _Window]] = [{} for _ in self._quotas]
        self._records: list[Request] = []
        self._failed = 0  # forced failures answered so far
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; available once started."""
        if self._httpd is None:
            raise RuntimeError("the server is not running: call start() first")
        return f"http://{HOST}:{self._httpd.server_port}"

    def start(self) -> QuotaServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread; return ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            # A short poll interval: shutdown() waits for serve_forever to notice it.
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="quota-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and join the server's thread (a no-op if not running)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.shutdown()  # stops serve_forever and waits for it
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> QuotaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- inspection and control --------------------------------------------------------

    def requests(self, *, status: int | None = None, key: str | None = None) -> list[Request]:
        """The requests received so far, in arrival order; ``None`` filters leave them all in."""
        with self._lock:
            records = list(self._records)
        return [
            r for r in records if (status is None or r.status == status) and (key is None or r.key == key)
        ]

    def accepted(self, *, key: str | None = None) -> list[Request]:
        """The requests answered 200."""
        return self.requests(status=HTTPStatus.OK, key=key)

    def refused(self, *, key: str | None = None) -> list[Request]:
        """The requests answered 429."""
        return self.requests(status=HTTPStatus.TOO_MANY_REQUESTS, key=key)

    def reset(self) -> None:
        """Forget every request: empty the record, the quota windows and the failure count."""
        with self._lock:
            self._records.clear()
            self._windows = [{} for _ in self._quotas]
            self._failed = 0

    def set_quotas(self, quotas: Iterable[Quota]) -> None:
        """Enforce ``quotas`` from now on, in place of the current ones.

        The new windows are filled from the requests already accepted, so a new quota
        counts what the server accepted within its window before the change.
        """
        new = tuple(quotas)
        now = time.monotonic()
        with self._lock:
            windows: list[dict[str | None, _Window]] = [{} for _ in new]
            for record in self._records:
                if record.status != HTTPStatus.OK:
                    continue
                for quota, by_key in zip(new, windows, strict=True):
                    if record.at + quota.window > now:
                        bucket = by_key.setdefault(record.key if quota.per_key else None, _Window())
                        bucket.add(record.at, self._units(quota.unit, record))
            self._quotas = new
            self._windows = windows

    def max_in_window(
        self,
        window: float,
        *,
        unit: Unit = "requests",
        key: str | None = None,
        status: int | None = HTTPStatus.OK,
    ) -> float:
        """The most units in any sliding window ``[t, t + window)`` among the recorded
        requests with ``status`` (and ``key``, if given; ``None`` means any).

        Units are requests, or for ``unit="tokens"`` the tokens the server charges (per
        ``charge``). For asserting that a quota was never exceeded.
        """
        if unit not in ("requests", "tokens"):
            raise ValueError(f"unit must be 'requests' or 'tokens', not {unit!r}")
        records = self.requests(status=status, key=key)
        best = total = 0.0
        end = 0
        for first in records:  # in time order: a window starting at each request is enough
            while end < len(records) and records[end].at < first.at + window:
                total += self._units(unit, records[end])
                end += 1
            best = max(best, total)
            total -= self._units(unit, first)
        return best

    # -- the quota check -----------------------------------------------------------------

    def _units(self, unit: Unit, record: Request) -> float:
        """What an accepted ``record`` is charged to a quota counting ``unit``."""
        if unit == "requests":
            return 1.0
        return record.used_tokens if self.charge == "used" else record.tokens

    def _record_malformed(self, path: str, key: str | None, item: str | None) -> None:
        with self._lock:  # the time is taken under the lock to keep the record in order
            self._records.append(Request(time.monotonic(), path, key, 0.0, HTTPStatus.BAD_REQUEST, 0.0, item))

    def _admit(
        self, path: str, key: str | None, tokens: float, used: float, item: str | None
    ) -> tuple[Request, float | None]:
        """Record the request and decide its status; for a 429, also the seconds until it
        would fit (``None``: never)."""
        with self._lock:
            now = time.monotonic()
            if self.fail_status is not None and (self.fail_first == 0 or self._failed < self.fail_first):
                self._failed += 1
                record = Request(now, path, key, tokens, self.fail_status, used, item)
                self._records.append(record)
                return record, None
            fits_at = now
            never = False
            buckets: list[tuple[Quota, _Window]] = []
            for quota, by_key in zip(self._quotas, self._windows, strict=True):
                bucket = by_key.setdefault(key if quota.per_key else None, _Window())
                bucket.prune(now, quota.window)
                buckets.append((quota, bucket))
                units = 1.0 if quota.unit == "requests" else tokens
                if units > quota.limit:
                    never = True
                else:
                    fits_at = max(fits_at, bucket.fits_at(units, quota.limit, quota.window, now))
            if never or fits_at > now:
                record = Request(now, path, key, tokens, HTTPStatus.TOO_MANY_REQUESTS, used, item)
                self._records.append(record)
                return record, None if never else fits_at - now
            record = Request(now, path, key, tokens, HTTPStatus.OK, used, item)
            for quota, bucket in buckets:
                bucket.add(now, self._units(quota.unit, record))
            self._records.append(record)
            return record, None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 makes the kernel drop connections when many clients
    # connect at once, and a dropped SYN is retried only after a full second.
    request_queue_size = 128

    def __init__(self, owner: QuotaServer) -> None:
        super().__init__((HOST, 0), _Handler)  # port 0: the OS picks a free one
        self.owner = owner


class _BadQuery(ValueError):
    pass


def _number(query: dict[str, list[str]], name: str, default: float) -> float:
    values = query.get(name)
    if not values:
        return default
    try:
        value = float(values[-1])
    except ValueError:
        raise _BadQuery(f"{name} must be a number, not {values[-1]!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise _BadQuery(f"{name} must be a finite number >= 0, not {values[-1]!r}")
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:
        owner = self.server.owner
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        key = query["key"][-1] if "key" in query else None
        item = query["item"][-1] if "item" in query else None
        try:
            tokens = _number(query, "tokens", 1.0)
            used = _number(query, "used", tokens)
        except _BadQuery as error:
            owner._record_malformed(parts.path, key, item)
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        record, wait = owner._admit(parts.path, key, tokens, used, item)
        if owner.latency:
            time.sleep(owner.latency)
        if record.status == HTTPStatus.OK:
            body = {"ok": True, "key": key, "item": item, "used_tokens": used, "at": record.at}
            self._send(record.status, body)
        elif record.status == HTTPStatus.TOO_MANY_REQUESTS:
            headers = {} if wait is None else _retry_after(owner.retry_after, wait)
            self._send(record.status, {"error": "rate limited", "retry_after": wait}, headers)
        else:
            self._send(record.status, {"error": "forced failure", "status": record.status})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # ignored: the query string carries everything
        self.do_GET()

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


def _retry_after(form: RetryAfterForm, wait: float) -> dict[str, str]:
    if form == "seconds":
        return {"Retry-After": str(max(1, math.ceil(wait)))}  # RFC 9110: whole seconds
    if form == "date":
        return {"Retry-After": email.utils.formatdate(math.ceil(time.time() + wait), usegmt=True)}
    return {}


def get(url: str, *, timeout: float = 10.0, **params: object) -> dict[str, Any]:
    """GET ``url`` with ``params`` as its query string (``None`` values left out) and
    return the JSON body. A non-2xx answer raises :class:`urllib.error.HTTPError`, as
    ``urllib`` does."""
    query = urllib.parse.urlencode({name: value for name, value in params.items() if value is not None})
    if query:
        url = f"{url}{'&' if '?' in url else '?'}{query}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body
