""" "Refresh now" (``RedisStore.poll_soon``, ``lua/poll_soon.lua``) against a real Redis: an import
comes forward in the schedule, but never before the minimum interval after its last poll, never
inside the club's Retry-After pause, and never while a worker is polling it."""

from __future__ import annotations

import time
from typing import Final

from redis.asyncio import Redis

from bridge.core.model import WatchSpec
from bridge.store import keys
from bridge.store.redis_store import RedisStore, resolved

FLOOR_S: Final = 5.0
SLUG: Final = "infinity-mall"


def spec(now: float) -> WatchSpec:
    return WatchSpec(
        id="wch_" + "cd" * 12,
        loyalty_club_slug=SLUG,
        import_id="imp-refresh",
        created_at=now,
        expires_at=now + 3600,
    )


async def scheduled(redis: Redis, tid: str) -> float | None:
    score = await redis.zscore(keys.SCHEDULE, tid)
    return None if score is None else score / 1000.0


async def test_refresh_comes_forward_to_the_floor_after_the_last_poll(redis: Redis) -> None:
    store = RedisStore(redis, retention_s=3600, lease_s=30)
    now = time.time()
    watch = spec(now)
    await store.create_watch(watch, "fp", FLOOR_S)
    tid = watch.tracker_id
    # Polled a second ago, next poll in a minute (a waiting import backed off).
    await resolved(redis.hset(keys.tracker(tid), keys.F_LAST_POLL, str(int((now - 1) * 1000))))
    await redis.zadd(keys.SCHEDULE, {tid: int((now + 60) * 1000)})
    outcome, at = await store.poll_soon(watch, now, FLOOR_S)
    assert outcome == "moved"
    assert abs(at - (now - 1 + FLOOR_S)) < 0.01  # not now: 5 s after the last poll
    assert abs((await scheduled(redis, tid) or 0) - at) < 0.01
    # Asked again: nothing earlier is allowed.
    assert (await store.poll_soon(watch, now, FLOOR_S))[0] == "unchanged"


async def test_refresh_never_jumps_the_clubs_retry_after(redis: Redis) -> None:
    store = RedisStore(redis, retention_s=3600, lease_s=30)
    now = time.time()
    watch = spec(now)
    await store.create_watch(watch, "fp", FLOOR_S)
    tid = watch.tracker_id
    await redis.zadd(keys.SCHEDULE, {tid: int((now + 600) * 1000)})
    await store.pause_club(SLUG, now + 120)  # MPC answered 429 with Retry-After: 120
    outcome, at = await store.poll_soon(watch, now, FLOOR_S)
    assert outcome == "moved" and abs(at - (now + 120)) < 0.01


async def test_refresh_of_an_import_being_polled_or_already_due_changes_nothing(redis: Redis) -> None:
    store = RedisStore(redis, retention_s=3600, lease_s=30)
    now = time.time()
    watch = spec(now)
    await store.create_watch(watch, "fp", FLOOR_S)
    tid = watch.tracker_id
    due = await scheduled(redis, tid)
    assert (await store.poll_soon(watch, now, FLOOR_S))[0] == "unchanged"  # due now already
    assert await scheduled(redis, tid) == due
    claim = await store.claim(now + 1, 10)
    assert [t.tid for t in claim.trackers] == [tid]
    assert (await store.poll_soon(watch, now, FLOOR_S))[0] == "polling"
    assert await scheduled(redis, tid) is None  # still only in the lease set
    await store.stop_watch(watch, now)
    await store.release([tid], now)
    assert (await store.poll_soon(watch, now, FLOOR_S))[0] in ("idle", "unchanged")
