"""pyarallel async demo: ~100 concurrent HTTP requests with a rate limit, retry and a
per-request timeout, against a tiny local asyncio HTTP server.

The server (``asyncio.start_server`` on 127.0.0.1, a free port) answers
``GET /square/<n>`` with ``n * n`` after a few milliseconds, but it misbehaves on purpose:

- every 8th number gets ``503 Service Unavailable`` on its first request;
- every 25th number hangs on its first request until the client gives up.

The client is plain ``asyncio.open_connection`` speaking HTTP/1.0. ``async_parallel_map``
runs it over 100 numbers, 20 requests at a time, paced at 250 requests per second, with
``task_timeout`` cancelling a hung request and ``Retry`` trying it (and the 503s) again.

Run it with ``python examples/async_demo.py``; it needs only pyarallel and the standard
library and finishes in a couple of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter

from pyarallel import RateLimit, Retry, TaskTimeoutError, async_parallel_map

NUMBERS = range(1, 101)
CONCURRENCY = 20
RATE = RateLimit(250)  # requests per second; every attempt counts
RETRY = Retry(attempts=3, backoff=0.05, on=(ConnectionError, TimeoutError))
TASK_TIMEOUT = 0.5  # seconds per attempt


class ServiceUnavailable(ConnectionError):
    """The server answered 503: the same request may well succeed later."""


class DemoServer:
    """A tiny HTTP/1.0 server that fails some first requests on purpose."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()  # requests received per number
        self.answered: Counter[int] = Counter()  # status codes sent

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1")
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # skip the headers
            status, body = await self.respond(request_line, reader)
            if status:
                self.answered[status] += 1
                reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
                writer.write(
                    f"HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}".encode("latin-1")
                )
                await writer.drain()
        except ConnectionError:
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def respond(self, request_line: str, reader: asyncio.StreamReader) -> tuple[int, str]:
        parts = request_line.split()
        if len(parts) < 2 or not parts[1].startswith("/square/"):
            return 404, "not found\n"
        n = int(parts[1].removeprefix("/square/"))
        self.requests[n] += 1
        first = self.requests[n] == 1
        if first and n % 25 == 0:
            await reader.read()  # hang until the client gives up and closes the connection
            return 0, ""
        await asyncio.sleep(0.005)  # "work"
        if first and n % 8 == 0:
            return 503, "try again\n"
        return 200, f"{n * n}\n"


async def fetch_square(port: int, n: int) -> int:
    """GET /square/<n> over a fresh HTTP/1.0 connection and return the number in the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /square/{n} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii"))
        await writer.drain()
        response = await reader.read()  # HTTP/1.0: the server closes when done
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = response.decode("latin-1").partition("\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    if status == 503:
        raise ServiceUnavailable(f"/square/{n}: HTTP 503")
    if status != 200:
        raise RuntimeError(f"/square/{n}: unexpected response {head!r}")
    return int(body)


async def main() -> int:
    server_state = DemoServer()
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    attempts: Counter[int] = Counter()

    async def get(n: int) -> int:
        attempts[n] += 1
        return await fetch_square(port, n)

    started = time.perf_counter()
    async with server:
        result = await async_parallel_map(
            get,
            NUMBERS,
            concurrency=CONCURRENCY,
            rate_limit=RATE,
            retry=RETRY,
            task_timeout=TASK_TIMEOUT,
            timeout=30,
        )
        server.close()
    elapsed = time.perf_counter() - started

    wrong = [(i, v) for i, v in result.successes() if v != NUMBERS[i] ** 2]
    failures = result.failures()
    retried = sum(count - 1 for count in attempts.values())
    print(
        f"server: {sum(server_state.requests.values())} requests received, "
        f"{server_state.answered[200]} answered 200, {server_state.answered[503]} answered 503"
    )
    for index, error in failures:
        kind = "timed out" if isinstance(error, TaskTimeoutError) else type(error).__name__
        print(f"  /square/{NUMBERS[index]} failed ({kind}): {error}")
    print(
        f"summary: {len(result)} requests, {len(result) - len(failures)} ok, {len(failures)} failed, "
        f"{retried} retries, {len(wrong)} wrong answers, {elapsed:.2f} s"
    )
    return 0 if not failures and not wrong else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
