"""The console's HTTP side in this process (Litestar's test client) against a real Redis:
sessions, cookies, CSRF, the pages' access rules and the form validation."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from redis.asyncio import Redis

from bridge.app import create_app
from bridge.config import load_settings
from bridge.console.pages import SystemRates, system_view
from bridge.metrics import WorkerMetrics
from bridge.store import keys
from bridge.upstream.budget import ClubBudget
from bridge.webhooks.model import WebhookDelivery
from bridge.webhooks.store import SubscriptionStore
from tests.integration.conftest import SECRET_KEY

KEY = "console-key-1-0123456789abcdefghijklm"
IMPORT_ID = "89405ae3-2dd5-46cb-a13b-840bc588199b"


@pytest.fixture
def client(redis_url: str, redis: Redis) -> Iterator[TestClient[Any]]:
    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_API_KEYS": KEY,
            "BRIDGE_SECRET_KEY": SECRET_KEY,
            "BRIDGE_CONSOLE_SESSION_S": "120",
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
        }
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def sign_in(client: TestClient[Any], key: str = KEY) -> Any:
    page = client.get("/ui/sign-in")
    return client.post(
        "/ui/sign-in", data={"csrf_token": csrf_of(page.text), "api_key": key}, follow_redirects=False
    )


def test_ui_without_a_session_redirects_to_sign_in(client: TestClient[Any]) -> None:
    for path in ("/ui/watches", "/ui/watches/new", "/ui/subscriptions", "/ui/clubs", "/ui/system"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/ui/sign-in"


def test_sign_in_sets_a_strict_httponly_cookie_and_a_session_with_expiry(
    client: TestClient[Any], redis_url: str
) -> None:
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/ui/watches"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("bridge_console="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/ui" in lowered
    assert "secure" not in lowered  # plain http here; https sets it (next test)
    value = cookie.split(";")[0].split("=", 1)[1]

    async def ttl() -> list[int]:
        redis = Redis.from_url(redis_url)
        try:
            found = [k async for k in redis.scan_iter(match=keys.CONSOLE_SESSION_PREFIX + "*")]
            assert all(value.encode() not in k for k in found)
            return [await redis.pttl(k) for k in found]
        finally:
            await redis.aclose()

    ttls = asyncio.run(ttl())
    assert len(ttls) == 1 and 0 < ttls[0] <= 120_000
    assert client.get("/ui/watches").status_code == 200


def test_cookie_is_secure_over_https(redis_url: str, redis: Redis) -> None:
    settings = load_settings(
        {"BRIDGE_REDIS_URL": redis_url, "BRIDGE_API_KEYS": KEY, "BRIDGE_SECRET_KEY": SECRET_KEY}
    )
    with TestClient(create_app(settings), base_url="https://127.0.0.1") as client:
        response = sign_in(client)
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("bridge_console="))
    assert "secure" in cookie.lower()


def test_a_wrong_key_is_refused_and_starts_no_session(client: TestClient[Any]) -> None:
    response = sign_in(client, key="not-a-key")
    assert response.status_code == 401
    assert "That key is not valid." in response.text
    assert not any(c.startswith("bridge_console=") for c in response.headers.get_list("set-cookie"))
    assert client.get("/ui/watches", follow_redirects=False).status_code == 303


def test_sign_in_without_its_csrf_token_is_refused(client: TestClient[Any]) -> None:
    client.get("/ui/sign-in")
    response = client.post(
        "/ui/sign-in", data={"api_key": KEY, "csrf_token": "forged"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert client.get("/ui/watches", follow_redirects=False).status_code == 303


def test_state_changes_need_the_session_csrf_token(client: TestClient[Any]) -> None:
    sign_in(client)
    form = {"loyalty_club_slug": "infinity-mall", "import_id": IMPORT_ID}
    for token in (None, "", "wrong-token"):
        data = dict(form) if token is None else {**form, "csrf_token": token}
        response = client.post("/ui/watches", data=data, follow_redirects=False)
        assert response.status_code == 403, token
    listing = client.get("/ui/watches")
    assert "data-watch-id" not in listing.text  # nothing was created
    response = client.post(
        "/ui/watches", data={**form, "csrf_token": csrf_of(listing.text)}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/watches/wch_")


def test_sign_out_ends_the_session_in_redis(client: TestClient[Any]) -> None:
    response = sign_in(client)
    session_cookie = client.cookies.get("bridge_console")
    page = client.get("/ui/watches")
    out = client.post("/ui/sign-out", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in"
    # The old cookie, replayed, no longer opens anything: the session is gone from Redis.
    client.cookies.set("bridge_console", session_cookie or "", path="/ui")
    assert client.get("/ui/watches", follow_redirects=False).status_code == 303
    assert response.status_code == 303


def test_new_watch_form_shows_the_api_validation_errors_next_to_the_field(client: TestClient[Any]) -> None:
    sign_in(client)
    token = csrf_of(client.get("/ui/watches/new").text)
    response = client.post(
        "/ui/watches",
        data={"csrf_token": token, "loyalty_club_slug": "infinity-mall", "import_id": "bad id!"},
        follow_redirects=False,
    )
    assert response.status_code == 422
    assert 'id="e-import_id"' in response.text and 'aria-invalid="true"' in response.text
    assert 'value="bad id!"' in response.text  # what was typed stays
    assert "data-watch-id" not in client.get("/ui/watches").text


def test_pages_send_a_strict_content_security_policy(client: TestClient[Any]) -> None:
    sign_in(client)
    for path in ("/ui/sign-in", "/ui/watches", "/ui/subscriptions", "/ui/clubs", "/ui/system"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
        assert "<script>" not in response.text and " style=" not in response.text
        assert re.findall(r'(?:src|href)="(https?:)?//', response.text) == []


def test_assets_are_served_by_the_app(client: TestClient[Any]) -> None:
    for name in ("htmx.min.js", "htmx-ext-sse.min.js", "console.js", "console.css"):
        response = client.get(f"/ui/static/{name}")
        assert response.status_code == 200 and len(response.content) > 100, name


def test_hostile_form_input_changes_nothing(client: TestClient[Any]) -> None:
    sign_in(client)
    token = csrf_of(client.get("/ui/watches/new").text)
    for fields in (
        {"loyalty_club_slug": "x" * 10_000, "import_id": IMPORT_ID},
        {"loyalty_club_slug": "infinity-mall", "import_id": IMPORT_ID, "bulk_ids": "1e309 NaN"},
        {"loyalty_club_slug": "infinity-mall", "import_id": IMPORT_ID, "bulk_ids": "9" * 400},
        {"loyalty_club_slug": "infinity\nmall", "import_id": IMPORT_ID},
        {"loyalty_club_slug": "<script>alert(1)</script>", "import_id": IMPORT_ID},
    ):
        response = client.post("/ui/watches", data={"csrf_token": token, **fields}, follow_redirects=False)
        assert response.status_code == 422, fields
        assert "<script>alert" not in response.text
    assert "data-watch-id" not in client.get("/ui/watches").text
    assert client.get("/ui/watches/wch_nope").status_code == 404
    assert client.get("/ui/watches?club=%00&state=zzz&q=" + "a" * 5000).status_code == 200


def _club_key(client: TestClient[Any], role: str = "editor") -> tuple[str, str]:
    """A managed key limited to infinity-mall: (its id, the key)."""
    made = client.post(
        "/v1/api-keys",
        json={"name": "console test", "clubs": ["infinity-mall"], "role": role},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    return body["id"], body["key"]


def test_a_key_limited_to_one_club_sees_only_that_club(client: TestClient[Any]) -> None:
    sign_in(client)
    token = csrf_of(client.get("/ui/watches/new").text)
    made = {}
    for slug in ("infinity-mall", "outlet-park"):
        response = client.post(
            "/ui/watches",
            data={"csrf_token": token, "loyalty_club_slug": slug, "import_id": IMPORT_ID},
            follow_redirects=False,
        )
        made[slug] = response.headers["location"].rsplit("/", 1)[1]
    _, club_key = _club_key(client)
    client.cookies.clear()
    assert sign_in(client, club_key).status_code == 303
    listing = client.get("/ui/watches").text
    assert made["infinity-mall"] in listing and made["outlet-park"] not in listing
    assert made["outlet-park"] not in client.get("/ui/watches?club=outlet-park").text
    assert client.get(f"/ui/watches/{made['outlet-park']}").status_code == 404
    assert client.get(f"/ui/watches/{made['infinity-mall']}").status_code == 200
    clubs = client.get("/ui/clubs").text
    assert 'data-club="infinity-mall"' in clubs and 'data-club="outlet-park"' not in clubs
    assert client.get("/ui/system").status_code == 403
    # Nor may it change the other club's watch, even knowing its id.
    token = csrf_of(listing)
    stop = client.post(f"/ui/watches/{made['outlet-park']}/stop", data={"csrf_token": token})
    assert stop.status_code == 404
    create = client.post(
        "/ui/watches",
        data={"csrf_token": token, "loyalty_club_slug": "outlet-park", "import_id": "other-import"},
        follow_redirects=False,
    )
    assert create.status_code == 403 and "does not hold club outlet-park" in create.text


def test_a_viewer_key_changes_nothing(client: TestClient[Any]) -> None:
    _, viewer = _club_key(client, role="viewer")
    assert sign_in(client, viewer).status_code == 303
    token = csrf_of(client.get("/ui/watches/new").text)
    create = client.post(
        "/ui/watches",
        data={"csrf_token": token, "loyalty_club_slug": "infinity-mall", "import_id": IMPORT_ID},
        follow_redirects=False,
    )
    assert create.status_code == 403
    assert "data-watch-id" not in client.get("/ui/watches").text


def test_revoking_a_key_ends_its_console_sessions(client: TestClient[Any]) -> None:
    key_id, club_key = _club_key(client)
    assert sign_in(client, club_key).status_code == 303
    assert client.get("/ui/watches", follow_redirects=False).status_code == 200
    revoked = client.delete(f"/v1/api-keys/{key_id}", headers={"Authorization": f"Bearer {KEY}"})
    assert revoked.status_code in (200, 204)
    assert client.get("/ui/watches", follow_redirects=False).status_code == 303
    assert client.get("/ui/stream", follow_redirects=False).status_code == 303


def test_an_admin_key_taken_out_of_the_settings_ends_its_sessions(
    client: TestClient[Any], redis_url: str
) -> None:
    sign_in(client)
    cookie = client.cookies.get("bridge_console") or ""
    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_API_KEYS": "another-key-0123456789abcdefghijklmn",
            "BRIDGE_SECRET_KEY": SECRET_KEY,
        }
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as restarted:
        restarted.cookies.set("bridge_console", cookie, path="/ui")
        assert restarted.get("/ui/watches", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("cookie", ["", "x", "a" * 5000, "../../etc", "%C3%A9t%C3%A9", "%00"])
def test_a_forged_or_garbage_session_cookie_opens_nothing(client: TestClient[Any], cookie: str) -> None:
    client.cookies.set("bridge_console", cookie, path="/ui")
    assert client.get("/ui/watches", follow_redirects=False).status_code == 303
    assert client.get("/ui/stream", follow_redirects=False).status_code == 303


def test_redeliver_failed_sends_again_every_failed_delivery_since(
    client: TestClient[Any], redis_url: str
) -> None:
    sub = client.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/never-there"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    sid = sub.json()["id"]

    async def seed() -> None:
        redis = Redis.from_url(redis_url)
        try:
            store = SubscriptionStore(redis, box=None, retention_s=3600)
            for n, (state, age_s) in enumerate((("failed", 60), ("failed", 7200), ("delivered", 60))):
                eid = f"evt_{n}"
                await redis.set(keys.event(eid), b'{"type": "bulk.started"}')
                await store.save_delivery(
                    WebhookDelivery(
                        id=f"dlv_{n:024d}",
                        subscription_id=sid,
                        event_id=eid,
                        event_type="bulk.started",
                        kind="event",
                        created_at=time.time() - age_s,
                        state=state,  # type: ignore[arg-type]
                    )
                )
        finally:
            await redis.aclose()

    asyncio.run(seed())
    sign_in(client)
    page = client.get(f"/ui/subscriptions/{sid}")
    assert page.text.count("data-delivery-id") == 3
    since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3600))
    response = client.post(
        f"/ui/subscriptions/{sid}/redeliver-failed",
        data={"csrf_token": csrf_of(page.text), "since": since},
        follow_redirects=False,
    )
    assert response.status_code == 303
    items = client.get(
        f"/v1/subscriptions/{sid}/deliveries", headers={"Authorization": f"Bearer {KEY}"}
    ).json()["items"]
    again = [d for d in items if d["kind"] == "redelivery"]
    assert [d["redelivery_of"] for d in again] == [f"dlv_{0:024d}"]  # only the recent failed one


def test_the_clubs_page_shows_how_much_of_each_clubs_request_budget_is_in_use(
    client: TestClient[Any], redis_url: str
) -> None:
    sign_in(client)
    token = csrf_of(client.get("/ui/watches/new").text)
    for slug in ("infinity-mall", "outlet-park"):
        client.post(
            "/ui/watches",
            data={"csrf_token": token, "loyalty_club_slug": slug, "import_id": IMPORT_ID},
            follow_redirects=False,
        )

    async def spend() -> None:
        redis = Redis.from_url(redis_url)
        try:  # the shipped budget (5/s, 10 at once), emptied for one club as the workers would
            await ClubBudget(redis, rate=5.0, burst=10).take([("infinity-mall", 10)])
        finally:
            await redis.aclose()

    asyncio.run(spend())
    page = client.get("/ui/clubs").text
    spent = re.search(r'data-club="infinity-mall" data-budget-in-use="(\d+)"', page)
    assert spent is not None and 8 <= int(spent.group(1)) <= 10
    assert "empty, next request in" in page  # a token comes back every 0.2 s
    assert 'data-club="outlet-park" data-budget-in-use="0"' in page
    assert "0 of 10 in use (refills 5/s)" in page


def test_the_system_page_shows_the_workers_totals_poll_rate_and_loop_lag(
    client: TestClient[Any], redis_url: str
) -> None:
    async def report_and_look() -> tuple[Any, Any]:
        redis = Redis.from_url(redis_url)
        try:
            worker, rates = WorkerMetrics(), SystemRates()
            worker.poll("ok")
            await worker.flush(redis)
            first = await system_view(redis, 0, rates, now=1000.0)
            for _ in range(20):
                worker.poll("ok")
            for lag_s in (0.002, 0.004, 0.006, 0.008):
                worker.loop_lag(lag_s)
            await worker.flush(redis)
            return first, await system_view(redis, 0, rates, now=1010.0)
        finally:
            await redis.aclose()

    first, later = asyncio.run(report_and_look())
    assert first.poll_rate is None and first.loop_lag_s is None  # no earlier look to compare with
    assert later.poll_rate == 2.0 and later.poll_rate_window_s == 10.0
    assert later.loop_lag_s == pytest.approx(0.005) and later.loop_lag_probes == 4
    assert dict(later.counters)['bridge_polls_total{outcome="ok"}'] == 21
    sign_in(client)
    page = client.get("/ui/system").text
    assert 'id="loop-lag"' in page and "bridge_polls_total" in page
