"""What happens when Redis forgets the script, restarts, or cannot be reached; and a
Redis Cluster (one node owning every slot, so the cluster's cross-slot checks apply)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis
from pyarallel_redis import UNAVAILABLE_WAIT, RedisLimiter
from redis.cluster import RedisCluster
from redis_server import RedisServer

import pyarallel
from pyarallel import ItemResult, RateLimit


def script_loads(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_script|load", {}).get("calls", 0))


def test_a_flushed_script_cache_fails_no_call(server: RedisServer, name: str, client: redis.Redis) -> None:
    limiter = RedisLimiter(RateLimit(1000, burst=1000), url=server.url, name=name)
    assert limiter.request(0).try_acquire() == 0.0
    loads = script_loads(client)
    client.script_flush()
    assert limiter.request(1).try_acquire() == 0.0  # NOSCRIPT: loaded again, asked again
    assert script_loads(client) == loads + 1
    assert limiter.request(2).try_acquire() == 0.0
    assert script_loads(client) == loads + 1


def test_a_script_flush_in_the_middle_of_a_run(server: RedisServer, name: str, client: redis.Redis) -> None:
    flusher = server.client()

    def call(item: int) -> int:
        if item in (5, 15):
            flusher.script_flush()
        return item

    loads = script_loads(client)
    limiter = RedisLimiter(RateLimit(100), url=server.url, name=name)
    result = pyarallel.parallel_map(call, range(25), rate_limit=limiter, workers=2)
    assert result.values() == list(range(25))
    assert script_loads(client) >= loads + 2
    flusher.close()


def test_fail_closed_waits_while_redis_is_down_and_resumes(
    own_server: RedisServer, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisLimiter(RateLimit(100), url=own_server.url, name=name)
    assert limiter.request(0).try_acquire() == 0.0
    own_server.stop()
    caplog.set_level(logging.WARNING, logger="pyarallel_redis")
    started = time.monotonic()
    reservation = limiter.request(1)
    assert reservation.try_acquire() == UNAVAILABLE_WAIT
    assert reservation.try_acquire() == UNAVAILABLE_WAIT
    assert time.monotonic() - started < 0.5  # a refused connection answers at once
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, warnings  # once per outage
    assert "cannot be reached" in warnings[0]
    assert "fail_closed" in warnings[0]
    own_server.start()
    assert reservation.try_acquire() == 0.0
    assert "can be reached again" in caplog.records[-1].getMessage()


def test_fail_open_grants_while_redis_is_down(
    own_server: RedisServer, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    limit = RateLimit(1, "hour", settle=lambda item, result: 0)
    limiter = RedisLimiter(limit, url=own_server.url, name=name, on_unavailable="fail_open")
    assert limiter.request(0).try_acquire() == 0.0
    assert limiter.request(1).try_acquire() > 60
    own_server.stop()
    caplog.set_level(logging.WARNING, logger="pyarallel_redis")
    granted = [limiter.request(n) for n in range(5)]
    assert [reservation.try_acquire() for reservation in granted] == [0.0] * 5
    assert all(reservation.unlimited for reservation in granted)
    assert granted[0].finished(ItemResult.success(0, None)) is False  # nothing was taken: nothing to settle
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, warnings
    assert "fail_open" in warnings[0]
    own_server.start()  # an empty server: the budget is forgotten
    assert limiter.request(6).try_acquire() == 0.0
    assert limiter.request(7).try_acquire() > 60


def test_settle_and_pauses_are_lost_not_raised_while_redis_is_down(
    own_server: RedisServer, name: str
) -> None:
    limit = RateLimit(10, settle=lambda item, result: 0)
    limiter = RedisLimiter(limit, url=own_server.url, name=name)
    reservation = limiter.request(0)
    assert reservation.try_acquire() == 0.0
    own_server.stop()
    assert reservation.finished(ItemResult.success(0, None)) is False  # the refund is lost
    reservation.throttled(1.0)
    waiting = limiter.request(1)
    assert waiting.try_acquire() == UNAVAILABLE_WAIT
    waiting.cancel()
    with pytest.raises(redis.exceptions.ConnectionError):
        limiter.pause(1.0)  # a user's own call: told


@pytest.mark.parametrize("mode", ["fail_closed", "fail_open"])
def test_a_restart_in_the_middle_of_a_run(own_server: RedisServer, name: str, mode: str) -> None:
    starts: list[float] = []
    lock = threading.Lock()

    def call(item: int) -> int:
        with lock:
            starts.append(time.monotonic())
        time.sleep(0.005)
        return item

    outage: list[float] = []

    def restart() -> None:
        time.sleep(0.3)
        outage.append(time.monotonic())
        own_server.stop()
        time.sleep(0.5)
        outage.append(time.monotonic())
        own_server.start()

    limiter = RedisLimiter(RateLimit(20), url=own_server.url, name=name, on_unavailable=mode)  # type: ignore[arg-type]
    thread = threading.Thread(target=restart)
    thread.start()
    result = pyarallel.parallel_map(call, range(30), rate_limit=limiter, workers=2)
    thread.join()
    assert result.values() == list(range(30))
    down, up = outage
    during = [moment for moment in starts if down + 0.02 < moment < up]
    if mode == "fail_closed":
        assert during == []  # nothing starts while the budget cannot be checked
    else:
        assert len(during) > 0.5 * 20 + 2  # unlimited: more than the rate would allow


def one_node_cluster(binary: str) -> RedisServer:
    server = RedisServer(binary, extra=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
    server.start()
    admin = server.client()
    try:
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + 10
        while "cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO").decode():
            assert time.monotonic() < deadline, "the one-node cluster did not come up"
            time.sleep(0.05)
    except BaseException:
        server.close()
        raise
    finally:
        admin.close()
    return server


def test_every_key_of_a_limiter_is_in_one_cluster_slot(redis_binary: str, name: str) -> None:
    server = one_node_cluster(redis_binary)
    cluster = RedisCluster(host="127.0.0.1", port=server.port)
    try:
        with pytest.raises(redis.exceptions.RedisClusterException):
            cluster.eval("return 1", 2, "a", "b")  # keys in two slots: refused
        limits = (RateLimit(1, "hour", key=lambda item: item[0]), RateLimit(100, cost=len, burst=10))
        limiter = RedisLimiter(*limits, client=cluster, name=name)
        assert limiter.request("ab").try_acquire() == 0.0
        assert limiter.request("ac").try_acquire() > 60
        assert limiter.request("bc").try_acquire() >= 0.0
        limiter.pause(0.05)
        limiter.pause(0.05, key="a")
        keys = [limiter.pause_key, *limiter.bucket_keys("ab"), *limiter.bucket_keys("zz")]
        keys += [key + ":q" for key in limiter.bucket_keys("ab")]
        slots = {cluster.keyslot(key) for key in keys}
        assert len(slots) == 1, slots
        result = pyarallel.parallel_map(
            abs, [-1, -2], rate_limit=RedisLimiter(50, client=cluster, name=name + "2")
        )
        assert result.values() == [1, 2]
    finally:
        cluster.close()
        server.close()
