"""``pyarallel._http_errors``: the HTTP status and ``Retry-After`` read from real clients' exceptions.

The exceptions come from urllib, requests, httpx and aiohttp talking to a real HTTP server on
127.0.0.1 that answers ``/status/<code>?retry_after=<value>`` with that status and header.
"""

from __future__ import annotations

import asyncio
import http
import math
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyarallel._http_errors import (
    MAX_CHAIN_DEPTH,
    RETRYABLE_STATUSES,
    THROTTLE_STATUS,
    header,
    http_status,
    parse_retry_after,
    retry_after,
)

REPO = Path(__file__).resolve().parents[1]
NOW = 1_700_000_000.0  # a fixed "now" for the HTTP-date cases: 2023-11-14 22:13:20 GMT
TIMEOUT = 10


def http_date(timestamp: float) -> str:
    """The IMF-fixdate form of a timestamp, as servers send it."""
    return formatdate(timestamp, usegmt=True)


# -- the server ------------------------------------------------------------------------------------


class StatusHandler(BaseHTTPRequestHandler):
    """``GET /status/<code>[?retry_after=<value>]``: an empty response with that status and header."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        code = int(parts.path.rsplit("/", 1)[-1])
        self.send_response(code)
        for value in parse_qs(parts.query).get("retry_after", []):
            self.send_header("Retry-After", value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The base URL of a threaded HTTP server on 127.0.0.1, stopped after the module."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="http-errors-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


def url_for(base: str, status: int, retry_after_value: str | None) -> str:
    query = "" if retry_after_value is None else f"?retry_after={quote(retry_after_value)}"
    return f"{base}/status/{status}{query}"


# -- each library's real exception -----------------------------------------------------------------


def urllib_error(url: str) -> BaseException:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(url, timeout=TIMEOUT)
    caught.value.close()  # the headers stay readable; the socket does not leak
    error: BaseException = caught.value
    return error


def requests_error(url: str) -> BaseException:
    requests = pytest.importorskip("requests")
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(url, timeout=TIMEOUT)
        with pytest.raises(requests.HTTPError) as caught:
            response.raise_for_status()
    error: BaseException = caught.value
    return error


def httpx_error(url: str) -> BaseException:
    httpx = pytest.importorskip("httpx")
    with httpx.Client(trust_env=False, timeout=TIMEOUT) as client:
        response = client.get(url)
        with pytest.raises(httpx.HTTPStatusError) as caught:
            response.raise_for_status()
    error: BaseException = caught.value
    return error


def aiohttp_error(url: str) -> BaseException:
    aiohttp = pytest.importorskip("aiohttp")

    async def fetch() -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with (
            aiohttp.ClientSession(raise_for_status=True, timeout=timeout) as session,
            session.get(url),
        ):
            pass

    with pytest.raises(aiohttp.ClientResponseError) as caught:
        asyncio.run(fetch())
    error: BaseException = caught.value
    return error


FETCHERS: dict[str, Callable[[str], BaseException]] = {
    "urllib": urllib_error,
    "requests": requests_error,
    "httpx": httpx_error,
    "aiohttp": aiohttp_error,
}

library = pytest.mark.parametrize("fetch", list(FETCHERS.values()), ids=list(FETCHERS))


# -- real exceptions from a real server ------------------------------------------------------------


@library
@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        pytest.param(429, "3", 3.0, id="429-seconds"),
        pytest.param(503, http_date(NOW + 120), 120.0, id="503-http-date"),
        pytest.param(503, http_date(NOW - 3600), 0.0, id="503-past-date"),
        pytest.param(502, None, None, id="502-no-retry-after"),
        pytest.param(504, "in a while", None, id="504-garbage"),
        pytest.param(404, None, None, id="404"),
    ],
)
def test_real_exception_status_and_retry_after(
    server: str, fetch: Callable[[str], BaseException], status: int, value: str | None, expected: float | None
) -> None:
    error = fetch(url_for(server, status, value))
    assert http_status(error) == status
    assert header(error, "Retry-After") == value
    assert header(error, "retry-after") == value
    found = retry_after(error, now=NOW)
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected, abs=1.0)


@library
def test_real_http_date_against_the_wall_clock(server: str, fetch: Callable[[str], BaseException]) -> None:
    error = fetch(url_for(server, 503, http_date(time.time() + 60)))
    found = retry_after(error)
    assert found is not None
    assert 57.0 <= found <= 61.0  # the date is whole seconds; the request took some time


@library
def test_real_exception_is_found_behind_the_users_own(
    server: str, fetch: Callable[[str], BaseException]
) -> None:
    class MyAPIError(Exception):
        pass

    http_error = fetch(url_for(server, 429, "7"))

    def wrap_explicitly() -> None:
        raise MyAPIError("throttled") from http_error

    def wrap_implicitly() -> None:
        try:
            raise http_error
        except Exception:
            raise MyAPIError("raised while handling it")  # only __context__ links them

    for wrap in (wrap_explicitly, wrap_implicitly):
        with pytest.raises(MyAPIError) as caught:
            wrap()
        assert http_status(caught.value) == 429
        assert retry_after(caught.value, now=NOW) == 7.0


# -- what is not an HTTP error ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [ValueError("boom"), OSError(5, "io"), TimeoutError(), KeyboardInterrupt(), SystemExit(429)],
    ids=lambda error: type(error).__name__,
)
def test_non_http_exception_gives_none(error: BaseException) -> None:
    assert http_status(error) is None
    assert header(error, "Retry-After") is None
    assert retry_after(error) is None


def test_requests_error_without_a_response_gives_none() -> None:
    requests = pytest.importorskip("requests")
    error = requests.HTTPError("no response attached")
    assert error.response is None
    assert http_status(error) is None
    assert retry_after(error) is None


class Carrier(Exception):
    """An exception of some other client, with whatever attributes a test gives it."""

    def __init__(self, **attributes: object) -> None:
        super().__init__("carrier")
        for name, value in attributes.items():
            setattr(self, name, value)


class Response:
    def __init__(self, **attributes: object) -> None:
        for name, value in attributes.items():
            setattr(self, name, value)


@pytest.mark.parametrize(
    "error",
    [
        Carrier(status=True),
        Carrier(status_code=False),
        Carrier(status="429"),
        Carrier(status=429.0),
        Carrier(status=1),
        Carrier(status=600),
        Carrier(status=0),
        Carrier(response=None),
        Carrier(response=Response(status_code="503")),
        Carrier(response=Response(status_code=None, headers={"Retry-After": "3"})),
        Carrier(code=429),
    ],
    ids=lambda error: repr(vars(error)),
)
def test_attributes_that_are_no_http_status_are_ignored(error: BaseException) -> None:
    assert http_status(error) is None
    assert retry_after(error) is None


def test_generic_status_on_the_exception_or_its_response() -> None:
    assert http_status(Carrier(status_code=503)) == 503
    assert http_status(Carrier(status=502)) == 502
    assert http_status(Carrier(response=Response(status=504))) == 504
    assert http_status(Carrier(status="?", response=Response(status_code=429))) == 429
    found = http_status(Carrier(status=http.HTTPStatus.TOO_MANY_REQUESTS))
    assert found == 429
    assert type(found) is int


def test_headers_come_from_where_the_status_was_found() -> None:
    error = Carrier(
        headers={"Retry-After": "1"}, response=Response(status_code=503, headers={"Retry-After": "9"})
    )
    assert retry_after(error) == 9.0


def test_a_plain_dict_of_headers_is_searched_case_insensitively() -> None:
    error = Carrier(status=429, headers={"retry-AFTER": " 7 "})
    assert header(error, "Retry-After") == " 7 "
    assert retry_after(error) == 7.0


def test_missing_or_odd_headers_give_none() -> None:
    assert retry_after(Carrier(status=429)) is None
    assert retry_after(Carrier(status=429, headers=None)) is None  # aiohttp may keep no headers
    assert retry_after(Carrier(status=429, headers={"Retry-After": 3})) is None
    assert retry_after(Carrier(status=429, headers=["Retry-After", "3"])) is None
    assert http_status(Carrier(status=429, headers=None)) == 429


def test_a_property_that_raises_is_ignored() -> None:
    class Touchy(Exception):
        @property
        def response(self) -> object:
            raise RuntimeError("no response")  # as httpx's ``.request`` does when unset

        @property
        def status(self) -> int:
            raise RuntimeError("no status")

    assert http_status(Touchy()) is None


def test_aiohttp_code_is_not_read(recwarn: pytest.WarningsRecorder) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    error = aiohttp.ClientResponseError(None, (), status=503, headers=None)
    assert http_status(error) == 503
    assert retry_after(error) is None
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


# -- the chain behind an exception -----------------------------------------------------------------


def chained(depth: int, innermost: BaseException) -> BaseException:
    """``innermost`` with ``depth`` plain exceptions raised ``from`` it, one on top of another."""
    error = innermost
    for level in range(depth):
        outer = RuntimeError(f"level {level}")
        outer.__cause__ = error
        error = outer
    return error


def test_the_chain_is_looked_at_to_a_bounded_depth() -> None:
    inner = Carrier(status=503, headers={"Retry-After": "2"})
    assert http_status(chained(MAX_CHAIN_DEPTH, inner)) == 503
    assert retry_after(chained(MAX_CHAIN_DEPTH, inner)) == 2.0
    assert http_status(chained(MAX_CHAIN_DEPTH + 1, inner)) is None


def test_the_nearest_http_error_in_the_chain_wins() -> None:
    outer = Carrier(status=503, headers={"Retry-After": "1"})
    outer.__cause__ = Carrier(status=429, headers={"Retry-After": "9"})
    assert http_status(outer) == 503
    assert retry_after(outer) == 1.0


def test_raise_from_none_hides_the_context() -> None:
    def hide() -> None:
        try:
            raise Carrier(status=429)
        except Carrier:
            raise ValueError("unrelated") from None

    with pytest.raises(ValueError, match="unrelated") as caught:
        hide()
    assert caught.value.__context__ is not None
    assert http_status(caught.value) is None


def test_a_cycle_in_the_chain_ends_the_walk() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert http_status(first) is None
    looped = Carrier(status=502)
    looped.__cause__ = looped
    assert http_status(RuntimeError("x")) is None
    assert http_status(looped) == 502


# -- parse_retry_after -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  120\t", 120.0),
        ("1.5", 1.5),
        ("007", 7.0),
        ("-1", None),
        ("-0.5", None),
        ("+5", None),
        ("1e3", None),
        ("inf", None),
        ("Infinity", None),
        ("nan", None),
        ("1_000", None),
        ("1.", None),
        (".5", None),
        ("1.5.5", None),
        ("١٢", None),  # non-ASCII digits
        ("9" * 400, None),  # too large for a float
        ("", None),
        ("   ", None),
        ("soon", None),
        ("3 seconds", None),
    ],
)
def test_parse_delta_seconds(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Tue, 14 Nov 2023 22:15:20 GMT", 120.0, id="imf-fixdate"),
        pytest.param("Tuesday, 14-Nov-23 22:15:20 GMT", 120.0, id="rfc850"),
        pytest.param("Tue Nov 14 22:15:20 2023", 120.0, id="asctime"),
        pytest.param("  Tue, 14 Nov 2023 22:15:20 GMT ", 120.0, id="whitespace"),
        pytest.param("Tue, 14 Nov 2023 22:15:20 -0000", 120.0, id="no-zone"),
        pytest.param("Wed, 15 Nov 2023 00:15:20 +0200", 120.0, id="offset"),
        pytest.param("Tue, 14 Nov 2023 22:13:20 GMT", 0.0, id="now"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 GMT", 0.0, id="past"),
        pytest.param("Tue, 99 Nov 2023 22:15:20 GMT", None, id="no-such-day"),
        pytest.param("Tue, 14 Foo 2023 22:15:20 GMT", None, id="no-such-month"),
    ],
)
def test_parse_http_date(value: str, expected: float | None) -> None:
    assert http_date(NOW) == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_http_date_defaults_to_the_wall_clock() -> None:
    found = parse_retry_after(http_date(time.time() + 30))
    assert found is not None
    assert 28.0 <= found <= 30.0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**6))
def test_any_delta_seconds_parses_to_itself(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == seconds


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000), st.integers(min_value=-(10**6), max_value=10**6))
def test_any_http_date_parses_to_the_time_until_it(now: int, delta: int) -> None:
    assert parse_retry_after(http_date(now + delta), now=now) == max(0, delta)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_no_string_makes_the_parser_raise(value: str) -> None:
    found = parse_retry_after(value, now=NOW)
    assert found is None or (math.isfinite(found) and found >= 0.0)


# -- the constants and the import ------------------------------------------------------------------


def test_constants() -> None:
    assert frozenset({429, 502, 503, 504}) == RETRYABLE_STATUSES
    assert THROTTLE_STATUS == 429
    assert THROTTLE_STATUS in RETRYABLE_STATUSES


IMPORT_CHECK = """
import sys
import pyarallel
before = set(sys.modules)
import pyarallel._http_errors
new = sorted(set(sys.modules) - before - {"pyarallel._http_errors"})
clients = sorted(name for name in sys.modules if name.split(".")[0] in {"requests", "httpx", "aiohttp"})
print("new:", [name for name in new if name.split(".")[0] not in sys.stdlib_module_names])
print("clients:", clients)
"""


def test_importing_the_module_imports_no_http_client() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["new: []", "clients: []"], done.stdout
