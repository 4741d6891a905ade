"""``/v1/subscriptions`` and ``/v1/deliveries`` through the HTTP API against a real Redis."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from bridge.app import create_app
from bridge.config import DNS_PORT, ConfigError, load_settings
from bridge.store import keys
from bridge.webhooks.guard import REFUSAL_MESSAGE
from bridge_tools.dns_server import DnsServer
from tests.integration.test_api import AUTH, KEY, error_of
from tests.integration.webhooks_helpers import FERNET_KEY

HOOK = "http://127.0.0.1:9/hooks/crm"
"""Loopback, allowed by the test configuration (never contacted by these tests)."""


NAMES = {"hooks.example.com": ["93.184.216.34"], "sneaky.example.com": ["93.184.216.34", "10.1.1.1"]}
"""What the test DNS server answers; every other name does not exist."""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(NAMES) as server:
        yield server


def make_client(redis_url: str, dns_port: int = DNS_PORT, **env: str) -> TestClient[Any]:
    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_API_KEYS": KEY,
            "BRIDGE_SECRET_KEY": FERNET_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
            # Names resolve through the test's own DNS server, as configured in production.
            "BRIDGE_WEBHOOK_DNS_SERVERS": "127.0.0.1",
            "BRIDGE_WEBHOOK_DNS_PORT": str(dns_port),
            "BRIDGE_WEBHOOK_DNS_TIMEOUT_S": "2",
            **env,
        }
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(redis_url: str, redis: Any, dns: DnsServer) -> Iterator[TestClient[Any]]:
    with make_client(redis_url, dns.port) as test_client:
        yield test_client


def create(client: TestClient[Any], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/subscriptions", json={"url": HOOK, **body}, headers=AUTH)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_url_alone_subscribes_to_every_event_and_the_secret_is_shown_once(
    client: TestClient[Any],
) -> None:
    created = create(client)
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) == 32
    assert created["id"].startswith("sub_")
    assert created["url"] == HOOK and created["event_types"] is None and created["enabled"] is True
    sid = created["id"]
    shown = [
        client.get(f"/v1/subscriptions/{sid}", headers=AUTH),
        client.get("/v1/subscriptions", headers=AUTH),
        client.patch(f"/v1/subscriptions/{sid}", json={"event_types": ["bulk.*"]}, headers=AUTH),
        client.get(f"/v1/subscriptions/{sid}/deliveries", headers=AUTH),
        client.post(f"/v1/subscriptions/{sid}/test", headers=AUTH),
        client.get("/schema/openapi.json"),
    ]
    for response in shown:
        assert response.status_code < 300, response.text
        assert secret not in response.text and secret[6:] not in response.text
        assert '"secret"' not in response.text or response.request.url.path.startswith("/schema")
    assert set(shown[0].json()) == set(created) - {"secret"}


def test_secrets_are_encrypted_at_rest(client: TestClient[Any], redis_url: str) -> None:
    import redis as sync_redis

    created = create(client)
    with sync_redis.Redis.from_url(redis_url) as raw:
        stored = raw.hgetall(keys.subscription(created["id"]))
    assert stored[b"secret"] and created["secret"].encode() not in b"".join(stored.values())
    assert created["secret"][6:].encode() not in b"".join(stored.values())


def test_filters_are_kept_normalised(client: TestClient[Any]) -> None:
    created = create(
        client,
        event_types=["bulk.finished", "bulk.*", "bulk.finished", "import.completed"],
        loyalty_club_slug="infinity-mall",
        import_id="89405ae3-2dd5-46cb-a13b-840bc588199b",
    )
    assert created["event_types"] == ["bulk.*", "bulk.finished", "import.completed"]
    assert created["loyalty_club_slug"] == "infinity-mall"
    assert create(client, event_types=["*", "bulk.failed"])["event_types"] is None


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({}, None),
        ({"url": 42}, "url"),
        ({"url": HOOK, "colour": "blue"}, None),
        ({"url": HOOK, "event_types": []}, "event_types"),
        ({"url": HOOK, "event_types": ["bulk.done"]}, "event_types"),
        ({"url": HOOK, "event_types": ["nope.*"]}, "event_types"),
        ({"url": HOOK, "event_types": "bulk.*"}, "event_types"),
        ({"url": HOOK, "loyalty_club_slug": "Infinity Mall"}, "loyalty_club_slug"),
        ({"url": HOOK, "loyalty_club_slug": "infinity-mall\n"}, "loyalty_club_slug"),
        ({"url": HOOK, "import_id": "a/b"}, "import_id"),
        ({"url": HOOK, "enabled": "yes"}, "enabled"),
        ({"url": HOOK, "enabled": 1}, "enabled"),
    ],
)
def test_invalid_bodies_are_422_and_create_nothing(
    client: TestClient[Any], body: dict[str, Any], key: str | None
) -> None:
    response = client.post("/v1/subscriptions", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    if key is not None:
        assert key in str(error["details"])
    assert client.get("/v1/subscriptions", headers=AUTH).json()["items"] == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://10.0.0.1/hook", "RFC 1918"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "IPv4-mapped"),
        ("https://100.64.0.1/hook", "carrier-grade NAT"),
        ("https://0.0.0.0/hook", "this host"),
        ("https://[fd00::1]/hook", "unique local"),
        ("https://2852039166/hook", "link-local"),
        ("https://0xa9fea9fe/hook", "link-local"),
        ("http://2130706433/hook", "write the address as 127.0.0.1"),
        ("http://0x7f.1/hook", "write the address as 127.0.0.1"),
        ("https://sneaky.example.com/hook", "non-public"),
        ("https://unknown.example.com/hook", "does not resolve"),
        ("https://hooks.example.com:8080/hook", "port 8080 is not allowed"),
        ("http://hooks.example.com/hook", "plain http"),
        ("ftp://hooks.example.com/hook", "must be https"),
        ("https://user:pw@hooks.example.com/hook", "credentials"),
        ("not a url", "whitespace"),
    ],
)
def test_refused_urls_are_422_with_one_message_and_the_reason_in_the_log(
    client: TestClient[Any], url: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bridge.api"):
        response = client.post("/v1/subscriptions", json={"url": url}, headers=AUTH)
    assert response.status_code == 422, response.text
    error = error_of(response)
    # Whatever the reason (no such name, a private address, a closed port), the same answer.
    assert (error["code"], error["message"]) == ("url_refused", REFUSAL_MESSAGE)
    assert error["details"] == [{"key": "url", "message": REFUSAL_MESSAGE}]
    assert "10.1.1.1" not in response.text
    [line] = [text for text in caplog.messages if "webhook URL refused" in text]
    assert reason in line


def test_a_public_https_url_is_accepted(client: TestClient[Any]) -> None:
    assert create(client, url="https://hooks.example.com/mpc")["url"] == "https://hooks.example.com/mpc"


def test_without_a_secret_key_the_api_refuses_to_start(redis_url: str) -> None:
    # Subscription secrets and MPC tokens are sealed with it: no key, no API.
    with pytest.raises(ConfigError, match="BRIDGE_SECRET_KEY"):
        make_client(redis_url, BRIDGE_SECRET_KEY="")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions"),
        ("GET", "/v1/subscriptions/sub_000000000000000000000000"),
        ("PATCH", "/v1/subscriptions/sub_000000000000000000000000"),
        ("DELETE", "/v1/subscriptions/sub_000000000000000000000000"),
        ("POST", "/v1/subscriptions/sub_000000000000000000000000/rotate-secret"),
        ("POST", "/v1/subscriptions/sub_000000000000000000000000/test"),
        ("GET", "/v1/subscriptions/sub_000000000000000000000000/deliveries"),
        ("GET", "/v1/deliveries/dlv_000000000000000000000000"),
        ("POST", "/v1/deliveries/dlv_000000000000000000000000/redeliver"),
    ],
)
def test_every_route_needs_a_key(client: TestClient[Any], method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.request(method, path, json={"url": HOOK}, headers=headers)
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/subscriptions/sub_000000000000000000000000"),
        ("PATCH", "/v1/subscriptions/sub_000000000000000000000000"),
        ("DELETE", "/v1/subscriptions/sub_000000000000000000000000"),
        ("POST", "/v1/subscriptions/sub_000000000000000000000000/rotate-secret"),
        ("POST", "/v1/subscriptions/sub_000000000000000000000000/test"),
        ("GET", "/v1/subscriptions/sub_000000000000000000000000/deliveries"),
        ("GET", "/v1/deliveries/dlv_000000000000000000000000"),
        ("POST", "/v1/deliveries/dlv_000000000000000000000000/redeliver"),
    ],
)
def test_unknown_ids_are_404(client: TestClient[Any], method: str, path: str) -> None:
    body = {"enabled": False} if method == "PATCH" else None
    response = client.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_malformed_ids_are_a_client_error(client: TestClient[Any]) -> None:
    response = client.get("/v1/subscriptions/nope", headers=AUTH)
    assert 400 <= response.status_code < 500
    error_of(response)


def test_patch_changes_what_is_given_and_rechecks_the_url(client: TestClient[Any]) -> None:
    created = create(client, event_types=["bulk.*"], loyalty_club_slug="infinity-mall")
    path = f"/v1/subscriptions/{created['id']}"
    refused = client.patch(path, json={"url": "https://10.0.0.1/x"}, headers=AUTH)
    assert refused.status_code == 422 and error_of(refused)["code"] == "url_refused"
    assert client.get(path, headers=AUTH).json()["url"] == HOOK  # nothing changed
    changed = client.patch(
        path, json={"url": "https://hooks.example.com/v2", "loyalty_club_slug": None}, headers=AUTH
    ).json()
    assert changed["url"] == "https://hooks.example.com/v2"
    assert changed["loyalty_club_slug"] is None and changed["event_types"] == ["bulk.*"]
    off = client.patch(path, json={"enabled": False}, headers=AUTH).json()
    assert (off["enabled"], off["disabled_reason"]) == (False, "api")
    on = client.patch(path, json={"enabled": True, "event_types": None}, headers=AUTH).json()
    assert (on["enabled"], on["disabled_reason"], on["event_types"]) == (True, None, None)
    for bad in ({"secret": "whsec_x"}, {"url": None}, {"enabled": "no"}, {"event_types": ["x.y"]}):
        response = client.patch(path, json=bad, headers=AUTH)
        assert response.status_code == 422, (bad, response.text)


def test_delete_removes_the_subscription(client: TestClient[Any]) -> None:
    sid = create(client)["id"]
    assert client.delete(f"/v1/subscriptions/{sid}", headers=AUTH).status_code == 204
    assert client.get(f"/v1/subscriptions/{sid}", headers=AUTH).status_code == 404
    assert client.delete(f"/v1/subscriptions/{sid}", headers=AUTH).status_code == 404


def test_rotate_secret_returns_a_new_secret_once_and_keeps_the_old_one_for_24_hours(
    client: TestClient[Any],
) -> None:
    created = create(client)
    path = f"/v1/subscriptions/{created['id']}"
    rotated = client.post(f"{path}/rotate-secret", headers=AUTH)
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["id"] == created["id"] and body["secret"].startswith("whsec_")
    assert body["secret"] != created["secret"]
    shown = client.get(path, headers=AUTH)
    assert body["secret"] not in shown.text
    assert shown.json()["previous_secret_expires_at"] == body["previous_secret_expires_at"]
    expires = time.mktime(time.strptime(body["previous_secret_expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(expires - time.mktime(time.gmtime()) - 86_400) < 60


def test_lists_are_paginated_newest_first(client: TestClient[Any]) -> None:
    ids = [create(client)["id"] for _ in range(5)]
    first = client.get("/v1/subscriptions", params={"limit": 2}, headers=AUTH).json()
    assert [s["id"] for s in first["items"]] == ids[::-1][:2] and first["next_cursor"]
    rest = client.get(
        "/v1/subscriptions", params={"limit": 10, "cursor": first["next_cursor"]}, headers=AUTH
    ).json()
    assert [s["id"] for s in rest["items"]] == ids[::-1][2:] and rest["next_cursor"] is None
    bad = client.get("/v1/subscriptions", params={"cursor": "garbage"}, headers=AUTH)
    assert bad.status_code == 422 and error_of(bad)["details"][0]["key"] == "cursor"


def test_test_and_redeliver_create_deliveries_with_jobs_and_list_newest_first(
    client: TestClient[Any], redis_url: str
) -> None:
    import redis as sync_redis

    sid = create(client)["id"]
    sent = client.post(f"/v1/subscriptions/{sid}/test", headers=AUTH)
    assert sent.status_code == 202
    test = sent.json()
    assert test["id"].startswith("dlv_") and test["kind"] == "test" and test["state"] == "pending"
    assert test["event_type"] == "webhook.test" and test["event_id"].startswith("evt_")
    again = client.post(f"/v1/deliveries/{test['id']}/redeliver", headers=AUTH)
    assert again.status_code == 202
    redelivery = again.json()
    assert redelivery["id"] != test["id"] and redelivery["event_id"] == test["event_id"]
    assert (redelivery["kind"], redelivery["redelivery_of"]) == ("redelivery", test["id"])
    listed = client.get(f"/v1/subscriptions/{sid}/deliveries", headers=AUTH).json()
    assert [d["id"] for d in listed["items"]] == [redelivery["id"], test["id"]]
    assert listed["items"][0]["attempts"] == [] and listed["next_cursor"] is None
    assert client.get(f"/v1/deliveries/{test['id']}", headers=AUTH).json()["kind"] == "test"
    with sync_redis.Redis.from_url(redis_url) as raw:
        queued = {entry.decode() for entry in raw.zrange(keys.OUTBOX, 0, -1)}
        raw.delete(keys.event(test["event_id"]))
    assert queued == {  # the outbox is the delivery queue
        keys.outbox_entry(test["event_id"], f"sub:{sid}/{test['id']}"),
        keys.outbox_entry(test["event_id"], f"sub:{sid}/{redelivery['id']}"),
    }
    expired = client.post(f"/v1/deliveries/{test['id']}/redeliver", headers=AUTH)
    assert expired.status_code == 409 and error_of(expired)["code"] == "event_expired"


def test_the_openapi_document_describes_the_webhook_routes(client: TestClient[Any]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    for path in (
        "/v1/subscriptions",
        "/v1/subscriptions/{subscription_id}",
        "/v1/subscriptions/{subscription_id}/rotate-secret",
        "/v1/subscriptions/{subscription_id}/test",
        "/v1/subscriptions/{subscription_id}/deliveries",
        "/v1/deliveries/{delivery_id}/redeliver",
    ):
        assert path in paths
