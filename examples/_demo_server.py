"""A small, deliberately unreliable JSON API for the demo, built on the standard library.

``GET /users/<id>`` answers with a user record, after a few milliseconds of simulated work,
unless:

- the client is over the quota (``quota`` accepted requests in any sliding ``window`` of
  seconds): 429 with a ``Retry-After`` header;
- the user is deleted: 404, every time;
- the user's shard is down: 503, every time;
- the user is "flaky": 503 on its first attempt only (a deterministic ~10% of users).

Every request is counted, so the demo can report what the server saw, retries included.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["BROKEN_USERS", "DELETED_USERS", "UserAPIServer", "running_server"]

HOST = "127.0.0.1"
DELETED_USERS = frozenset({13, 66, 201, 333})  # 404 on every attempt
BROKEN_USERS = frozenset({277})  # 503 on every attempt: retries cannot help
FLAKY_SHARE = 0.10  # share of users whose first attempt fails with 503

_USER_PATH = re.compile(r"/users/(\d+)")


def is_flaky(user_id: int) -> bool:
    """Whether the user's first attempt fails; pseudo-random but the same on every run."""
    # A str seed is hashed with SHA-512, so this does not depend on PYTHONHASHSEED.
    return random.Random(f"flaky-{user_id}").random() < FLAKY_SHARE


class UserAPIServer(ThreadingHTTPServer):
    """The API server and its bookkeeping (quota window, per-user attempts, status counts)."""

    daemon_threads = True
    # socketserver's default backlog of 5 makes the kernel drop connections when many
    # clients connect at once, and a dropped SYN is retried only after a full second.
    request_queue_size = 128

    def __init__(self, *, quota: int, window: float, latency: float = 0.003) -> None:
        super().__init__((HOST, 0), _Handler)  # port 0: the OS picks a free one
        self.quota = quota
        self.window = window
        self.latency = latency
        self._lock = threading.Lock()
        self._accepted: deque[float] = deque()  # arrival times of requests within the quota
        self._attempts: Counter[int] = Counter()  # requests per user id, rejected ones included
        self._served: set[int] = set()  # users that got past the quota at least once
        self.statuses: Counter[int] = Counter()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_port}"

    @property
    def requests(self) -> int:
        """Every request answered so far."""
        with self._lock:
            return self._attempts.total()

    @property
    def retries(self) -> int:
        """Requests beyond the first for the same user: the retries the server saw."""
        with self._lock:
            return sum(count - 1 for count in self._attempts.values())

    def admit(self, user_id: int) -> tuple[HTTPStatus, float]:
        """Count the request; return its status and, for a 429, the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            self._attempts[user_id] += 1
            while self._accepted and self._accepted[0] <= now - self.window:
                self._accepted.popleft()
            if len(self._accepted) >= self.quota:
                return HTTPStatus.TOO_MANY_REQUESTS, self._accepted[0] + self.window - now
            self._accepted.append(now)
            first_time = user_id not in self._served
            self._served.add(user_id)
        if user_id in DELETED_USERS:
            return HTTPStatus.NOT_FOUND, 0.0
        if user_id in BROKEN_USERS or (first_time and is_flaky(user_id)):
            return HTTPStatus.SERVICE_UNAVAILABLE, 0.0
        return HTTPStatus.OK, 0.0

    def record(self, status: HTTPStatus) -> None:
        with self._lock:
            self.statuses[status] += 1


class _Handler(BaseHTTPRequestHandler):
    server: UserAPIServer

    def do_GET(self) -> None:
        match = _USER_PATH.fullmatch(self.path)
        if match is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route for {self.path}"})
            return
        user_id = int(match.group(1))
        status, wait = self.server.admit(user_id)
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            # Retry-After takes whole seconds (RFC 9110), so round up.
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
            self._send(status, {"error": "quota exceeded"}, headers)
            return
        time.sleep(self.server.latency)
        if status == HTTPStatus.OK:
            self._send(status, {"id": user_id, "name": f"user-{user_id}", "email": f"u{user_id}@example.org"})
        else:
            self._send(status, {"error": status.phrase})

    def _send(self, status: HTTPStatus, body: object, headers: dict[str, str] | None = None) -> None:
        self.server.record(status)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the demo's output readable


@contextmanager
def running_server(*, quota: int, window: float) -> Iterator[UserAPIServer]:
    """Serve on an OS-chosen free port in a background thread; shut down cleanly on exit."""
    server = UserAPIServer(quota=quota, window=window)
    # A short poll interval: shutdown() waits for serve_forever to notice it (0.5 s by default).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="demo-api-server", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()  # stops serve_forever and waits for it
        server.server_close()
        thread.join()
