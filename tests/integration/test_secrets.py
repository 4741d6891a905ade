"""Secrets at rest fail closed and rotate: unreadable club tokens, several keys, ``bridge secrets reseal``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Final

import pytest
from cryptography.fernet import Fernet
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bridge.config import Secret
from bridge.core.model import WatchSpec
from bridge.crypto import SecretBox, SecretUnreadable
from bridge.reseal import RESEALERS, reseal_all
from bridge.store import keys, scripts
from bridge.store.apikeys import ApiKeyStore
from bridge.store.redis_store import resolved
from bridge.upstream.credentials import CredentialStore
from bridge.webhooks.model import SubscriptionDoc
from bridge.webhooks.store import SubscriptionStore
from mpc_simulator import SimulatorControl
from tests.integration.conftest import MPC_TOKEN, SECRET_KEY, SLUG, Pipeline

IMPORT: Final = "imp-0001"
OLD_KEY: Final = Fernet.generate_key().decode()
NEW_KEY: Final = Fernet.generate_key().decode()
LOST_KEY: Final = Fernet.generate_key().decode()


def spec(wid: str = "wch_00000000000000000000aaaa") -> WatchSpec:
    now = time.time()
    return WatchSpec(
        id=wid, loyalty_club_slug=SLUG, import_id=IMPORT, created_at=now, expires_at=now + 3600, bulk_ids=(5,)
    )


def box(*listed: str) -> SecretBox:
    return SecretBox(tuple(Secret(key) for key in listed))


# ---------------------------------------------------------------------------- several keys


def test_new_values_are_sealed_with_the_first_key_and_older_keys_still_open() -> None:
    old_sealed = box(OLD_KEY).seal("token-1")
    rotated = box(NEW_KEY, OLD_KEY)
    assert rotated.open(old_sealed) == "token-1"
    assert box(NEW_KEY).open(rotated.seal("token-2")) == "token-2"  # the newest seals
    assert not rotated.is_current(old_sealed)
    assert box(NEW_KEY).open(rotated.reseal(old_sealed)) == "token-1"
    with pytest.raises(SecretUnreadable):
        box(NEW_KEY).open(old_sealed)


def test_a_value_no_listed_key_opens_is_unreadable_not_garbage() -> None:
    with pytest.raises(SecretUnreadable):
        box(NEW_KEY, OLD_KEY).open(box(LOST_KEY).seal("x"))
    with pytest.raises(SecretUnreadable):
        box(NEW_KEY).reseal(b"not a fernet token")


# ---------------------------------------------------------------------------- club tokens


async def test_an_unreadable_club_token_fails_its_watches_at_once_and_never_uses_the_default_token(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}])
    await CredentialStore(redis, box(LOST_KEY)).put(SLUG, "club-token", None, time.time())
    watch = await pipeline.create(spec())
    await pipeline.poll_due()
    events = await pipeline.events(watch.id)
    assert [e.type for e in events] == ["watch.upstream_failing"]  # the first poll, not after 3
    assert str(events[0].data.reason).startswith("credentials_unreadable")
    assert (await control.requests()).items == []  # MPC never saw BRIDGE_MPC_TOKEN for this club
    record = await pipeline.store.get_watch(watch.id)
    assert record is not None and record.state == "active"  # it can recover
    await pipeline.poll_due()
    assert await pipeline.types(watch.id) == ["watch.upstream_failing"]  # announced once


async def test_the_watch_recovers_once_the_clubs_token_is_set_anew(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl, redis: Redis
) -> None:
    first = pipeline_factory()
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}])
    await CredentialStore(redis, box(LOST_KEY)).put(SLUG, MPC_TOKEN, None, time.time())
    watch = await first.create(spec())
    await first.poll_due()
    await CredentialStore(redis, box(SECRET_KEY)).put(SLUG, MPC_TOKEN, None, time.time())
    second = pipeline_factory()  # a worker whose credential cache is fresh
    await second.poll_due()
    expected = ["watch.upstream_failing", "watch.upstream_recovered", "bulk.started"]
    assert await second.types(watch.id) == expected


async def test_an_old_key_still_listed_keeps_the_club_polling(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl, redis: Redis
) -> None:
    pipeline = pipeline_factory(BRIDGE_SECRET_KEY=f"{NEW_KEY},{SECRET_KEY}")
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}])
    await CredentialStore(redis, box(SECRET_KEY)).put(SLUG, MPC_TOKEN, None, time.time())
    watch = await pipeline.create(spec())
    await pipeline.poll_due()
    assert await pipeline.types(watch.id) == ["bulk.started"]


# ---------------------------------------------------------------------------- webhook secrets


async def subscribed(redis: Redis, sealing: SecretBox, sid: str = "sub_" + "0" * 23 + "1") -> str:
    store = SubscriptionStore(redis, box=sealing, retention_s=3600)
    await store.create(sid, SubscriptionDoc(url="https://example.com/hook"), "whsec-one", enabled=True, now=0)
    await store.rotate(sid, "whsec-two", now=time.time())
    return sid


async def test_an_unreadable_previous_webhook_secret_is_skipped_and_the_current_one_signs(
    redis: Redis,
) -> None:
    sid = await subscribed(redis, box(LOST_KEY))
    # Only the current secret is sealed with a key the worker has.
    current = box(SECRET_KEY).seal("whsec-two").decode()
    await resolved(redis.hset(keys.subscription(sid), keys.S_SECRET, current))
    store = SubscriptionStore(redis, box=box(SECRET_KEY), retention_s=3600)
    signing = await store.signing(sid, time.time())
    assert signing is not None and (signing.current, signing.previous) == ("whsec-two", None)


async def test_an_unreadable_current_webhook_secret_signs_nothing(redis: Redis) -> None:
    sid = await subscribed(redis, box(LOST_KEY))
    store = SubscriptionStore(redis, box=box(SECRET_KEY), retention_s=3600)
    with pytest.raises(SecretUnreadable):
        await store.signing(sid, time.time())


# ---------------------------------------------------------------------------- reseal


async def seed_old_secrets(redis: Redis) -> str:
    await CredentialStore(redis, box(OLD_KEY)).put(SLUG, "club-token", "crm", 1.0)
    await ApiKeyStore(redis, box(OLD_KEY)).pepper(create=True)
    return await subscribed(redis, box(OLD_KEY))


async def test_reseal_seals_every_kind_with_the_newest_key(redis: Redis) -> None:
    sid = await seed_old_secrets(redis)
    await CredentialStore(redis, box(LOST_KEY)).put("lost-club", "lost-token", None, 1.0)
    tallies = await reseal_all(redis, box(NEW_KEY, OLD_KEY))
    assert set(tallies) == {resealer.name for resealer in RESEALERS}
    assert [(t.resealed, t.unreadable) for t in tallies.values()] == [(1, 1), (1, 0), (1, 0), (1, 0)]
    newest_only = box(NEW_KEY)
    credentials = await CredentialStore(redis, newest_only).get(SLUG)
    assert credentials is not None and (credentials.token, credentials.product_name) == ("club-token", "crm")
    signing = await SubscriptionStore(redis, box=newest_only, retention_s=3600).signing(sid, time.time())
    assert signing is not None and (signing.current, signing.previous) == ("whsec-two", "whsec-one")
    assert await ApiKeyStore(redis, newest_only).pepper(create=False) is not None
    again = await reseal_all(redis, box(NEW_KEY, OLD_KEY))
    assert [(t.resealed, t.current) for t in again.values()] == [(0, 1)] * 4


async def test_a_reseal_never_overwrites_a_value_changed_meanwhile(redis: Redis) -> None:
    replace = scripts.register(redis, "reseal_field")
    await redis.set("bridge:test-string", "set-meanwhile")
    assert await replace(keys=["bridge:test-string"], args=["", "what-was-read", "resealed"]) == 0
    assert await redis.get("bridge:test-string") == b"set-meanwhile"
    await resolved(redis.hset("bridge:test-hash", "f", "set-meanwhile"))
    assert await replace(keys=["bridge:test-hash"], args=["f", "what-was-read", "resealed"]) == 0
    assert await redis.hmget("bridge:test-hash", ["f"]) == [b"set-meanwhile"]  # type: ignore[misc]
    assert await replace(keys=["bridge:gone"], args=["f", "what-was-read", "resealed"]) == 0
    assert not await redis.exists("bridge:gone")  # never re-creates what was deleted


def test_bridge_secrets_reseal_reports_each_kind_and_exits_1_on_unreadable_values(redis_url: str) -> None:
    sync = SyncRedis.from_url(redis_url)
    try:
        sync.hset(keys.CREDENTIALS, "lost-club", "not a record")
        env = {
            **os.environ,
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_SECRET_KEY": f"{NEW_KEY},{OLD_KEY}",
            "BRIDGE_LOG_FORMAT": "json",
        }
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "secrets", "reseal"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        sync.delete(keys.CREDENTIALS)
        sync.close()
    assert done.returncode == 1, done.stderr
    assert "club MPC tokens: 0 resealed, 0 already current, 1 unreadable" in done.stdout
    assert "not a record" not in done.stdout + done.stderr
