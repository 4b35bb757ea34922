"""A real ``redis-server`` in a subprocess, on 127.0.0.1 and a free port, for the tests and
the benchmark: no persistence (``--save ''``, ``--appendonly no``), its files in a
temporary directory, stopped (or restarted on the same port) on demand."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["MISSING_SERVER", "RedisServer", "find_redis_server", "free_port"]

MISSING_SERVER = (
    "redis-server was not found on PATH nor at /usr/bin/redis-server: install the Debian package "
    "`redis-server` (apt-get update && apt-get install -y redis-server); the CI script installs it"
)


def find_redis_server() -> str | None:
    """The ``redis-server`` binary, or None."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def free_port(*, cluster: bool = False) -> int:
    """A free port on 127.0.0.1; with ``cluster``, one whose cluster bus port (10000 more)
    is free too, so at most 55535."""
    if not cluster:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            return port
    for _ in range(100):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as probe, socket.socket() as bus:
                probe.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


class RedisServer:
    """``redis-server`` on ``127.0.0.1:<port>``; ``start()``, ``stop()``, ``restart()``."""

    def __init__(self, binary: str, *, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.binary = binary
        cluster = "--cluster-enabled" in extra
        self.port = free_port(cluster=cluster) if port is None else port
        self.extra = tuple(extra)
        self.directory = Path(tempfile.mkdtemp(prefix="pyarallel-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **options)  # type: ignore[arg-type]

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None, "already running"
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        command += ["--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"), *self.extra]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        probe = self.client(socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{log}")
                time.sleep(0.01)
        finally:
            probe.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)  # at once, as a crash: nothing saved
        process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
