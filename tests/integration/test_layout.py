"""The layout version and ``bridge migrate``: data written by the previous layout is upgraded in
place, an empty database starts at the current layout, newer data is refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import msgspec
import pytest
from redis.asyncio import Redis

from bridge.api.auth import Principal
from bridge.core.model import WatchSpec
from bridge.store import keys
from bridge.store.layout import (
    LAYOUT_VERSION,
    UNVERSIONED,
    LayoutError,
    ensure_layout,
    migrate,
    stored_version,
)
from bridge.store.redis_store import RedisStore, encode_spec, resolved
from bridge.webhooks.store import SubscriptionStore

LEGACY_SLACK_ERRORS = "bridge:slack:errors:"
"""Where layout 1 kept Slack's unmasked errors summary of an event."""


async def write_layout_1(redis: Redis) -> None:
    """What a bridge before the layout version left in Redis (no ``bridge:layout`` key)."""
    await redis.set(LEGACY_SLACK_ERRORS + "evt_a", b'{"groups":[]}', px=3_600_000)
    await redis.set(LEGACY_SLACK_ERRORS + "evt_b", b'{"groups":[1]}', px=60_000)
    await resolved(redis.hset("bridge:watch:wch_1", mapping={"doc": b"x", "state": "active"}))


async def test_an_empty_database_starts_at_the_current_layout(redis: Redis) -> None:
    assert await stored_version(redis) is None
    said: list[str] = []
    assert await migrate(redis, report=said.append) == LAYOUT_VERSION
    assert await redis.get(keys.LAYOUT) == str(LAYOUT_VERSION).encode()
    assert said == [f"empty database: layout {LAYOUT_VERSION}"]


async def test_layout_1_data_is_upgraded_in_place_keeping_its_ttl(redis: Redis) -> None:
    await write_layout_1(redis)
    assert await stored_version(redis) == UNVERSIONED
    said: list[str] = []
    await migrate(redis, report=said.append)
    assert await redis.keys(LEGACY_SLACK_ERRORS + "*") == []
    assert await redis.get(keys.attachment("evt_a", "slack")) == b'{"groups":[]}'
    assert await redis.get(keys.attachment("evt_b", "slack")) == b'{"groups":[1]}'
    assert 3_000_000 < await redis.pttl(keys.attachment("evt_a", "slack")) <= 3_600_000
    assert 0 < await redis.pttl(keys.attachment("evt_b", "slack")) <= 60_000
    assert (await resolved(redis.hgetall("bridge:watch:wch_1")))[b"state"] == b"active"  # the rest stays
    assert await stored_version(redis) == LAYOUT_VERSION
    assert said[0].startswith("layout 1 -> 2:") and "(2 keys," in said[0]
    # Again: nothing left to do.
    said.clear()
    await migrate(redis, report=said.append)
    assert said == [f"layout {LAYOUT_VERSION}: up to date"]


async def write_layout_2(redis: Redis) -> tuple[str, str]:
    """What a bridge of layout 2 left: a watch and a subscription, neither naming clubs nor keys."""
    now = time.time()
    spec = WatchSpec(
        id="wch_000000000000000000000002",
        loyalty_club_slug="infinity-mall",
        import_id="imp-2",
        created_at=now,
        expires_at=now + 3600,
    )
    # A layout-2 spec is the same array without its last field (the creator's key).
    legacy_spec = msgspec.msgpack.encode(msgspec.msgpack.decode(encode_spec(spec))[:-1])
    await resolved(
        redis.hset(
            keys.watch(spec.id),
            mapping={
                keys.W_DOC: legacy_spec,
                keys.W_STATE: "active",
                keys.W_CREATED: 1,
                keys.W_UPDATED: 1,
            },
        )
    )
    sid = "sub_000000000000000000000002"
    await resolved(
        redis.hset(
            keys.subscription(sid),
            mapping={keys.S_DOC: b'{"url":"https://hooks.example.com/a","event_types":null,'
                     b'"loyalty_club_slug":null,"import_id":null}', keys.S_ENABLED: "1"},
        )
    )  # fmt: skip
    await redis.zadd(keys.SUBSCRIPTIONS, {sid: 1})
    await redis.set(keys.LAYOUT, 2)
    return spec.id, sid


async def test_layout_2_data_reads_as_every_clubs_and_an_admins_after_the_upgrade(redis: Redis) -> None:
    watch_id, sid = await write_layout_2(redis)
    said: list[str] = []
    await migrate(redis, report=said.append)
    assert said[0].startswith("layout 2 -> 3:") and "(0 keys," in said[0]
    assert await stored_version(redis) == LAYOUT_VERSION
    record = await RedisStore(redis, retention_s=60).get_watch(watch_id)
    assert record is not None and record.spec.created_by is None
    sub = await SubscriptionStore(redis, box=None, retention_s=60).get(sid)
    assert sub is not None and sub.doc.clubs is None and sub.doc.created_by is None
    admin = Principal(key_id="admin_1", role="admin")
    club_key = Principal(key_id="key_1", role="editor", clubs=frozenset({"infinity-mall"}))
    assert admin.sees_scope(sub.doc.clubs) and not club_key.sees_scope(sub.doc.clubs)


async def test_processes_migrating_at_once_run_each_step_once(redis: Redis) -> None:
    await write_layout_1(redis)
    reports: list[list[str]] = [[], [], []]
    await asyncio.gather(*(migrate(redis, report=r.append) for r in reports))
    steps = [line for r in reports for line in r if "->" in line]
    assert len(steps) == LAYOUT_VERSION - UNVERSIONED
    assert sum(1 for r in reports if any("->" in line for line in r)) == 1
    assert await redis.get(keys.MIGRATION_LOCK) is None


async def test_layout_3_data_gets_slack_channel_lists_and_mutes_without_a_rewrite(redis: Redis) -> None:
    """Layout 4 adds the clubs' Slack channel lists and the watches' progress mutes: new keys
    whose absence keeps layout 3's meaning (no club is open to Slack, nothing is muted)."""
    await redis.set(keys.LAYOUT, 3)
    await resolved(redis.hset("bridge:watch:wch_1", mapping={"doc": b"x", "state": "active"}))
    await redis.set(keys.attachment("evt_a", "slack"), b"{}", px=60_000)
    said: list[str] = []
    await migrate(redis, report=said.append)
    assert said[0].startswith("layout 3 -> 4:") and "(0 keys," in said[0]
    assert await stored_version(redis) == LAYOUT_VERSION
    assert (await resolved(redis.hgetall("bridge:watch:wch_1")))[b"state"] == b"active"
    assert await redis.get(keys.attachment("evt_a", "slack")) == b"{}"
    assert await redis.keys(keys.SLACK_CHANNELS_PREFIX + "*") == []
    assert await redis.keys(keys.SLACK_MUTE_PREFIX + "*") == []


async def test_newer_data_is_refused_and_left_alone(redis: Redis) -> None:
    await redis.set(keys.LAYOUT, LAYOUT_VERSION + 1)
    with pytest.raises(LayoutError, match="newer than this bridge"):
        await migrate(redis)
    with pytest.raises(LayoutError, match="newer than this bridge"):
        await ensure_layout(redis, migrate_on_start=True, report=print)
    assert await redis.get(keys.LAYOUT) == str(LAYOUT_VERSION + 1).encode()


async def test_without_migrate_on_start_old_data_stops_the_process(redis: Redis) -> None:
    await write_layout_1(redis)
    with pytest.raises(LayoutError, match="run `bridge migrate`"):
        await ensure_layout(redis, migrate_on_start=False, report=print)
    assert await redis.exists(LEGACY_SLACK_ERRORS + "evt_a")
    await ensure_layout(redis, migrate_on_start=True, report=print)
    assert await stored_version(redis) == LAYOUT_VERSION


def _bridge(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_bridge_migrate_checks_and_upgrades(redis: Redis, redis_url: str) -> None:
    await write_layout_1(redis)
    checked = await asyncio.to_thread(_bridge, redis_url, "migrate", "--check")
    assert (checked.returncode, checked.stdout.strip()) == (
        1,
        f"redis: layout 1; this bridge: layout {LAYOUT_VERSION}",
    )
    done = await asyncio.to_thread(_bridge, redis_url, "migrate")
    assert done.returncode == 0 and done.stdout.startswith("layout 1 -> 2:"), done.stderr
    again = await asyncio.to_thread(_bridge, redis_url, "migrate", "--check")
    assert again.returncode == 0
    await redis.set(keys.LAYOUT, LAYOUT_VERSION + 1)
    refused = await asyncio.to_thread(_bridge, redis_url, "migrate")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "newer than this bridge" in refused.stderr
