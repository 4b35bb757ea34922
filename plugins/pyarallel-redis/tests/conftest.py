"""Fixtures: one real ``redis-server`` for the session (restarted if a test stopped it), a
fresh one for tests that stop or restart theirs, and a limiter name of each test's own so
that no two tests share a budget."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator

import pytest
import redis
from redis_server import MISSING_SERVER, RedisServer, find_redis_server

_names = itertools.count()


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = find_redis_server()
    if binary is None:
        pytest.fail(MISSING_SERVER, pytrace=False)
    return binary


@pytest.fixture(scope="session")
def session_server(redis_binary: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server(session_server: RedisServer) -> RedisServer:
    """The session's server, running."""
    if session_server.process is None or session_server.process.poll() is not None:
        session_server.process = None
        session_server.start()
    return session_server


@pytest.fixture
def own_server(redis_binary: str) -> Iterator[RedisServer]:
    """A server of this test's own, to stop and restart."""
    server = RedisServer(redis_binary)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    connection = server.client()
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A limiter name no other test uses."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:60] + f"-{next(_names)}-{time.time_ns()}"
