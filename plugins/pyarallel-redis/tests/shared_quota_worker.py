"""One of the processes sharing a quota (run by ``test_shared_quota``): waits until the
wall-clock moment ``start_at``, then runs ``parallel_map`` with 4 threads over ``count``
items under ``RedisLimiter(RateLimit(rate), name=name, url=url)`` and prints, as JSON, the
``time.time()`` at which each call started and the server time of each grant.

Usage: ``python shared_quota_worker.py URL NAME RATE COUNT START_AT``
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from pyarallel_redis import RedisLimiter

import pyarallel
from pyarallel import RateLimit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks_support import RecordingLimiter


def main() -> None:
    url, name, rate, count, start_at = sys.argv[1:]
    starts: list[float] = []
    lock = threading.Lock()

    def call(item: int) -> int:
        moment = time.time()
        with lock:
            starts.append(moment)
        time.sleep(0.03)
        return item

    limiter = RecordingLimiter(RedisLimiter(RateLimit(float(rate)), url=url, name=name))
    time.sleep(max(0.0, float(start_at) - time.time()))
    result = pyarallel.parallel_map(call, range(int(count)), workers=4, rate_limit=limiter)
    assert result.ok, result.failures()
    json.dump({"starts": starts, "granted": limiter.granted, "asked": limiter.asked}, sys.stdout)


if __name__ == "__main__":
    main()
