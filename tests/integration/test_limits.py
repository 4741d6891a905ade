"""Bounded growth and bounded fan-out: caps per club and per watch, at the API, against a real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Final
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient
from redis.asyncio import Redis

from bridge.app import create_app
from bridge.config import load_settings
from bridge.core import patterns
from bridge.core.model import WatchSpec
from bridge.store import keys
from bridge.store.redis_store import RedisStore, resolved
from bridge.webhooks.model import ALL_CLUBS_GROUP, SubscriptionDoc, cap_groups
from bridge.webhooks.store import TEST_EVENT_TTL_S, SubscriptionStore
from tests.integration.conftest import SECRET_KEY
from tests.integration.test_api import AUTH as SUB_AUTH
from tests.integration.test_subscriptions_api import HOOK, make_client

KEY: Final = "limits-test-key-0123456789abcdefghij"
AUTH: Final = {"Authorization": f"Bearer {KEY}"}
SLUG: Final = "infinity-mall"

ClientFactory = Callable[..., TestClient[Any]]


@pytest.fixture
def client_with(redis_url: str, redis: Any) -> Iterator[ClientFactory]:
    # `redis` flushes the database first.
    opened: list[TestClient[Any]] = []

    def make(**extra: str) -> TestClient[Any]:
        settings = load_settings(
            {"BRIDGE_REDIS_URL": redis_url, "BRIDGE_API_KEYS": KEY, "BRIDGE_SECRET_KEY": SECRET_KEY, **extra}
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        opened.append(client)
        return client

    try:
        yield make
    finally:
        for client in opened:
            client.__exit__(None, None, None)


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_a_watch_may_name_at_most_the_configured_number_of_bulks(client_with: ClientFactory) -> None:
    client = client_with(BRIDGE_WATCH_MAX_BULK_IDS="100")
    body = {"loyalty_club_slug": SLUG, "import_id": "imp-1"}
    too_many = client.post("/v1/watches", json={**body, "bulk_ids": list(range(1, 102))}, headers=AUTH)
    assert too_many.status_code == 422 and error_code(too_many) == "validation_error"
    assert "at most 100" in too_many.json()["error"]["message"]
    assert client.get("/v1/watches", headers=AUTH).json()["items"] == []  # nothing created
    enough = client.post("/v1/watches", json={**body, "bulk_ids": list(range(1, 101))}, headers=AUTH)
    assert enough.status_code == 201
    whole = client.post("/v1/watches", json={**body, "import_id": "imp-2"}, headers=AUTH)
    assert whole.status_code == 201  # a whole-import watch follows any number of bulks


# ---------------------------------------------------------------------------- watches per club


def watch_body(import_id: str, slug: str = SLUG) -> dict[str, Any]:
    return {"loyalty_club_slug": slug, "import_id": import_id}


def test_active_watches_per_club_are_capped_with_limit_reached(client_with: ClientFactory) -> None:
    client = client_with(BRIDGE_MAX_WATCHES_PER_CLUB="2")
    first = client.post("/v1/watches", json=watch_body("imp-1"), headers=AUTH)
    assert client.post("/v1/watches", json=watch_body("imp-2"), headers=AUTH).status_code == 201
    refused = client.post("/v1/watches", json=watch_body("imp-3"), headers=AUTH)
    assert refused.status_code == 409 and error_code(refused) == "limit_reached"
    assert len(client.get("/v1/watches", headers=AUTH).json()["items"]) == 2  # nothing written
    # The identical watch is still answered, another club is not concerned...
    assert client.post("/v1/watches", json=watch_body("imp-1"), headers=AUTH).status_code == 200
    assert client.post("/v1/watches", json=watch_body("imp-3", "other-club"), headers=AUTH).status_code == 201
    # ...and a watch that ends frees its place.
    assert client.delete(f"/v1/watches/{first.json()['id']}", headers=AUTH).status_code == 200
    assert client.post("/v1/watches", json=watch_body("imp-3"), headers=AUTH).status_code == 201


# ---------------------------------------------------------------------------- subscriptions per club


def subscribe(client: TestClient[Any], **body: Any) -> Any:
    return client.post("/v1/subscriptions", json={"url": HOOK, **body}, headers=SUB_AUTH)


def test_subscriptions_per_club_are_capped_with_limit_reached(redis_url: str, redis: Any) -> None:
    with make_client(redis_url, BRIDGE_MAX_SUBSCRIPTIONS_PER_CLUB="2") as client:
        for _ in range(2):
            assert subscribe(client, loyalty_club_slug=SLUG).status_code == 201
        refused = subscribe(client, loyalty_club_slug=SLUG)
        assert refused.status_code == 409 and error_code(refused) == "limit_reached"
        assert len(client.get("/v1/subscriptions", headers=SUB_AUTH).json()["items"]) == 2
        assert subscribe(client, loyalty_club_slug="other-club").status_code == 201
        for _ in range(2):  # without a club filter: a group of its own, with the same cap
            assert subscribe(client).status_code == 201
        assert error_code(subscribe(client)) == "limit_reached"
        # Moving a subscription into a full club is refused too.
        mover = subscribe(client, loyalty_club_slug="third-club").json()["id"]
        moved = client.patch(f"/v1/subscriptions/{mover}", json={"loyalty_club_slug": SLUG}, headers=SUB_AUTH)
        assert moved.status_code == 409 and error_code(moved) == "limit_reached"
        shown = client.get(f"/v1/subscriptions/{mover}", headers=SUB_AUTH).json()
        assert shown["loyalty_club_slug"] == "third-club"


# ---------------------------------------------------------------------------- webhook.test


def test_webhook_test_is_rate_limited_per_subscription_with_retry_after(redis_url: str, redis: Any) -> None:
    with make_client(redis_url, BRIDGE_WEBHOOK_TEST_INTERVAL_S="10") as client:
        sid = subscribe(client).json()["id"]
        other = subscribe(client).json()["id"]
        assert client.post(f"/v1/subscriptions/{sid}/test", headers=SUB_AUTH).status_code == 202
        again = client.post(f"/v1/subscriptions/{sid}/test", headers=SUB_AUTH)
        assert again.status_code == 429 and error_code(again) == "rate_limited"
        assert 1 <= int(again.headers["retry-after"]) <= 10
        assert client.post(f"/v1/subscriptions/{other}/test", headers=SUB_AUTH).status_code == 202
        deliveries = client.get(f"/v1/subscriptions/{sid}/deliveries", headers=SUB_AUTH).json()["items"]
        assert len(deliveries) == 1  # the refused one wrote nothing


async def test_a_webhook_test_event_and_its_log_are_short_lived(redis_url: str, redis: Redis) -> None:
    with make_client(redis_url) as client:
        sid = subscribe(client).json()["id"]
        delivery = client.post(f"/v1/subscriptions/{sid}/test", headers=SUB_AUTH).json()
    event_ttl = await redis.pttl(keys.event(delivery["event_id"]))
    log_ttl = await redis.pttl(keys.webhook_delivery(delivery["id"]))
    assert 0 < event_ttl <= TEST_EVENT_TTL_S * 1000 and 0 < log_ttl <= TEST_EVENT_TTL_S * 1000
    # Once delivered, the deduplication mark and the log live no longer than the event.
    events = RedisStore(redis, retention_s=30 * 86_400.0)
    subscriptions = SubscriptionStore(redis, box=None, retention_s=30 * 86_400.0)
    destination = f"sub:{sid}/{delivery['id']}"
    log, subscription = await subscriptions.get_delivery(delivery["id"]), await subscriptions.get(sid)
    assert log is not None and subscription is not None
    record = subscriptions.delivered_record(log, subscription, time.time())
    await events.settle_delivered(
        await events.delivery_state(delivery["event_id"], destination), record=record
    )
    assert 0 < await redis.pttl(keys.delivered(delivery["event_id"], destination)) <= TEST_EVENT_TTL_S * 1000
    assert 0 < await redis.pttl(keys.webhook_delivery(delivery["id"])) <= TEST_EVENT_TTL_S * 1000


# ---------------------------------------------------------------------------- identifiers


NEWLINE_SLUG: Final = SLUG + "\n"


async def test_a_club_slug_ending_in_a_newline_is_refused_on_every_route(
    redis_url: str, redis: Redis
) -> None:
    with make_client(redis_url) as client:
        sid = subscribe(client).json()["id"]
        answers = {
            "create watch": client.post(
                "/v1/watches", json=watch_body("imp-1", NEWLINE_SLUG), headers=SUB_AUTH
            ),
            "list watches": client.get(
                "/v1/watches", params={"loyalty_club_slug": NEWLINE_SLUG}, headers=SUB_AUTH
            ),
            "credentials": client.put(
                f"/v1/clubs/{quote(NEWLINE_SLUG)}/credentials", json={"token": "t0ken"}, headers=SUB_AUTH
            ),
            "create subscription": subscribe(client, loyalty_club_slug=NEWLINE_SLUG),
            "patch subscription": client.patch(
                f"/v1/subscriptions/{sid}", json={"loyalty_club_slug": NEWLINE_SLUG}, headers=SUB_AUTH
            ),
        }
        for route, answer in answers.items():
            assert answer.status_code in (400, 404, 422), (route, answer.status_code)
            assert "error" in answer.json(), route
        assert client.get(f"/v1/subscriptions/{sid}", headers=SUB_AUTH).json()["loyalty_club_slug"] is None
    assert await resolved(redis.hlen(keys.CREDENTIALS)) == 0
    assert len(await redis.keys(keys.WATCH_PREFIX + "*")) == 0


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (patterns.SLUG, "infinity-mall"),
        (patterns.IMPORT_ID, "89405ae3-2dd5-46cb-a13b-840bc588199b"),
        (patterns.WATCH_ID, "wch_" + "0" * 24),
        (patterns.SUBSCRIPTION_ID, "sub_" + "0" * 24),
        (patterns.DELIVERY_ID, "dlv_" + "0" * 24),
        (patterns.CURSOR, "100"),
        (patterns.SLACK_CHANNEL, "C0123456789"),
        (patterns.EVENT_TYPE_SHAPE, "bulk.*"),
        (patterns.HEADER_TOKEN, "t0ken"),
        (patterns.HEADER_TEXT, "club crm"),
        (patterns.API_KEY_ID, "key_" + "0" * 24),
        (patterns.DISPLAY_NAME, "CRM sync"),
    ],
)
def test_every_identifier_pattern_matches_the_whole_value_only(pattern: str, good: str) -> None:
    assert patterns.matches(pattern, good)
    for bad in (good + "\n", good + "\r\n", "\n" + good, good + "\x00"):
        assert not patterns.matches(pattern, bad), repr(bad)


@given(st.text(max_size=70))
def test_a_slug_that_matches_never_holds_a_control_character(value: str) -> None:
    if patterns.matches(patterns.SLUG, value):
        assert value.isascii() and value.isprintable() and value == value.strip()


def test_the_cli_refuses_a_slug_ending_in_a_newline_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "watch", "create", "--club", NEWLINE_SLUG, "--import-id", "imp-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "BRIDGE_API_URL": "http://127.0.0.1:9"},
    )
    assert done.returncode == 2
    assert "is not a club slug" in done.stderr and len(done.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- index trimming


async def test_the_sweeper_trims_index_entries_of_watches_whose_retention_ran_out(redis: Redis) -> None:
    store = RedisStore(redis, retention_s=3600)
    kept, ended = watch_spec("wch_" + "0" * 23 + "1"), watch_spec("wch_" + "0" * 23 + "2")
    for spec in (kept, ended):
        await store.create_watch(spec, f"fp-{spec.id}", 5.0)
    assert await store.stop_watch(ended, ended.created_at + 1)
    await redis.delete(keys.watch(ended.id))  # its retention ran out
    active, stopped = keys.watch_index(SLUG, "active"), keys.watch_index(SLUG, "stopped")
    assert [await redis.zcard(index) for index in (active, stopped)] == [1, 1]
    assert await store.trim_due() and not await store.trim_due()  # once per 10 minutes, any worker
    assert await store.trim_indexes() == 1
    assert [await redis.zcard(index) for index in (active, stopped)] == [1, 0]
    assert await store.clubs_with_watches() == [SLUG]  # it still has a watch
    assert await store.trim_indexes() == 0
    # The last watch goes: so does the club, from the clubs with watches.
    assert await store.stop_watch(kept, kept.created_at + 1)
    await redis.delete(keys.watch(kept.id))
    assert await store.trim_indexes() == 1
    assert await store.clubs_with_watches() == [] and await redis.keys(keys.WATCH_INDEX_PREFIX + "*") == []


def watch_spec(wid: str) -> WatchSpec:
    now = time.time()
    return WatchSpec(
        id=wid, loyalty_club_slug=SLUG, import_id="imp-" + wid[-1], created_at=now, expires_at=now + 60
    )


def test_a_subscription_counts_for_its_club_filter_else_its_clubs_else_every_club() -> None:
    url = "https://hooks.example.com/x"
    assert cap_groups(SubscriptionDoc(url=url, loyalty_club_slug="a", clubs=("a", "b"))) == ("a",)
    assert cap_groups(SubscriptionDoc(url=url, clubs=("a", "b"))) == ("a", "b")
    assert cap_groups(SubscriptionDoc(url=url)) == (ALL_CLUBS_GROUP,)


def test_the_limit_counts_the_clubs_a_subscription_is_limited_to(redis_url: str, redis: Any) -> None:
    with make_client(redis_url, BRIDGE_MAX_SUBSCRIPTIONS_PER_CLUB="2") as client:
        assert subscribe(client, loyalty_club_slug=SLUG).status_code == 201
        assert subscribe(client, clubs=[SLUG, "other-club"]).status_code == 201
        refused = subscribe(client, clubs=[SLUG])
        assert refused.status_code == 409 and SLUG in refused.json()["error"]["message"]
        assert subscribe(client, clubs=["other-club"]).status_code == 201  # other-club: 2 of 2 now
        assert error_code(subscribe(client, loyalty_club_slug="other-club")) == "limit_reached"
