"""The quota-enforcing test server (``quota_server``), against real requests over HTTP."""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from quota_server import Quota, QuotaServer, get


def refusal(url: str, **params: object) -> tuple[int, str | None, dict[str, Any]]:
    """GET a request that must fail; its status, ``Retry-After`` header and JSON body."""
    with pytest.raises(urllib.error.HTTPError) as info:
        get(url, timeout=10.0, **params)
    with info.value as error:
        body: dict[str, Any] = json.loads(error.read())
        return error.code, error.headers.get("Retry-After"), body


def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on ``time.monotonic()``'s clock (letting a window slide)."""
    time.sleep(max(0.0, deadline - time.monotonic()))


def test_a_requests_quota_refuses_the_extra_request_until_the_window_slides() -> None:
    with QuotaServer([Quota(limit=3, window=0.4)]) as server:
        bodies = [get(server.url + "/thing", item=i) for i in range(3)]
        status, retry_after, body = refusal(server.url + "/thing", item=3)
        assert status == 429
        assert retry_after == "1"
        assert body["error"] == "rate limited"
        first = server.accepted()[0]
        sleep_until(first.at + 0.4 + 0.05)
        assert get(server.url + "/thing", item=4)["ok"] is True

    assert [b["item"] for b in bodies] == ["0", "1", "2"]
    assert all(b["ok"] is True for b in bodies)
    assert [r.status for r in server.requests()] == [200, 200, 200, 429, 200]
    assert [r.item for r in server.refused()] == ["3"]
    assert {r.path for r in server.requests()} == {"/thing"}
    # The refused request waited exactly until the first accepted one left the window.
    refused = server.refused()[0]
    assert body["retry_after"] == pytest.approx(first.at + 0.4 - refused.at)


@pytest.mark.parametrize(("window", "header"), [(0.3, "1"), (1.5, "2")])
def test_retry_after_in_seconds_is_whole_seconds_covering_the_real_wait(window: float, header: str) -> None:
    with QuotaServer([Quota(limit=1, window=window)]) as server:
        get(server.url)
        _, retry_after, body = refusal(server.url)
    accepted, refused = server.accepted()[0], server.refused()[0]
    real_wait = accepted.at + window - refused.at
    assert body["retry_after"] == pytest.approx(real_wait)
    assert retry_after == header
    assert int(retry_after) >= real_wait
    assert int(retry_after) == max(1, math.ceil(real_wait))


def test_retry_after_as_a_date_is_the_wall_clock_time_the_request_would_fit() -> None:
    with QuotaServer([Quota(limit=1, window=1.5)], retry_after="date") as server:
        get(server.url)
        before = time.time()
        _, retry_after, body = refusal(server.url)
        after = time.time()
    assert retry_after is not None
    when = email.utils.parsedate_to_datetime(retry_after).timestamp()
    wait = body["retry_after"]
    assert 1.0 < wait <= 1.5
    assert before + wait - 1.0 <= when <= after + wait + 1.0
    assert when == int(when)  # rounded up to a whole second
    assert retry_after.endswith(" GMT")


def test_retry_after_none_leaves_the_header_out_but_not_the_body() -> None:
    with QuotaServer([Quota(limit=1, window=5)], retry_after="none") as server:
        get(server.url)
        status, retry_after, body = refusal(server.url)
    assert (status, retry_after) == (429, None)
    assert 4.0 < body["retry_after"] <= 5.0


def test_per_key_budgets_are_independent() -> None:
    with QuotaServer([Quota(limit=2, window=5, per_key=True)]) as server:
        for key in ("a", "b", None):
            get(server.url, key=key)
            get(server.url, key=key)
            assert refusal(server.url, key=key)[0] == 429
    assert [r.key for r in server.accepted()] == ["a", "a", "b", "b", None, None]
    assert [r.key for r in server.refused()] == ["a", "b", None]
    assert len(server.accepted(key="a")) == 2
    assert len(server.refused(key="b")) == 1


def test_a_per_key_quota_and_a_shared_quota_both_apply() -> None:
    with QuotaServer([Quota(limit=2, window=5, per_key=True), Quota(limit=3, window=5)]) as server:
        get(server.url, key="a")
        get(server.url, key="a")
        assert refusal(server.url, key="a")[0] == 429  # the key's budget
        get(server.url, key="b")
        assert refusal(server.url, key="b")[0] == 429  # the shared budget
    assert [(r.key, r.status) for r in server.requests()] == [
        ("a", 200),
        ("a", 200),
        ("a", 429),
        ("b", 200),
        ("b", 429),
    ]


def test_a_tokens_quota_admits_on_the_declared_tokens_and_charges_the_used_ones() -> None:
    with QuotaServer([Quota(limit=10, window=5, unit="tokens")]) as server:
        body = get(server.url, tokens=8, used=2)
        get(server.url, tokens=8)  # 2 + 8 fits; used defaults to the declared tokens
        status, _, _ = refusal(server.url)  # tokens default to 1: 11 does not fit
    assert status == 429
    assert body["used_tokens"] == 2
    assert [(r.tokens, r.used_tokens) for r in server.requests()] == [(8, 2), (8, 8), (1, 1)]
    assert server.max_in_window(5, unit="tokens") == 10


def test_charge_declared_charges_the_declared_tokens() -> None:
    with QuotaServer([Quota(limit=10, window=5, unit="tokens")], charge="declared") as server:
        get(server.url, tokens=8, used=2)
        assert refusal(server.url, tokens=8, used=2)[0] == 429
        get(server.url, tokens=2, used=0)
    assert server.max_in_window(5, unit="tokens") == 10


def test_a_request_refused_by_one_quota_is_charged_to_none() -> None:
    quotas = [Quota(limit=3, window=5), Quota(limit=10, window=5, unit="tokens")]
    with QuotaServer(quotas) as server:
        get(server.url, tokens=8)
        assert refusal(server.url, tokens=5)[0] == 429  # by the tokens quota only
        get(server.url, tokens=1)
        get(server.url, tokens=1)  # the third request: the refused one took no request
        assert refusal(server.url, tokens=0)[0] == 429  # by the requests quota only
        server.set_quotas([Quota(limit=10, window=5, unit="tokens")])
        get(server.url, tokens=0)  # the refused tokens=0 request took no tokens either
    assert [r.status for r in server.requests()] == [200, 429, 200, 200, 429, 200]
    assert server.max_in_window(5, unit="tokens") == 10


def test_retry_after_waits_for_the_quota_that_frees_up_last() -> None:
    quotas = [Quota(limit=1, window=0.5), Quota(limit=10, window=1.5, unit="tokens")]
    with QuotaServer(quotas) as server:
        get(server.url, tokens=10)
        _, retry_after, body = refusal(server.url, tokens=1)
    accepted, refused = server.accepted()[0], server.refused()[0]
    assert body["retry_after"] == pytest.approx(accepted.at + 1.5 - refused.at)
    assert retry_after == "2"


def test_retry_after_waits_for_enough_old_tokens_to_leave() -> None:
    with QuotaServer([Quota(limit=10, window=5, unit="tokens")]) as server:
        for tokens in (3, 3, 3):
            get(server.url, tokens=tokens)
        _, _, body = refusal(server.url, tokens=6)  # fits once the first two have left
    first, second, _ = server.accepted()
    refused = server.refused()[0]
    assert body["retry_after"] == pytest.approx(second.at + 5 - refused.at)
    assert body["retry_after"] > first.at + 5 - refused.at


def test_a_request_larger_than_the_limit_can_never_fit() -> None:
    with QuotaServer([Quota(limit=5, window=1, unit="tokens")]) as server:
        status, retry_after, body = refusal(server.url, tokens=6)
        assert get(server.url, tokens=5)["ok"] is True  # the refusal took nothing
    assert (status, retry_after, body["retry_after"]) == (429, None, None)


def test_max_in_window_is_the_most_accepted_in_any_sliding_window() -> None:
    with QuotaServer([Quota(limit=4, window=60)]) as server:
        for tokens in (1, 2, 3):
            get(server.url, tokens=tokens, key="x")
        sleep_until(server.accepted()[-1].at + 0.3)
        get(server.url, tokens=4)
        assert refusal(server.url, tokens=5)[0] == 429
    ats = [r.at for r in server.requests()]
    assert ats[2] - ats[0] < 0.2 <= ats[3] - ats[2]  # three together, then the rest apart
    assert server.max_in_window(0.2) == 3
    assert server.max_in_window(60) == 4
    assert server.max_in_window(0.2, unit="tokens") == 6
    assert server.max_in_window(60, unit="tokens") == 10
    assert server.max_in_window(60, key="x") == 3
    assert server.max_in_window(0.2, status=None) == 3
    assert server.max_in_window(60, status=None) == 5
    assert server.max_in_window(60, status=429, unit="tokens") == 5
    assert server.max_in_window(60, key="nobody") == 0


def test_many_concurrent_clients_never_get_more_than_the_quota_through() -> None:
    window = 0.25
    with QuotaServer([Quota(limit=5, window=window)]) as server, ThreadPoolExecutor(8) as pool:

        def client(n: int) -> int:
            try:
                get(server.url, item=n)
            except urllib.error.HTTPError as error:
                with error:
                    return error.code
            return 200

        statuses = list(pool.map(client, range(160)))
    assert len(server.requests()) == 160
    assert statuses.count(200) == len(server.accepted())
    assert statuses.count(429) == len(server.refused())
    assert 5 <= len(server.accepted()) < 160
    assert server.max_in_window(window) <= 5
    assert server.max_in_window(window, status=None) > 5
    ats = [r.at for r in server.requests()]
    assert ats == sorted(ats)


def test_fail_first_answers_the_forced_status_without_charging_the_quota() -> None:
    with QuotaServer([Quota(limit=1, window=5)], fail_status=503, fail_first=2) as server:
        assert refusal(server.url, item="a")[0] == 503
        status, _, body = refusal(server.url, item="a")
        assert status == 503
        get(server.url, item="a")
        assert refusal(server.url, item="b")[0] == 429
    assert body["status"] == 503
    assert [(r.item, r.status) for r in server.requests()] == [("a", 503), ("a", 503), ("a", 200), ("b", 429)]
    assert len(server.requests(status=503)) == 2


def test_fail_status_alone_fails_every_request() -> None:
    with QuotaServer([Quota(limit=1, window=5)], fail_status=500) as server:
        statuses = [refusal(server.url)[0] for _ in range(3)]
    assert statuses == [500, 500, 500]
    assert [r.status for r in server.requests()] == [500, 500, 500]
    assert server.accepted() == []


def test_set_quotas_changes_the_quotas_at_run_time_counting_what_was_accepted() -> None:
    with QuotaServer() as server:
        for _ in range(4):
            get(server.url)
        server.set_quotas([Quota(limit=4, window=5)])
        assert refusal(server.url)[0] == 429
        server.set_quotas([Quota(limit=6, window=5)])
        get(server.url)
        get(server.url)
        assert refusal(server.url)[0] == 429
        server.set_quotas([Quota(limit=1, window=0.01)])  # the old requests are out of it
        time.sleep(0.02)
        get(server.url)
        server.set_quotas([])
        get(server.url)
    assert [r.status for r in server.requests()] == [200] * 4 + [429, 200, 200, 429, 200, 200]


def test_reset_forgets_the_requests_and_the_windows() -> None:
    with QuotaServer([Quota(limit=1, window=5)], fail_status=503, fail_first=1) as server:
        assert refusal(server.url)[0] == 503
        get(server.url)
        assert refusal(server.url)[0] == 429
        server.reset()
        assert server.requests() == []
        assert refusal(server.url)[0] == 503
        get(server.url)
    assert [r.status for r in server.requests()] == [503, 200]


def test_latency_delays_the_answer_after_the_arrival_is_recorded() -> None:
    with QuotaServer(latency=0.2) as server:
        sent = time.monotonic()
        body = get(server.url)
        answered = time.monotonic()
    assert answered - sent >= 0.2
    assert sent <= body["at"] <= answered - 0.2
    assert server.accepted()[0].at == body["at"]


def test_a_malformed_number_answers_400_and_is_recorded() -> None:
    with QuotaServer([Quota(limit=10, window=5, unit="tokens")]) as server:
        assert refusal(server.url, tokens="lots")[0] == 400
        assert refusal(server.url, used=-1)[0] == 400
        get(server.url, tokens=10)
    assert [r.status for r in server.requests()] == [400, 400, 200]


def test_post_is_answered_like_get_and_its_body_ignored() -> None:
    with QuotaServer([Quota(limit=1, window=5)]) as server:
        request = urllib.request.Request(server.url + "/v1/chat?item=p&tokens=3", data=b'{"x": 1}')
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        assert refusal(server.url + "/v1/chat")[0] == 429
    assert (body["ok"], body["item"]) == (True, "p")
    assert server.accepted()[0].path == "/v1/chat"


def test_requests_and_httpx_clients_work_too() -> None:
    requests = pytest.importorskip("requests")
    httpx = pytest.importorskip("httpx")
    with QuotaServer([Quota(limit=2, window=5)]) as server:
        assert requests.get(server.url, params={"item": "r"}, timeout=10).json()["item"] == "r"
        assert httpx.get(server.url, params={"item": "h"}, timeout=10).json()["item"] == "h"
        response = httpx.get(server.url, timeout=10)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"


def test_the_server_is_quiet_and_closes_cleanly(capfd: pytest.CaptureFixture[str]) -> None:
    server = QuotaServer([Quota(limit=1, window=5)])
    with pytest.raises(RuntimeError):
        server.url  # not started yet
    with server:
        url = server.url
        get(url)
        refusal(url)
        threads = {t.name for t in threading.enumerate()}
        assert "quota-server" in threads
    assert "quota-server" not in {t.name for t in threading.enumerate()}
    server.close()  # a second close is a no-op
    with pytest.raises(urllib.error.URLError):
        get(url, timeout=2)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        Quota(limit=1, window=1, unit="bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        Quota(limit=0, window=1)
    with pytest.raises(ValueError, match="window"):
        Quota(limit=1, window=0)
    with pytest.raises(ValueError, match="retry_after"):
        QuotaServer(retry_after="minutes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="charge"):
        QuotaServer(charge="estimated")  # type: ignore[arg-type]
