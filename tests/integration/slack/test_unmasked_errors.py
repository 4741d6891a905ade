"""The unmasked errors side record (``BRIDGE_SLACK_SHOW_PII``): written by the commit, atomically
with the event it belongs to, only for new events going to Slack; the event stays masked."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from redis.asyncio import Redis

from bridge.core import member_errors
from bridge.core.diff import diff
from bridge.core.schedule import PollState
from bridge.store import keys
from bridge.store.redis_store import ATTACHMENT_TTL_S, CommitPlan, NewEvent, RedisStore, resolved
from mpc_simulator import SimulatorControl
from tests.builders import MEMBERS_ERRORS, T0, bulk, seen, watch
from tests.integration.conftest import SLUG
from tests.integration.slack.conftest import IMPORT, SlackRig, watch_spec

SIDE = member_errors.encode_summary(
    member_errors.ErrorSummary(groups=member_errors.summarize(MEMBERS_ERRORS, mask=False)[0])
)


async def commit_failed_bulk(
    store: RedisStore, *, version: str | None = None
) -> tuple[list[bool], str, CommitPlan]:
    spec = watch((11,))
    claimed = (await store.claim(T0 + 5, 10)).trackers[0]
    result = diff(
        spec, claimed.snapshots.get(spec.id), seen(bulk(11, "failed", members_errors=MEMBERS_ERRORS)), T0 + 5
    )
    event = result.events[0]
    assert event.type == "bulk.failed" and result.events[1].type == "import.completed"
    plan = CommitPlan(
        tid=claimed.tid,
        version=version or claimed.version,
        now=T0 + 5,
        due=T0 + 10,
        poll_state=PollState(last_polled=T0 + 5),
        snapshots={spec.id: result.snapshot},
        events=[
            NewEvent(watch_id=spec.id, event=event, destinations=("slack",), attachments=(("slack", SIDE),))
        ],
        ended={},  # the watch stays active here: the same change may be committed again
    )
    [committed] = await store.commit_many([plan])
    return [committed.committed, bool(committed.inserted)], event.id, plan


async def prepared(redis: Redis) -> RedisStore:
    store = RedisStore(redis, retention_s=3600)
    await store.create_watch(watch((11,)), "fp", 5.0)
    claimed = (await store.claim(T0, 10)).trackers[0]
    snapshot = diff(watch((11,)), None, seen(bulk(11, "working")), T0).snapshot
    plan = CommitPlan(
        tid=claimed.tid,
        version=claimed.version,
        now=T0,
        due=T0 + 5,
        poll_state=PollState(last_polled=T0),
        snapshots={watch().id: snapshot},
        events=[],
        ended={},
    )
    await store.commit_many([plan])
    return store


async def test_the_commit_stores_the_side_record_beside_a_new_event_with_a_short_ttl(redis: Redis) -> None:
    store = await prepared(redis)
    outcome, eid, _ = await commit_failed_bulk(store)
    assert outcome == [True, True]
    assert await redis.get(keys.attachment(eid, "slack")) == SIDE
    assert 0 < await resolved(redis.pttl(keys.attachment(eid, "slack"))) <= ATTACHMENT_TTL_S * 1000
    body = await store.get_event(eid)
    assert body is not None and b"joe.bloggs@example.com" not in body and b"j***@example.com" in body


async def test_a_replayed_event_writes_no_side_record_again(redis: Redis) -> None:
    store = await prepared(redis)
    _, eid, plan = await commit_failed_bulk(store)
    await redis.delete(keys.attachment(eid, "slack"))  # posted and deleted by Slack delivery
    # A worker that read the older snapshot and lost its lease commits the same change again:
    version: object = await resolved(redis.hget(keys.tracker(watch().tracker_id), keys.F_VERSION))
    assert isinstance(version, bytes)
    [replayed] = await store.commit_many([msgspec.structs.replace(plan, version=version.decode())])
    assert replayed.committed and replayed.inserted == ()
    assert await redis.get(keys.attachment(eid, "slack")) is None


async def test_a_superseded_commit_writes_nothing(redis: Redis) -> None:
    store = await prepared(redis)
    outcome, eid, _ = await commit_failed_bulk(store, version="stale")
    assert outcome == [False, False]
    assert await redis.keys(keys.ATTACHMENT_PREFIX + "*") == []
    assert await store.get_event(eid) is None


async def test_with_show_pii_a_watch_without_slack_gets_no_side_record(
    rig_factory: Callable[..., SlackRig], control: SimulatorControl, redis: Redis
) -> None:
    rig = rig_factory(BRIDGE_SLACK_SHOW_PII="true")
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    await rig.pipeline.create(watch_spec(channel=None))
    await rig.pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_errors=MEMBERS_ERRORS)
    await rig.pipeline.poll_due()
    assert await redis.keys(keys.ATTACHMENT_PREFIX + "*") == []
    assert msgspec.json.encode(await rig.pipeline.events(watch_spec().id)).count(b"joe.bloggs") == 0
