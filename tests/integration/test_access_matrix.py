"""Who may do what: an admin key, an editor and a viewer of club A, and an editor of club B against
every ``/v1`` route of the app, each with the status it must get. A refused request changes
nothing in Redis.

The routes come from the app itself: a route without a row in :data:`MATRIX` fails
:func:`test_every_v1_route_has_a_row`. To add a route, add a row: its ``(method, path)`` as the
app declares it, then one :class:`Case` per situation worth pinning (a path whose ``{names}`` are
filled from :class:`World`, a body) with the statuses of ``admin, editor_a, viewer_a, editor_b``.
Every case runs against a freshly seeded database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import TestClient
from redis import Redis as SyncRedis

from bridge.store import keys
from tests.integration.test_api import AUTH, error_of
from tests.integration.test_subscriptions_api import HOOK, make_client

CLUB_A: Final = "club-a"
CLUB_B: Final = "club-b"
PRINCIPALS: Final = ("admin", "editor_a", "viewer_a", "editor_b")
IMPORT_ID: Final = "89405ae3-2dd5-46cb-a13b-840bc588199b"


@dataclass(frozen=True)
class Case:
    path: str
    """With ``{names}`` of :class:`World` attributes."""
    expect: tuple[int, int, int, int]
    """Statuses for admin, editor_a, viewer_a, editor_b."""
    body: Any = None
    what: str = ""


def watch_body(club: str) -> dict[str, Any]:
    return {"loyalty_club_slug": club, "import_id": IMPORT_ID, "bulk_ids": [11]}


MATRIX: Final[dict[tuple[str, str], tuple[Case, ...]]] = {
    # ------------------------------------------------------------------ watches
    ("POST", "/v1/watches"): (
        Case("/v1/watches", (201, 201, 403, 403), {**watch_body(CLUB_A), "bulk_ids": [99]}, "for club A"),
        Case("/v1/watches", (200, 200, 403, 403), watch_body(CLUB_A), "identical to A's watch"),
    ),
    ("GET", "/v1/watches"): (Case("/v1/watches", (200, 200, 200, 200)),),
    ("GET", "/v1/watches/{watch_id:str}"): (
        Case("/v1/watches/{watch_a}", (200, 200, 200, 404), what="A's watch"),
        Case("/v1/watches/{watch_b}", (200, 404, 404, 200), what="B's watch"),
    ),
    ("DELETE", "/v1/watches/{watch_id:str}"): (
        Case("/v1/watches/{watch_a}", (200, 200, 403, 404), what="A's watch"),
    ),
    ("GET", "/v1/watches/{watch_id:str}/events"): (
        Case("/v1/watches/{watch_a}/events", (200, 200, 200, 404), what="A's watch"),
    ),
    # ------------------------------------------------------------------ credentials
    ("PUT", "/v1/clubs/{slug:str}/credentials"): (
        Case(f"/v1/clubs/{CLUB_A}/credentials", (204, 204, 403, 403), {"token": "t0k3n"}, "club A"),
    ),
    # ------------------------------------------------------------------ subscriptions
    ("GET", "/v1/clubs/{slug:str}/slack-channels"): (
        Case(f"/v1/clubs/{CLUB_A}/slack-channels", (200, 403, 403, 403), what="admin only"),
    ),
    ("PUT", "/v1/clubs/{slug:str}/slack-channels"): (
        Case(
            f"/v1/clubs/{CLUB_A}/slack-channels",
            (200, 403, 403, 403),
            {"channel_ids": ["C0123ABCDEF"]},
            "admin only",
        ),
    ),
    ("POST", "/v1/subscriptions"): (
        Case("/v1/subscriptions", (201, 201, 403, 403), {"url": HOOK, "clubs": [CLUB_A]}, "for club A"),
        Case("/v1/subscriptions", (201, 201, 403, 201), {"url": HOOK}, "for the key's own clubs"),
        Case(
            "/v1/subscriptions",
            (201, 403, 403, 403),
            {"url": HOOK, "loyalty_club_slug": "club-z"},
            "filtered on a club nobody holds",
        ),
    ),
    ("GET", "/v1/subscriptions"): (Case("/v1/subscriptions", (200, 200, 200, 200)),),
    ("GET", "/v1/subscriptions/{subscription_id:str}"): (
        Case("/v1/subscriptions/{sub_a}", (200, 200, 200, 404), what="A's"),
        Case("/v1/subscriptions/{sub_all}", (200, 404, 404, 404), what="an admin's, every club"),
    ),
    ("PATCH", "/v1/subscriptions/{subscription_id:str}"): (
        Case("/v1/subscriptions/{sub_a}", (200, 200, 403, 404), {"enabled": False}, "A's"),
        Case("/v1/subscriptions/{sub_a}", (200, 403, 403, 404), {"clubs": [CLUB_B]}, "A's, to club B"),
        Case("/v1/subscriptions/{sub_all}", (200, 404, 403, 404), {"enabled": False}, "an admin's"),
    ),
    ("DELETE", "/v1/subscriptions/{subscription_id:str}"): (
        Case("/v1/subscriptions/{sub_a}", (204, 204, 403, 404), what="A's"),
    ),
    ("POST", "/v1/subscriptions/{subscription_id:str}/rotate-secret"): (
        Case("/v1/subscriptions/{sub_a}/rotate-secret", (200, 200, 403, 404), what="A's"),
    ),
    ("POST", "/v1/subscriptions/{subscription_id:str}/test"): (
        Case("/v1/subscriptions/{sub_a}/test", (202, 202, 403, 404), what="A's"),
    ),
    ("GET", "/v1/subscriptions/{subscription_id:str}/deliveries"): (
        Case("/v1/subscriptions/{sub_a}/deliveries", (200, 200, 200, 404), what="A's"),
    ),
    # ------------------------------------------------------------------ deliveries
    ("GET", "/v1/deliveries/{delivery_id:str}"): (
        Case("/v1/deliveries/{delivery_a}", (200, 200, 200, 404), what="to A's subscription"),
        Case("/v1/deliveries/{delivery_all}", (200, 404, 404, 404), what="to an admin's"),
    ),
    ("POST", "/v1/deliveries/{delivery_id:str}/redeliver"): (
        Case("/v1/deliveries/{delivery_a}/redeliver", (202, 202, 403, 404), what="to A's subscription"),
    ),
    # ------------------------------------------------------------------ the event catalog (any key)
    ("GET", "/v1/event-types"): (Case("/v1/event-types", (200, 200, 200, 200)),),
    # ------------------------------------------------------------------ api keys (admin only)
    ("POST", "/v1/api-keys"): (
        Case("/v1/api-keys", (201, 403, 403, 403), {"name": "n", "clubs": [CLUB_A], "role": "viewer"}),
    ),
    ("GET", "/v1/api-keys"): (Case("/v1/api-keys", (200, 403, 403, 403)),),
    ("GET", "/v1/api-keys/{key_id:str}"): (Case("/v1/api-keys/{key_editor_b}", (200, 403, 403, 403)),),
    ("DELETE", "/v1/api-keys/{key_id:str}"): (Case("/v1/api-keys/{key_spare}", (204, 403, 403, 403)),),
}
"""(method, path as the app declares it) -> the cases that pin who may call it."""


def v1_routes(app: Litestar) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under ``/v1`` (HEAD and OPTIONS aside)."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute) and route.path.startswith("/v1"):
            for method in route.methods:
                if method not in ("HEAD", "OPTIONS"):
                    found.add((str(method), route.path))
    return found


@dataclass
class World:
    """What every case starts from: keys, and resources of club A, of club B and of every club."""

    headers: dict[str, dict[str, str]]
    key_editor_b: str
    key_spare: str
    watch_a: str
    watch_b: str
    sub_a: str
    sub_all: str
    delivery_a: str
    delivery_all: str


def ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def new_key(client: TestClient[Any], clubs: list[str], role: str) -> dict[str, Any]:
    return ok(
        client.post(
            "/v1/api-keys", json={"name": f"{role} {clubs}", "clubs": clubs, "role": role}, headers=AUTH
        )
    )


def seed(client: TestClient[Any]) -> World:
    editor_a = new_key(client, [CLUB_A], "editor")
    viewer_a = new_key(client, [CLUB_A], "viewer")
    editor_b = new_key(client, [CLUB_B], "editor")
    spare = new_key(client, [CLUB_B], "viewer")
    headers = {
        "admin": AUTH,
        "editor_a": {"Authorization": f"Bearer {editor_a['key']}"},
        "viewer_a": {"Authorization": f"Bearer {viewer_a['key']}"},
        "editor_b": {"Authorization": f"Bearer {editor_b['key']}"},
    }
    watch_a = ok(client.post("/v1/watches", json=watch_body(CLUB_A), headers=headers["editor_a"]))
    watch_b = ok(client.post("/v1/watches", json=watch_body(CLUB_B), headers=headers["editor_b"]))
    sub_a = ok(client.post("/v1/subscriptions", json={"url": HOOK}, headers=headers["editor_a"]))
    sub_all = ok(client.post("/v1/subscriptions", json={"url": HOOK}, headers=AUTH))
    delivery_a = ok(client.post(f"/v1/subscriptions/{sub_a['id']}/test", headers=AUTH), 202)
    delivery_all = ok(client.post(f"/v1/subscriptions/{sub_all['id']}/test", headers=AUTH), 202)
    return World(
        headers=headers,
        key_editor_b=editor_b["id"],
        key_spare=spare["id"],
        watch_a=watch_a["id"],
        watch_b=watch_b["id"],
        sub_a=sub_a["id"],
        sub_all=sub_all["id"],
        delivery_a=delivery_a["id"],
        delivery_all=delivery_all["id"],
    )


def snapshot(redis: SyncRedis) -> dict[bytes, bytes | None]:
    """Every key's serialized value: equal snapshots, nothing changed."""
    dumped: dict[bytes, bytes | None] = {}
    for key in sorted(redis.scan_iter(count=1000)):
        dumped[key] = cast("bytes | None", redis.dump(key))
    return dumped


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[TestClient[Any]]:
    with make_client(redis_url) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def sync_redis(redis_url: str) -> Iterator[SyncRedis]:
    connection = SyncRedis.from_url(redis_url)
    try:
        yield connection
    finally:
        connection.close()


def test_every_v1_route_has_a_row(client: TestClient[Any]) -> None:
    served = v1_routes(client.app)
    missing = sorted(served - set(MATRIX))
    assert not missing, f"routes without a row in MATRIX (add one per route): {missing}"
    gone = sorted(set(MATRIX) - served)
    assert not gone, f"rows for routes the app no longer serves: {gone}"


CASES: Final = [
    pytest.param(
        method, case, who, status, id=f"{method} {case.path} {case.what} as {who}".replace("  ", " ")
    )
    for (method, _), cases in MATRIX.items()
    for case in cases
    for who, status in zip(PRINCIPALS, case.expect, strict=True)
]


@pytest.mark.parametrize(("method", "case", "who", "status"), CASES)
def test_access(
    client: TestClient[Any], sync_redis: SyncRedis, method: str, case: Case, who: str, status: int
) -> None:
    sync_redis.flushdb()
    world = seed(client)
    # The seed's own webhook.test would rate-limit the case's (one per subscription per 10 s).
    for gate in sync_redis.scan_iter(match=keys.WEBHOOK_TEST_PREFIX + "*"):
        sync_redis.delete(gate)
    path = case.path.format(**vars(world))
    before = snapshot(sync_redis)
    response = client.request(method, path, json=case.body, headers=world.headers[who])
    assert response.status_code == status, response.text
    if status >= 400:
        error = error_of(response)
        assert error["code"] in {403: ("forbidden", "forbidden_club"), 404: ("not_found",)}[status]
        assert snapshot(sync_redis) == before, "a refused request changed Redis"


def test_a_club_key_lists_only_what_belongs_to_its_clubs(
    client: TestClient[Any], sync_redis: SyncRedis
) -> None:
    sync_redis.flushdb()
    world = seed(client)

    def ids(path: str, who: str, **params: str) -> set[str]:
        body = ok(client.get(path, params=params, headers=world.headers[who]), 200)
        return {item["id"] for item in body["items"]}

    assert ids("/v1/watches", "admin") == {world.watch_a, world.watch_b}
    assert ids("/v1/watches", "editor_a") == ids("/v1/watches", "viewer_a") == {world.watch_a}
    assert ids("/v1/watches", "editor_b") == {world.watch_b}
    assert ids("/v1/watches", "editor_b", loyalty_club_slug=CLUB_A) == set()
    assert ids("/v1/subscriptions", "admin") == {world.sub_a, world.sub_all}
    assert ids("/v1/subscriptions", "viewer_a") == {world.sub_a}
    assert ids("/v1/subscriptions", "editor_b") == set()
    assert ids(f"/v1/subscriptions/{world.sub_a}/deliveries", "viewer_a") == {world.delivery_a}


def test_the_openapi_document_describes_who_may_call_each_v1_operation(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["BearerApiKey"]
    assert scheme["scheme"] == "bearer"
    assert all(word in scheme["description"] for word in ("BRIDGE_API_KEYS", "bk_", "editor", "viewer"))
    undescribed = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1") and method in ("get", "post", "put", "patch", "delete"):
                if not operation.get("description", "").startswith("**Scope:**"):
                    undescribed.append(f"{method.upper()} {path}")
                assert operation["security"] == [{"BearerApiKey": []}]
    assert not undescribed, f"say which keys may call them (bridge.api.docs.scoped): {undescribed}"
    only_admin = document["paths"]["/v1/api-keys"]["post"]
    assert "admin keys only" in only_admin["description"] and "403" in only_admin["responses"]
    create_watch = document["paths"]["/v1/watches"]["post"]
    assert "forbidden_club" in create_watch["description"] and "403" in create_watch["responses"]
