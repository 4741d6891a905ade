"""The Redis store against a real redis-server: claims, leases, compare-and-set commits."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from bridge.core.diff import diff
from bridge.core.model import BulkSnapshot, WatchSnapshot
from bridge.core.schedule import PollState
from bridge.store import keys, scripts
from bridge.store.redis_store import (
    ClaimBudget,
    ClaimedTracker,
    CommitPlan,
    LimitReached,
    NewEvent,
    RedisStore,
    encode_poll_state,
    encode_snapshot,
    resolved,
)
from tests.builders import T0, bulk, seen, watch

MIN_INTERVAL_S = 5.0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def store_for(redis: Redis, lease_s: float = 60.0) -> RedisStore:
    return RedisStore(redis, retention_s=3600, lease_s=lease_s)


def plan_from(
    claimed: ClaimedTracker, now: float, bulk_status: str = "working", due_in: float = 5.0
) -> CommitPlan:
    snapshots: dict[str, WatchSnapshot] = {}
    events: list[NewEvent] = []
    ended: dict[str, WatchSnapshot] = {}
    for wid, spec in claimed.watches.items():
        result = diff(spec, claimed.snapshots.get(wid), seen(bulk(11, bulk_status)), now)  # type: ignore[arg-type]
        snapshots[wid] = result.snapshot
        events += [NewEvent(watch_id=wid, event=e, destinations=("log",)) for e in result.events]
        if result.snapshot.state != "active":
            ended[wid] = result.snapshot
    return CommitPlan(
        tid=claimed.tid,
        version=claimed.version,
        now=now,
        due=now + due_in,
        poll_state=PollState(last_polled=now),
        snapshots=snapshots,
        events=events,
        ended=ended,
    )


async def test_a_new_watch_is_due_at_once_and_an_identical_one_is_the_same_watch(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,), created_at=T0)
    assert await store.create_watch(spec, "fp-1", MIN_INTERVAL_S) == (True, spec.id)
    other = msgspec.structs.replace(spec, id="wch_000000000000000000000002")
    assert await store.create_watch(other, "fp-1", MIN_INTERVAL_S) == (False, spec.id)
    assert await redis.zscore(keys.SCHEDULE, spec.tracker_id) == T0 * 1000
    claim = await store.claim(T0, 10)
    assert [t.tid for t in claim.trackers] == [spec.tracker_id]
    assert claim.trackers[0].watches == {spec.id: spec}


async def test_a_claimed_import_is_leased_until_committed_or_the_lease_runs_out(redis: Redis) -> None:
    store = store_for(redis, lease_s=30)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    assert len((await store.claim(T0, 10)).trackers) == 1
    assert (await store.claim(T0 + 29, 10)).trackers == []
    again = await store.claim(T0 + 31, 10)  # the first worker died
    assert [t.tid for t in again.trackers] == [spec.tracker_id]


async def test_a_claim_takes_the_first_token_of_the_imports_it_starts_from_the_clubs_budget(
    redis: Redis,
) -> None:
    store = store_for(redis)
    specs = [watch((11,), id=f"wch_00000000000000000000000{n}", import_id=f"imp-{n}") for n in range(4)]
    for spec in specs:
        await store.create_watch(spec, spec.import_id, MIN_INTERVAL_S)
    # A bucket of 2 (refilled at 1 a second): the first two imports get a token, the third none;
    # the fourth is claimed without a take (it waits in line and takes its own when it starts).
    claim = await store.claim(T0, 10, ClaimBudget(rate=1.0, burst=2, takes=3))
    tokens = [t.first_token for t in claim.trackers]
    assert [t[0] if t else None for t in tokens] == [1, 1, 0, None]
    assert tokens[2] is not None and 0.9 <= tokens[2][1] <= 1.0  # the next token, a second away
    # The same bucket club_budget.lua keeps, in the same fields.
    left = await resolved(redis.hget(keys.club_budget(specs[0].loyalty_club_slug), keys.B_TOKENS))
    assert left is not None and float(left) < 1
    answers = await scripts.register(redis, "club_budget")(
        keys=[keys.club_budget(specs[0].loyalty_club_slug)], args=["1.0", 2, 1]
    )
    assert int(answers[0][0]) == 0
    assert await redis.pttl(keys.club_budget(specs[0].loyalty_club_slug)) > 0


async def test_commit_stores_snapshot_events_timeline_and_outbox_together(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    claimed = (await store.claim(T0, 10)).trackers[0]
    first = plan_from(claimed, T0, "waiting")
    [result] = await store.commit_many([first])
    assert result.committed and result.inserted == ()
    claimed = (await store.claim(T0 + 5, 10)).trackers[0]
    assert claimed.snapshots[spec.id].bulks[11].status == "waiting"
    plan = plan_from(claimed, T0 + 5, "working")
    [result] = await store.commit_many([plan])
    event = plan.events[0].event
    assert result.inserted == (event.id,)
    assert await store.timeline(spec.id, 0, 10) == [await store.get_event(event.id)]
    assert await store.outbox_older_than(T0 + 6, 10) == [(event.id, "log")]
    assert await redis.zscore(keys.SCHEDULE, spec.tracker_id) == (T0 + 10) * 1000
    assert await redis.zscore(keys.INFLIGHT, spec.tracker_id) is None


async def test_two_workers_committing_the_same_poll_announce_the_change_once(redis: Redis) -> None:
    store = store_for(redis, lease_s=1)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    claimed = (await store.claim(T0, 10)).trackers[0]
    await store.commit_many([plan_from(claimed, T0, "waiting")])
    mine = (await store.claim(T0 + 5, 10)).trackers[0]
    theirs = (await store.claim(T0 + 7, 10)).trackers[0]  # my lease ran out while I polled
    results = await asyncio.gather(
        store.commit_many([plan_from(mine, T0 + 7, "working")]),
        store.commit_many([plan_from(theirs, T0 + 7, "working")]),
    )
    committed = [r for [r] in results if r.committed]
    assert len(committed) == 1 and len(committed[0].inserted) == 1
    assert await resolved(redis.llen(keys.timeline(spec.id))) == 1
    assert await redis.zcard(keys.OUTBOX) == 1


async def test_an_event_id_already_stored_is_not_news_again(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    claimed = (await store.claim(T0, 10)).trackers[0]
    await store.commit_many([plan_from(claimed, T0, "waiting")])
    claimed = (await store.claim(T0 + 5, 10)).trackers[0]
    plan = plan_from(claimed, T0 + 5, "working")
    await store.commit_many([plan])
    # A worker that read the older snapshot and lost its lease, replaying with a fresh version:
    stale = msgspec.structs.replace(
        plan, version=_text(await resolved(redis.hget(keys.tracker(spec.tracker_id), "v")))
    )
    [result] = await store.commit_many([stale])
    assert result.committed and result.inserted == ()
    assert await resolved(redis.llen(keys.timeline(spec.id))) == 1


async def test_a_completed_watch_ends_and_its_import_is_no_longer_scheduled(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    claimed = (await store.claim(T0, 10)).trackers[0]
    await store.commit_many([plan_from(claimed, T0, "finished")])
    record = await store.get_watch(spec.id)
    assert record is not None and record.state == "completed"
    assert record.snapshot is not None and record.snapshot.bulks[11].status == "finished"
    assert await redis.zscore(keys.SCHEDULE, spec.tracker_id) is None
    assert not await redis.exists(keys.tracker(spec.tracker_id))
    assert await redis.ttl(keys.watch(spec.id)) > 0
    # The same request again is a new watch: the completed one is no longer "active".
    again = msgspec.structs.replace(spec, id="wch_000000000000000000000009")
    assert await store.create_watch(again, "fp", MIN_INTERVAL_S) == (True, again.id)


async def test_stopping_a_watch_mid_poll_drops_its_news_and_ends_polling(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    claimed = (await store.claim(T0, 10)).trackers[0]
    await store.commit_many([plan_from(claimed, T0, "waiting")])
    claimed = (await store.claim(T0 + 5, 10)).trackers[0]
    assert await store.stop_watch(spec, T0 + 6)
    [result] = await store.commit_many([plan_from(claimed, T0 + 7, "working")])
    assert result.committed and result.inserted == ()
    assert await redis.zscore(keys.SCHEDULE, spec.tracker_id) is None
    record = await store.get_watch(spec.id)
    assert record is not None and record.state == "stopped"
    assert record.snapshot is not None and record.snapshot.bulks[11].status == "waiting"
    assert not await store.stop_watch(spec, T0 + 8)


async def test_two_watches_on_one_import_share_one_schedule_entry(redis: Redis) -> None:
    store = store_for(redis)
    first, second = watch((11,)), watch((11,), id="wch_000000000000000000000002", notify_progress=True)
    await store.create_watch(first, "a", MIN_INTERVAL_S)
    await store.create_watch(second, "b", MIN_INTERVAL_S)
    assert await redis.zcard(keys.SCHEDULE) == 1
    claimed = (await store.claim(T0, 10)).trackers
    assert len(claimed) == 1 and set(claimed[0].watches) == {first.id, second.id}


async def test_a_paused_club_is_not_claimed_before_the_pause_ends(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    await redis.set(keys.club_pause(spec.loyalty_club_slug), int((T0 + 30) * 1000))
    assert (await store.claim(T0, 10)).trackers == []
    assert await redis.zscore(keys.SCHEDULE, spec.tracker_id) == (T0 + 30) * 1000
    assert len((await store.claim(T0 + 30, 10)).trackers) == 1


async def test_released_imports_are_due_again_at_once(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    claimed = (await store.claim(T0, 10)).trackers
    assert await store.release([t.tid for t in claimed], T0 + 1) == 1
    assert len((await store.claim(T0 + 1, 10)).trackers) == 1


async def test_handing_imports_back_wakes_the_other_poll_loops(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    claimed = [t.tid for t in (await store.claim(T0, 10)).trackers]
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.SCHEDULE_WAKE_CHANNEL)

    async def wake_ups(within_s: float) -> list[Any]:
        # get_message answers None for the subscription's own confirmation too: read until the end.
        loop, seen = asyncio.get_running_loop(), []
        ends = loop.time() + within_s
        while (left := ends - loop.time()) > 0:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None:
                seen.append(message["channel"])
        return seen

    try:
        assert await store.release(claimed, T0) == 1
        assert await wake_ups(0.5) == [keys.SCHEDULE_WAKE_CHANNEL.encode()]
        # Nothing left to hand back: nobody is woken.
        assert await store.release(claimed, T0) == 0
        assert await wake_ups(0.3) == []
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_lost_schedule_entries_are_recreated_by_the_sweeper(redis: Redis) -> None:
    store = store_for(redis)
    spec = watch((11,))
    await store.create_watch(spec, "fp", MIN_INTERVAL_S)
    await redis.delete(keys.SCHEDULE)
    assert await store.reschedule_orphans(T0) == 1
    assert await store.reschedule_orphans(T0) == 0
    assert len((await store.claim(T0, 10)).trackers) == 1


async def _batch_of_two(redis: Redis, store: RedisStore) -> tuple[list[CommitPlan], list[str]]:
    """A poll of each of two imports, claimed together and ready to commit."""
    specs = [watch((11,), import_id=f"imp-{n}", id=f"wch_00000000000000000000000{n}") for n in (1, 2)]
    for spec in specs:
        await store.create_watch(spec, spec.id, MIN_INTERVAL_S)
    claimed = sorted((await store.claim(T0, 10)).trackers, key=lambda t: t.tid)
    return [plan_from(c, T0, "working") for c in claimed], [s.id for s in specs]


async def test_a_batch_of_commits_is_one_round_trip_without_asking_whether_the_script_is_loaded(
    redis: Redis,
) -> None:
    store = store_for(redis)
    plans, _ = await _batch_of_two(redis, store)
    await redis.script_load(scripts.source("commit"))
    await redis.config_resetstat()
    results = await store.commit_many(plans)
    assert [r.committed for r in results] == [True, True]
    calls = {name: stats["calls"] for name, stats in (await redis.info("commandstats")).items()}
    assert "cmdstat_script|exists" not in calls and calls["cmdstat_evalsha"] == 2


async def test_a_batch_of_commits_after_redis_lost_the_script_commits_each_poll_once(redis: Redis) -> None:
    store = store_for(redis)
    plans, watch_ids = await _batch_of_two(redis, store)
    await redis.script_flush()  # a restart or a failover: the script is gone
    results = await store.commit_many(plans)
    assert [r.committed for r in results] == [True, True]
    assert all(len(r.inserted) == 1 for r in results)
    for wid in watch_ids:
        assert await resolved(redis.llen(keys.timeline(wid))) == 1
    again = await store.commit_many(plans)  # the same polls once more: the versions moved on
    assert [r.committed for r in again] == [False, False]


# ---------------------------------------------------------------------------- watch indexes


async def test_merged_index_pages_follow_one_order_from_any_position(redis: Redis) -> None:
    """``index_page.lua`` reads several indexes as one: created descending, then id descending
    (ZREVRANGE's order within one index), ties across indexes included, from any position."""
    rng = random.Random(5)
    indexes = [
        keys.watch_index(club, state) for club in ("a-club", "b-club") for state in ("active", "stopped")
    ]
    indexes.append(keys.watch_index("c-club", "error"))  # never written: empty
    entries: list[tuple[float, str, int]] = []
    for number in range(300):
        origin = rng.randrange(4)
        wid, score = f"wch_{number:024x}", float(1_700_000_000_000 + rng.randrange(40))  # many ties
        await redis.zadd(indexes[origin], {wid: score})
        entries.append((score, wid, origin + 1))
    expected = sorted(entries, reverse=True)
    page = scripts.register(redis, "index_page")
    for start, count in [(0, 10), (0, 300), (1, 7), (37, 50), (150, 100), (299, 5), (300, 5), (0, 0)]:
        ids, origins = await page(keys=indexes, args=[start, count])
        window = expected[start : start + count]
        assert [_text(i) for i in ids] == [wid for _, wid, _ in window], (start, count)
        assert list(origins) == [origin for _, _, origin in window]
    alone = [keys.watch_index("a-club", "active")]
    one = sorted((e for e in entries if e[2] == 1), reverse=True)
    ids, origins = await page(keys=alone, args=[3, 4])
    assert [_text(i) for i in ids] == [wid for _, wid, _ in one[3:7]] and set(origins) == {1}


async def test_lists_by_club_by_state_and_of_every_club_read_the_indexes_they_need(redis: Redis) -> None:
    store = store_for(redis)
    specs = [
        watch((11,), created_at=T0 + n, id=f"wch_{n:024x}", loyalty_club_slug=club, import_id=f"imp-{n}")
        for n, club in enumerate(["one-club", "two-club", "one-club", "two-club", "one-club"])
    ]
    for spec in specs:
        assert (await store.create_watch(spec, f"fp-{spec.id}", MIN_INTERVAL_S))[0]
    assert await store.stop_watch(specs[2], T0 + 10)

    async def listed(**filters: object) -> list[str]:
        found: list[str] = []
        offset: int | None = 0
        while offset is not None:
            records, offset = await store.list_watches(
                slug=filters.get("slug"),  # type: ignore[arg-type]
                state=filters.get("state"),  # type: ignore[arg-type]
                offset=offset,
                limit=2,
                clubs=filters.get("clubs"),  # type: ignore[arg-type]
            )
            found += [r.spec.id for r in records]
        return found

    ids = [spec.id for spec in specs]
    assert await listed() == ids[::-1]
    assert await listed(slug="one-club") == [ids[4], ids[2], ids[0]]
    assert await listed(state="active") == [ids[4], ids[3], ids[1], ids[0]]
    assert await listed(state="stopped") == [ids[2]]
    assert await listed(slug="two-club", state="stopped") == []
    assert await listed(clubs={"two-club"}) == [ids[3], ids[1]]
    assert await listed(clubs=set()) == []
    # A watch whose retention ran out is skipped and leaves its index.
    await redis.delete(keys.watch(ids[2]))
    assert await listed(slug="one-club") == [ids[4], ids[0]]
    assert await redis.zcard(keys.watch_index("one-club", "stopped")) == 0
    assert await store.clubs_with_watches() == ["one-club", "two-club"]


async def test_a_club_at_its_cap_gets_no_more_active_watches_until_one_ends(redis: Redis) -> None:
    store = store_for(redis)
    first, second = (watch((11,), created_at=T0, id=f"wch_{n:024x}", import_id=f"imp-{n}") for n in (1, 2))
    assert await store.create_watch(first, "fp-1", MIN_INTERVAL_S, max_per_club=1) == (True, first.id)
    with pytest.raises(LimitReached):
        await store.create_watch(second, "fp-2", MIN_INTERVAL_S, max_per_club=1)
    assert not await redis.exists(keys.watch(second.id))
    assert await store.stop_watch(first, T0 + 1)
    assert await store.create_watch(second, "fp-2", MIN_INTERVAL_S, max_per_club=1) == (True, second.id)
    # The stopped watch's request may be made again: a new watch, the old one's fingerprint left
    # with it.
    again = msgspec.structs.replace(first, id=f"wch_{3:024x}")
    assert await store.create_watch(again, "fp-1", MIN_INTERVAL_S) == (True, again.id)


async def test_snapshots_and_poll_states_are_kept_without_their_trailing_defaults(redis: Redis) -> None:
    """One of each is kept per watch and per import: the defaults at their end are left out, and
    they read back the same; the poll state's last poll is the tracker's ``lp``."""
    quiet = WatchSnapshot(bulks={11: BulkSnapshot(status="waiting", seq=1, last_seen=T0)})
    assert msgspec.msgpack.decode(encode_snapshot(quiet)) == [msgspec.to_builtins(quiet.bulks)]
    failing = msgspec.structs.replace(quiet, failures=3, failing=True)
    for snapshot in (quiet, failing, WatchSnapshot(), msgspec.structs.replace(quiet, state="stopped")):
        assert msgspec.msgpack.decode(encode_snapshot(snapshot), type=WatchSnapshot) == snapshot
    assert msgspec.msgpack.decode(encode_poll_state(PollState(last_polled=T0))) == []
    assert msgspec.msgpack.decode(encode_poll_state(PollState(failures=2, last_polled=T0))) == [2]
    store = store_for(redis)
    spec = watch((11,), created_at=T0)
    await store.create_watch(spec, "fp-1", MIN_INTERVAL_S)
    claimed = (await store.claim(T0, 10)).trackers[0]
    plan = plan_from(claimed, T0 + 1)
    plan.poll_state = PollState(quiet=4, last_polled=T0 + 1)
    assert (await store.commit_many([plan]))[0].committed
    again = (await store.claim(T0 + 3600, 10)).trackers[0]
    assert again.poll_state == PollState(quiet=4, last_polled=T0 + 1)
    assert again.snapshots[spec.id] == plan.snapshots[spec.id]
