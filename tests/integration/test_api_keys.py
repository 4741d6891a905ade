"""``/v1/api-keys`` and the managed keys' store against a real Redis: the key is shown once and
stored only as a keyed hash, bad bodies change nothing, every write names its key, the pepper
can be resealed under a new secret key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any, Final

import msgspec
import pytest
from cryptography.fernet import Fernet
from litestar.testing import TestClient
from redis.asyncio import Redis

from bridge.config import Secret
from bridge.crypto import SecretBox, SecretUnreadable
from bridge.store import keys
from bridge.store.apikeys import ApiKeyStore, reseal_pepper
from bridge.store.redis_store import resolved
from bridge.upstream.credentials import StoredCredentials
from tests.integration.test_api import AUTH, error_of
from tests.integration.test_subscriptions_api import HOOK, make_client
from tests.integration.webhooks_helpers import FERNET_KEY

NEW_KEY: Final = {"name": "Infinity Mall CRM", "clubs": ["infinity-mall"], "role": "editor"}


@pytest.fixture
def client(redis_url: str, redis: Any) -> Iterator[TestClient[Any]]:
    with make_client(redis_url) as test_client:
        yield test_client


def create(client: TestClient[Any], **body: Any) -> dict[str, Any]:
    response = client.post("/v1/api-keys", json={**NEW_KEY, **body}, headers=AUTH)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def everything_in(redis: Redis) -> bytes:
    """Every value in Redis, dumped side by side (to look for what must not be stored)."""
    dumped = [await redis.dump(key) or b"" async for key in redis.scan_iter(count=1000)]
    return b"".join(dumped)


async def test_the_key_is_shown_once_and_stored_only_as_a_keyed_hash(
    client: TestClient[Any], redis: Redis
) -> None:
    created = create(client)
    assert set(created) == {"id", "key", "name", "clubs", "role", "created_at", "created_by"}
    assert created["key"].startswith("bk_") and created["id"].startswith("key_")
    assert created["created_by"].startswith("admin_") and created["clubs"] == ["infinity-mall"]
    shown = client.get(f"/v1/api-keys/{created['id']}", headers=AUTH).json()
    assert shown == {k: v for k, v in created.items() if k != "key"}
    listed = client.get("/v1/api-keys", headers=AUTH).json()
    assert listed == {"items": [shown], "next_cursor": None}
    stored = await everything_in(redis)
    secret_part = created["key"].removeprefix("bk_").encode()
    assert secret_part not in stored
    # The digest is keyed: a plain SHA-256 of the key is not what is stored either.
    assert hashlib.sha256(created["key"].encode()).hexdigest().encode() not in stored
    pepper = await redis.get(keys.API_KEY_PEPPER)
    assert pepper is not None and SecretBox(Secret(FERNET_KEY)).open(pepper)  # sealed, opens with the key


def test_a_managed_key_works_until_it_is_revoked(client: TestClient[Any]) -> None:
    created = create(client)
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/v1/watches", headers=headers).status_code == 200
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=AUTH).status_code == 204
    time.sleep(0.6)  # the API's cache period
    response = client.get("/v1/watches", headers=headers)
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    assert client.get(f"/v1/api-keys/{created['id']}", headers=AUTH).status_code == 404
    assert client.delete(f"/v1/api-keys/{created['id']}", headers=AUTH).status_code == 404


def test_lists_are_newest_first_and_paginated(client: TestClient[Any]) -> None:
    ids = [create(client, name=f"key {n}")["id"] for n in range(3)]
    first = client.get("/v1/api-keys", params={"limit": 2}, headers=AUTH).json()
    assert [k["id"] for k in first["items"]] == ids[::-1][:2] and first["next_cursor"]
    rest = client.get(
        "/v1/api-keys", params={"limit": 2, "cursor": first["next_cursor"]}, headers=AUTH
    ).json()
    assert [k["id"] for k in rest["items"]] == ids[:1] and rest["next_cursor"] is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "x", "clubs": ["a"]},
        {**NEW_KEY, "role": "admin"},
        {**NEW_KEY, "role": None},
        {**NEW_KEY, "clubs": []},
        {**NEW_KEY, "clubs": "infinity-mall"},
        {**NEW_KEY, "clubs": ["infinity-mall", "infinity-mall"]},
        {**NEW_KEY, "clubs": ["infinity-mall\n"]},
        {**NEW_KEY, "clubs": ["Infinity Mall"]},
        {**NEW_KEY, "clubs": [f"club-{n}" for n in range(101)]},
        {**NEW_KEY, "clubs": [1e308]},
        {**NEW_KEY, "clubs": [["nested"]]},
        {**NEW_KEY, "name": ""},
        {**NEW_KEY, "name": "x" * 101},
        {**NEW_KEY, "name": "two\nlines"},
        {**NEW_KEY, "name": 10**40},
        {**NEW_KEY, "extra": True},
    ],
)
async def test_invalid_bodies_are_422_and_create_nothing(
    client: TestClient[Any], redis: Redis, body: dict[str, Any]
) -> None:
    response = client.post("/v1/api-keys", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "validation_error"
    assert await redis.exists(keys.API_KEYS, keys.API_KEY_DIGESTS) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"name": "x", "clubs": ["a"], "role": NaN}',
        b"[" * 5000 + b"]" * 5000,
        '{"name": "caf\xe9"}'.encode("latin-1"),
    ],
)
async def test_unreadable_bodies_are_4xx_and_create_nothing(
    client: TestClient[Any], redis: Redis, raw: bytes
) -> None:
    response = client.post("/v1/api-keys", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    error_of(response)
    assert await redis.exists(keys.API_KEYS, keys.API_KEY_DIGESTS) == 0


@pytest.mark.parametrize(
    "presented",
    ["bk_", "bk_" + "A" * 43, "bk_" + "A" * 5000, "bk_\u00e9t\u00e9", "key_000000000000000000000000"],
)
def test_made_up_managed_keys_are_401(client: TestClient[Any], presented: str) -> None:
    create(client)
    header = f"Bearer {presented}".encode("latin-1")  # what a client may send, non-ASCII included
    response = client.get("/v1/watches", headers={b"Authorization": header})
    assert response.status_code == 401


def test_every_write_names_its_key_in_the_resource_and_in_an_audit_line(
    redis_url: str, redis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with make_client(redis_url) as client:
        created = create(client)
        editor = {"Authorization": f"Bearer {created['key']}"}
        watch = client.post(
            "/v1/watches", json={"loyalty_club_slug": "infinity-mall", "import_id": "imp-1"}, headers=editor
        ).json()
        sub = client.post("/v1/subscriptions", json={"url": HOOK}, headers=editor).json()
        put = client.put("/v1/clubs/infinity-mall/credentials", json={"token": "t0k3n"}, headers=editor)
        client.delete(f"/v1/watches/{watch['id']}", headers=editor)
        client.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": False}, headers=editor)
        client.post("/v1/watches", json={"loyalty_club_slug": "other-club", "import_id": "i"}, headers=editor)
    assert put.status_code == 204
    assert watch["created_by"] == created["id"]
    assert sub["created_by"] == created["id"] and sub["clubs"] == ["infinity-mall"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    audit = [(line["action"], line["key_id"]) for line in lines if line.get("event") == "audit"]
    assert audit == [
        ("api_key.create", created["created_by"]),
        ("watch.create", created["id"]),
        ("subscription.create", created["id"]),
        ("credentials.put", created["id"]),
        ("watch.stop", created["id"]),
        ("subscription.update", created["id"]),
    ]  # the refused creation for another club left no line
    assert created["key"] not in capsys.readouterr().out


async def test_credentials_record_the_key_that_stored_them(client: TestClient[Any], redis: Redis) -> None:
    created = create(client)
    editor = {"Authorization": f"Bearer {created['key']}"}
    assert (
        client.put("/v1/clubs/infinity-mall/credentials", json={"token": "t"}, headers=editor).status_code
        == 204
    )
    raw: bytes | None = await resolved(redis.hget(keys.CREDENTIALS, "infinity-mall"))  # type: ignore[arg-type]
    assert raw is not None
    assert msgspec.msgpack.decode(raw, type=StoredCredentials).created_by == created["id"]


async def test_the_pepper_is_resealed_under_a_new_secret_key_and_keys_stay_valid(redis: Redis) -> None:
    old_box = SecretBox(Secret(FERNET_KEY))
    new_box = SecretBox(Secret(Fernet.generate_key().decode()))
    store = ApiKeyStore(redis, old_box)
    record, key = await store.create(name="n", clubs=("a",), role="viewer", created_by="admin_1", now=1.0)
    assert await reseal_pepper(redis, old_box, new_box) == 1
    with pytest.raises(SecretUnreadable):
        await ApiKeyStore(redis, old_box).lookup(key)
    assert await ApiKeyStore(redis, new_box).lookup(key) == record
    assert await reseal_pepper(redis, old_box, new_box) == 0  # already done: left as it is
    other = SecretBox(Secret(Fernet.generate_key().decode()))
    with pytest.raises(SecretUnreadable):
        await reseal_pepper(redis, other, SecretBox(Secret(Fernet.generate_key().decode())))
    await redis.delete(keys.API_KEY_PEPPER)
    assert await reseal_pepper(redis, old_box, new_box) == 0  # no key made yet: nothing to reseal


async def test_processes_creating_their_first_keys_at_once_share_one_pepper(redis: Redis) -> None:
    box = SecretBox(Secret(FERNET_KEY))
    stores = [ApiKeyStore(redis, box) for _ in range(4)]
    made = await asyncio.gather(
        *(s.create(name="n", clubs=("a",), role="viewer", created_by="admin_1", now=1.0) for s in stores)
    )
    reader = ApiKeyStore(redis, box)
    for record, key in made:
        assert await reader.lookup(key) == record


@pytest.mark.parametrize(
    "clubs",
    [[], ["club-a\n"], ["Not A Slug"], [1], "club-a", [f"club-{n}" for n in range(101)], [None], {"a": 1}],
)
async def test_a_subscriptions_clubs_are_validated_and_a_bad_one_creates_nothing(
    client: TestClient[Any], redis: Redis, clubs: Any
) -> None:
    response = client.post("/v1/subscriptions", json={"url": HOOK, "clubs": clubs}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert await redis.exists(keys.SUBSCRIPTIONS) == 0


def test_a_subscriptions_clubs_are_kept_sorted_once_and_changed_only_to_clubs_held(
    client: TestClient[Any],
) -> None:
    created = create(client, clubs=["club-b", "club-a"])
    editor = {"Authorization": f"Bearer {created['key']}"}
    sub = client.post("/v1/subscriptions", json={"url": HOOK, "clubs": ["club-b", "club-b"]}, headers=editor)
    assert sub.status_code == 201 and sub.json()["clubs"] == ["club-b"]
    sid = sub.json()["id"]
    widened = client.patch(f"/v1/subscriptions/{sid}", json={"clubs": None}, headers=editor)
    assert widened.status_code == 200 and widened.json()["clubs"] == ["club-a", "club-b"]
    refused = client.patch(f"/v1/subscriptions/{sid}", json={"clubs": ["club-c"]}, headers=editor)
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden_club"
    assert client.get(f"/v1/subscriptions/{sid}", headers=editor).json()["clubs"] == ["club-a", "club-b"]
    by_admin = client.patch(f"/v1/subscriptions/{sid}", json={"clubs": None}, headers=AUTH)
    assert by_admin.json()["clubs"] is None  # an admin may open it to every club...
    assert (
        client.get(f"/v1/subscriptions/{sid}", headers=editor).status_code == 404
    )  # ...then it is not theirs
