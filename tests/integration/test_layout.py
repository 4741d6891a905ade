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
from mpc_simulator import SimulatorControl
from tests.integration.conftest import Pipeline
from tests.integration.test_api import AUTH
from tests.integration.test_subscriptions_api import make_client

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
    assert (await resolved(redis.hgetall("bridge:watch:wch_1")))[keys.W_STATE.encode()] == b"active"  # kept
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
            f"bridge:watch:{spec.id}",
            mapping={"doc": legacy_spec, "state": "active", "created_at": 1, "updated_at": 1},
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
    assert (await resolved(redis.hgetall("bridge:watch:wch_1")))[keys.W_STATE.encode()] == b"active"
    assert await redis.get(keys.attachment("evt_a", "slack")) == b"{}"
    assert await redis.keys(keys.SLACK_CHANNELS_PREFIX + "*") == []
    assert await redis.keys(keys.SLACK_MUTE_PREFIX + "*") == []


L4_CLUB = "infinity-mall"
L4_OTHER_CLUB = "other-mall"
L4_IMPORT = "imp-4"


def l4_spec(letter: str, slug: str, import_id: str, created_at: float) -> WatchSpec:
    return WatchSpec(
        id="wch_" + "0" * 23 + letter,
        loyalty_club_slug=slug,
        import_id=import_id,
        created_at=created_at,
        expires_at=created_at + 3600,
        bulk_ids=(1,),
    )


def l4_snapshot(state: str, seen: float) -> bytes:
    """A layout-4 snapshot: a map, with bulk 1 waiting, announced once (its array as stored)."""
    bulk = ["waiting", 0, 0, 0, 0, 0, 0, "", 1, seen, seen, False, 0.0, False]
    return msgspec.msgpack.encode(
        {"bulks": {1: bulk}, "seq": 0, "failures": 0, "failing": False, "state": state}
    )


async def write_layout_4(redis: Redis) -> dict[str, WatchSpec]:
    """What a bridge of layout 4 left, spelled as it wrote it: every watch in three indexes (all,
    its club's, its state's), fingerprints of active watches in one map, the watch hash's long
    field names; "1" as a watch's field on its tracker. An active watch on an import polled once,
    a stopped one (expiring), an active one of another club, and index entries of a watch that
    expired."""
    now = time.time()
    watches = {
        "active": l4_spec("a", L4_CLUB, L4_IMPORT, now - 60),
        "stopped": l4_spec("b", L4_CLUB, "imp-5", now - 30),
        "other": l4_spec("d", L4_OTHER_CLUB, "imp-6", now - 10),
    }
    ms = {name: int(spec.created_at * 1000) for name, spec in watches.items()}
    ended_ms = int(now * 1000) - 5000
    active, stopped, other = watches["active"], watches["stopped"], watches["other"]
    for name in ("active", "other"):
        spec = watches[name]
        fields = {"doc": msgspec.msgpack.encode(spec), "state": "active", "fp": f"fp-{spec.id}",
                  "created_at": ms[name], "updated_at": ms[name]}  # fmt: skip
        await resolved(redis.hset(f"bridge:watch:{spec.id}", mapping=fields))
        tid = f"{spec.loyalty_club_slug}/{spec.import_id}"
        tracker = {f"w:{spec.id}": "1", "n": 1, "v": 2, "lp": ms[name] + 1000,
                   "p": msgspec.msgpack.encode([0, 1, now - 59]),
                   f"s:{spec.id}": l4_snapshot("active", now - 59)}  # fmt: skip
        await resolved(redis.hset(f"bridge:tracker:{tid}", mapping=tracker))
        await redis.zadd("bridge:schedule", {tid: int(now * 1000)})
    fields = {"doc": msgspec.msgpack.encode(stopped), "state": "stopped", "fp": f"fp-{stopped.id}",
              "created_at": ms["stopped"], "updated_at": ended_ms, "ended_at": ended_ms,
              "snapshot": l4_snapshot("stopped", now - 29)}  # fmt: skip
    await resolved(redis.hset(f"bridge:watch:{stopped.id}", mapping=fields))
    await redis.pexpire(f"bridge:watch:{stopped.id}", 3_600_000)
    gone = "wch_" + "0" * 23 + "c"  # ended, and its retention ran out: only index entries are left
    everything = {active.id: ms["active"], stopped.id: ms["stopped"], other.id: ms["other"], gone: 1}
    await redis.zadd("bridge:watches", everything)
    await redis.zadd(
        f"bridge:watches:club:{L4_CLUB}", {w: everything[w] for w in (active.id, stopped.id, gone)}
    )
    await redis.zadd(f"bridge:watches:club:{L4_OTHER_CLUB}", {other.id: ms["other"]})
    await redis.zadd("bridge:watches:state:active", {active.id: ms["active"], other.id: ms["other"]})
    await redis.zadd("bridge:watches:state:stopped", {stopped.id: ms["stopped"]})
    await redis.zadd("bridge:watches:state:completed", {gone: 1})
    fingerprints = {f"fp-{active.id}": active.id, f"fp-{other.id}": other.id}
    await resolved(redis.hset("bridge:watch-fingerprints", mapping=fingerprints))
    await redis.set(keys.LAYOUT, 4)
    return watches


async def test_layout_4_watches_get_one_index_entry_and_short_fields_and_still_list_and_poll(
    redis: Redis, redis_url: str, pipeline: Pipeline, control: SimulatorControl
) -> None:
    watches = await write_layout_4(redis)
    active, stopped, other = watches["active"], watches["stopped"], watches["other"]
    said: list[str] = []
    await migrate(redis, report=said.append)
    assert said[0].startswith("layout 4 -> 5:") and "(3 keys," in said[0], said
    assert await stored_version(redis) == LAYOUT_VERSION
    # The layout-4 indexes and fingerprint map are gone; one entry per watch is left, its creation
    # time kept as its score; the expired watch's entries went with the old indexes.
    assert await redis.keys("bridge:watches*") == [] and not await redis.exists("bridge:watch-fingerprints")
    index = {
        key.decode(): await redis.zrange(key, 0, -1, withscores=True)
        for key in await redis.keys(keys.WATCH_INDEX_PREFIX + "*")
    }
    ms = {spec.id: float(int(spec.created_at * 1000)) for spec in watches.values()}
    assert index == {
        keys.watch_index(L4_CLUB, "active"): [(active.id.encode(), ms[active.id])],
        keys.watch_index(L4_CLUB, "stopped"): [(stopped.id.encode(), ms[stopped.id])],
        keys.watch_index(L4_OTHER_CLUB, "active"): [(other.id.encode(), ms[other.id])],
    }
    store = RedisStore(redis, retention_s=3600)
    assert await store.clubs_with_watches() == [L4_CLUB, L4_OTHER_CLUB]
    # The watch hashes: short fields, the TTL kept, the same record read back.
    assert set(await resolved(redis.hkeys(keys.watch(active.id)))) == {b"d", b"s"}
    assert set(await resolved(redis.hkeys(keys.watch(stopped.id)))) == {b"d", b"s", b"e", b"f"}
    assert 0 < await redis.pttl(keys.watch(stopped.id)) <= 3_600_000
    record = await store.get_watch(active.id)
    assert record is not None and record.state == "active" and record.ended_at is None
    assert record.created_at == record.updated_at == ms[active.id] / 1000
    assert record.snapshot is not None and record.snapshot.bulks[1].status == "waiting"
    ended = await store.get_watch(stopped.id)
    assert ended is not None and ended.state == "stopped" and ended.snapshot is not None
    assert ended.ended_at == ended.updated_at and ended.ended_at is not None
    assert ended.created_at == ms[stopped.id] / 1000
    # The fingerprint is on the tracker now: an identical request still finds the active watch.
    fingerprint: object = await resolved(
        redis.hget(keys.tracker(active.tracker_id), keys.F_WATCH_PREFIX + active.id)
    )
    assert fingerprint == f"fp-{active.id}".encode()
    assert await store.create_watch(active, f"fp-{active.id}", 5.0) == (False, active.id)
    # Snapshots are arrays now, on the trackers and in ended watches.
    on_tracker: object = await resolved(
        redis.hget(keys.tracker(active.tracker_id), keys.snapshot_field(active.id))
    )
    final: object = await resolved(redis.hget(keys.watch(stopped.id), keys.W_SNAPSHOT))
    assert isinstance(on_tracker, bytes) and isinstance(msgspec.msgpack.decode(on_tracker), list)
    assert isinstance(final, bytes) and isinstance(msgspec.msgpack.decode(final), list)
    # The API lists them, newest first, by club and state.
    with make_client(redis_url) as client:
        listed = client.get("/v1/watches", headers=AUTH).json()
        assert [w["id"] for w in listed["items"]] == [other.id, stopped.id, active.id]
        by_club = client.get("/v1/watches", params={"loyalty_club_slug": L4_CLUB}, headers=AUTH).json()
        assert [w["id"] for w in by_club["items"]] == [stopped.id, active.id]
        running = client.get("/v1/watches", params={"state": "active", "limit": 1}, headers=AUTH).json()
        assert [w["id"] for w in running["items"]] == [other.id] and running["next_cursor"] == "1"
        shown = client.get(f"/v1/watches/{stopped.id}", headers=AUTH).json()
        assert shown["state"] == "stopped" and shown["ended_at"] == shown["updated_at"]
    # The poller works on it: the bulk finishes, the watch completes and moves to that index.
    await control.put_import(
        L4_CLUB, L4_IMPORT, [{"id": 1, "status": "finished", "members_created_number": 2}]
    )
    await pipeline.poll_due()
    assert "import.completed" in await pipeline.types(active.id)
    done = await store.get_watch(active.id)
    assert done is not None and done.state == "completed"
    assert await redis.zscore(keys.watch_index(L4_CLUB, "completed"), active.id) == ms[active.id]
    assert await redis.zcard(keys.watch_index(L4_CLUB, "active")) == 0
    # Again: nothing left to do.
    said.clear()
    await migrate(redis, report=said.append)
    assert said == [f"layout {LAYOUT_VERSION}: up to date"]


async def test_the_upgrade_to_layout_5_is_safe_to_run_again(redis: Redis) -> None:
    """A step may run again after a crash: watches already upgraded are left as they are."""
    watches = await write_layout_4(redis)
    await migrate(redis)
    before = {spec.id: await resolved(redis.hgetall(keys.watch(spec.id))) for spec in watches.values()}
    await redis.set(keys.LAYOUT, 4)
    said: list[str] = []
    await migrate(redis, report=said.append)
    assert said[0].startswith("layout 4 -> 5:") and "(0 keys," in said[0]
    assert {
        spec.id: await resolved(redis.hgetall(keys.watch(spec.id))) for spec in watches.values()
    } == before
    assert await redis.zcard(keys.watch_index(L4_CLUB, "active")) == 1


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


async def test_layout_5_delivery_jobs_are_removed_and_their_deliveries_stay_in_the_outbox(
    redis: Redis,
) -> None:
    """Layout 5 kept an arq job per pending delivery beside its outbox entry; layout 6 delivers from
    the outbox alone. Literal layout-5 data: a queued job, a running one, a job's retry count, a
    Slack follow-up job (which stays), and the outbox they duplicated."""
    now_ms = int(time.time() * 1000)
    pending, running = "dlv:evt_1:sub:sub_1", "dlv:evt_2:log"
    await redis.zadd("bridge:queue", {pending: now_ms - 10, running: now_ms - 20, "sfu:wch_1:stop": now_ms})
    for key in (
        f"arq:job:{pending}",
        f"arq:job:{running}",
        f"arq:in-progress:{running}",
        f"arq:retry:{pending}",
    ):
        await redis.set(key, b"x", px=60_000)
    await redis.set("arq:job:sfu:wch_1:stop", b"x", px=60_000)
    await redis.zadd("bridge:outbox", {"evt_1|sub:sub_1": now_ms - 10, "evt_2|log": now_ms - 20})
    await redis.set(keys.LAYOUT, 5)
    said: list[str] = []
    await migrate(redis, report=said.append)
    assert await stored_version(redis) == LAYOUT_VERSION
    assert said[0].startswith("layout 5 -> 6:") and "(6 keys," in said[0], said
    assert await redis.zrange("bridge:queue", 0, -1) == [b"sfu:wch_1:stop"]
    assert await redis.keys("arq:*") == [b"arq:job:sfu:wch_1:stop"]
    assert await redis.zcard(keys.OUTBOX) == 2  # every pending delivery, due at once
    claim = await RedisStore(redis, retention_s=3600).claim_deliveries(time.time(), 10, 30.0)
    assert {(c.event_id, c.destination) for c in claim.claimed} == {("evt_1", "sub:sub_1"), ("evt_2", "log")}
    await redis.set(keys.LAYOUT, 5)
    said.clear()
    await migrate(redis, report=said.append)  # safe to run again
    assert said[0].startswith("layout 5 -> 6:") and "(0 keys," in said[0], said
