"""Poll → diff → store → outbox with the real simulator over HTTP and a real Redis.

Every row of the event table (docs/design.md) is driven through the whole pipeline here; the diff engine's
unit tests pin the rules, these pin that the parts connect.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from redis.asyncio import Redis

from bridge.core.model import SlackTarget, WatchSpec
from bridge.crypto import SecretBox
from bridge.store import keys
from bridge.upstream.credentials import CredentialStore
from mpc_simulator import SimulatorControl
from tests.builders import MEMBERS_ERRORS
from tests.integration.conftest import SLUG, Pipeline, eventually, outbox

IMPORT = "imp-0001"


def spec(
    bulk_ids: tuple[int, ...] | None = None, *, wid: str = "wch_00000000000000000000aaaa", **options: object
) -> WatchSpec:
    now = time.time()
    fields: dict[str, object] = {
        "id": wid,
        "loyalty_club_slug": SLUG,
        "import_id": IMPORT,
        "created_at": now,
        "expires_at": now + 3600,
        "bulk_ids": bulk_ids,
        "slack": SlackTarget(channel="C0123456789"),
    }
    fields.update(options)
    return WatchSpec(**fields)  # type: ignore[arg-type]


async def test_every_event_type_flows_from_mpc_to_the_timeline_and_outbox(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1, "members_in_payload_number": 13}, {"id": 2}, {"id": 3}])
    watch = await pipeline.create(spec(notify_progress=True))
    seen: list[str] = []

    async def step(expected: list[str]) -> None:
        await pipeline.poll_due()
        types = await pipeline.types(watch.id)
        assert types[len(seen) :] == expected
        seen[:] = types

    await step(["bulk.discovered"] * 3)
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await step(["bulk.started"])
    await control.patch_bulk(SLUG, IMPORT, 1, members_created_number=4)
    await step(["bulk.progress"])
    await control.patch_bulk(
        SLUG, IMPORT, 1, status="finished", members_created_number=10, members_updated_number=3
    )
    await control.patch_bulk(SLUG, IMPORT, 2, status="waiting_for_retry", retries=1)
    await step(["bulk.finished", "bulk.retrying"])
    await control.patch_bulk(SLUG, IMPORT, 2, status="failed", retries=5)
    await control.delete_bulk(SLUG, IMPORT, 3)
    await step(["bulk.failed", "bulk.missing", "import.completed"])
    events = await pipeline.events(watch.id)
    assert events[5].data.outcome == "clean"
    assert len(await outbox(redis)) == len(events)  # one entry per event (destination: log)
    record = await pipeline.store.get_watch(watch.id)
    assert record is not None and record.state == "completed"
    assert await pipeline.poll_due() == 0  # nothing left to poll


async def test_finished_outcomes_and_the_errors_summary_come_through(
    pipeline: Pipeline, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}, {"id": 3}])
    watch = await pipeline.create(spec((1, 2, 3)))
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_created_number=5)
    await control.patch_bulk(
        SLUG,
        IMPORT,
        2,
        status="finished",
        members_created_number=5,
        members_with_validation_errors_number=3,
        members_errors=MEMBERS_ERRORS,
    )
    await control.patch_bulk(SLUG, IMPORT, 3, status="finished", members_with_validation_errors_number=13)
    await pipeline.poll_due()
    finished = {e.data.bulk_id: e.data for e in await pipeline.events(watch.id) if e.type == "bulk.finished"}
    assert {b: d.outcome for b, d in finished.items()} == {
        1: "clean",
        2: "with_errors",
        3: "nothing_imported",
    }
    summary = finished[2].errors_summary
    assert isinstance(summary, list) and summary[0].property == "language" and summary[0].count == 2
    assert all("*" in example for group in summary for example in group.examples)


async def test_a_bulk_that_skips_working_still_yields_finished_with_previous_status_waiting(
    pipeline: Pipeline, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 7}])
    watch = await pipeline.create(spec((7,)))
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 7, status="working")
    await control.patch_bulk(SLUG, IMPORT, 7, status="finished", members_created_number=3)
    await pipeline.poll_due()
    events = await pipeline.events(watch.id)
    assert [e.type for e in events] == ["bulk.finished", "import.completed"]
    assert (events[0].data.status, events[0].data.previous_status) == ("finished", "waiting")


async def test_upstream_errors_produce_no_event_and_the_next_good_poll_resumes(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl
) -> None:
    pipeline = pipeline_factory(BRIDGE_UPSTREAM_FAILING_AFTER="10")
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    watch = await pipeline.create(spec((5,)))
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 5, status="working")
    for kind in ("500", "malformed", "hang", "disconnect", "502"):
        # hang: longer than the client's timeout; disconnect: a dropped keep-alive connection is
        # retried once by the HTTP client, so drop every request until the faults are cleared.
        await control.add_fault(kind, p=1.0, hang_s=0.8)
        await pipeline.poll_due()
        await control.clear_faults()
        assert await pipeline.types(watch.id) == [], kind
    await pipeline.poll_due()
    assert await pipeline.types(watch.id) == ["bulk.started"]
    await asyncio.sleep(0.8)  # a hung request is logged when the simulator finally answers it
    kinds = [r.fault for r in (await control.requests()).items if r.fault]
    assert set(kinds) == {"500", "malformed", "hang", "disconnect", "502"}


async def test_upstream_failing_is_announced_after_consecutive_failures_then_recovered(
    pipeline: Pipeline, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    watch = await pipeline.create(spec((5,)))
    await pipeline.poll_due()
    await control.add_fault("503", count=3, retry_after=0)  # no pause: poll again at once
    for _ in range(3):
        await pipeline.poll_due()
    await pipeline.poll_due()
    events = await pipeline.events(watch.id)
    assert [e.type for e in events] == ["watch.upstream_failing", "watch.upstream_recovered"]
    assert events[0].data.failures == 3 and "503" in str(events[0].data.reason)


async def test_answers_nested_past_the_decoder_are_upstream_failures_not_crashes(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl, redis: Redis
) -> None:
    pipeline = pipeline_factory(BRIDGE_UPSTREAM_FAILING_AFTER="3")
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}, {"id": 6}])
    named = await pipeline.create(spec((5,)))
    whole = await pipeline.create(spec(wid="wch_00000000000000000000bbbb"))
    await pipeline.poll_due()
    await control.add_fault("nested", p=1.0)
    for _ in range(3):
        await pipeline.poll_due()  # each failure backs off: claim it as if that time had passed
        assert await redis.zcard(keys.INFLIGHT) == 0  # the lease is given back with the commit
    await control.clear_faults()
    for watch in (named, whole):
        types = await pipeline.types(watch.id)
        assert types[-1] == "watch.upstream_failing", types
    record = await pipeline.store.get_watch(named.id)
    assert record is not None and record.state == "active"  # failing, not stopped
    assert {r.fault for r in (await control.requests()).items if r.fault} == {"nested"}


async def test_unauthorized_stops_the_watch_in_error_with_one_event(
    pipeline: Pipeline, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    await control.set_club_token(SLUG, "another-token")
    watch = await pipeline.create(spec((5,)))
    await pipeline.poll_due()
    assert await pipeline.types(watch.id) == ["watch.upstream_failing"]
    record = await pipeline.store.get_watch(watch.id)
    assert record is not None and record.state == "error"
    assert await pipeline.poll_due() == 0


async def test_rate_limiting_pauses_the_club_for_every_worker(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    await pipeline.create(spec((5,)))
    await control.add_fault("429", count=1, retry_after=30)
    await pipeline.poll_due(ahead_s=0)
    paused_until = float(await redis.get(keys.club_pause(SLUG)) or 0) / 1000
    assert 25 < paused_until - time.time() <= 31
    assert await pipeline.poll_due(ahead_s=20) == 0  # due, but the club is paused


async def test_stalled_and_expired_are_announced(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl
) -> None:
    pipeline = pipeline_factory()
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    watch = await pipeline.create(spec((5,), stall_after_s=0.2, expires_at=time.time() + 0.6))
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 5, status="working")
    await pipeline.poll_due()
    await asyncio.sleep(0.3)
    await pipeline.poll_due()
    await asyncio.sleep(0.4)
    await pipeline.poll_due()
    assert await pipeline.types(watch.id) == ["bulk.started", "watch.stalled", "watch.expired"]


async def test_two_watches_on_one_bulk_poll_it_once_and_each_gets_its_event(
    pipeline: Pipeline, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    first = await pipeline.create(spec((5,)))
    second = await pipeline.create(spec((5,), wid="wch_00000000000000000000bbbb", slack=None))
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 5, status="working")
    await pipeline.poll_due()
    one, two = await pipeline.events(first.id), await pipeline.events(second.id)
    assert [e.type for e in one] == [e.type for e in two] == ["bulk.started"]
    assert one[0].id != two[0].id
    paths = [r.path for r in (await control.requests()).items]
    assert len(paths) == 2  # one request per poll, whatever the number of watches


async def test_two_workers_polling_the_same_bulk_at_once_emit_each_event_once(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl, redis: Redis
) -> None:
    slow = pipeline_factory(
        BRIDGE_POLL_LEASE_S="2.1", BRIDGE_UPSTREAM_TIMEOUT_S="0.5", BRIDGE_UPSTREAM_CONNECT_TIMEOUT_S="0.5"
    )
    fast = pipeline_factory()
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    watch = await slow.create(spec((5,)))
    await slow.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 5, status="working")
    claimed = (await slow.store.claim(time.time() + 3600, 10)).trackers
    # The first worker's lease runs out (it looks dead) and a second one claims the same import.
    again = (await fast.store.claim(time.time() + 3600 + 10, 10)).trackers
    assert [t.tid for t in claimed] == [t.tid for t in again]
    results = await asyncio.gather(slow.poller.poll(claimed[0]), fast.poller.poll(again[0]))
    assert sorted(r.committed for r in results) == [False, True]
    assert await slow.types(watch.id) == ["bulk.started"]
    assert len(await outbox(redis)) == 1


async def test_a_terminal_bulk_is_never_polled_again(pipeline: Pipeline, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}, {"id": 6}])
    await pipeline.create(spec((5, 6)))
    await control.patch_bulk(SLUG, IMPORT, 5, status="finished", members_created_number=1)
    runner = asyncio.create_task(pipeline.poller.run())
    try:
        await asyncio.sleep(0.8)
        bulk5 = [r for r in (await control.requests()).items if r.path.endswith("/bulks/5")]
        bulk6 = [r for r in (await control.requests()).items if r.path.endswith("/bulks/6")]
    finally:
        await pipeline.poller.stop(1.0)
        await runner
    assert len(bulk5) == 1
    assert len(bulk6) >= 3


async def test_whole_import_polls_the_import_endpoint_and_fetches_a_bulk_only_around_its_changes(
    pipeline: Pipeline, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    watch = await pipeline.create(spec())
    for _ in range(3):
        await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    for _ in range(3):
        await pipeline.poll_due()
    await control.add_bulk(SLUG, IMPORT, id=3)
    await pipeline.poll_due()
    paths = [r.path for r in (await control.requests()).items]
    import_path = f"/v3/{SLUG}/members/imports/{IMPORT}"
    assert paths.count(import_path) == 7
    assert paths.count(import_path + "/bulks/1") == 1  # discovery; the listing announces working
    assert paths.count(import_path + "/bulks/2") == 1
    assert paths.count(import_path + "/bulks/3") == 1
    assert await pipeline.types(watch.id) == [
        "bulk.discovered",
        "bulk.discovered",
        "bulk.started",
        "bulk.discovered",
    ]


async def test_the_poll_loop_respects_the_minimum_interval(
    pipeline: Pipeline, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}])
    await pipeline.create(spec((5,)))
    runner = asyncio.create_task(pipeline.poller.run())
    try:
        await asyncio.sleep(1.0)
    finally:
        await pipeline.poller.stop(1.0)
        await runner
    times = [r.t_mono for r in (await control.requests()).items]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 5
    assert min(gaps) >= pipeline.settings.poll_min_interval_s


async def test_a_finished_poll_sends_no_claim_before_the_next_import_is_due(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl, redis: Redis
) -> None:
    pipeline = pipeline_factory(BRIDGE_POLL_MIN_INTERVAL_S="0.5", BRIDGE_POLL_MAX_INTERVAL_S="1")
    imports = [f"imp-due-{n}" for n in range(8)]
    await control.put_imports([(SLUG, i, [{"id": 1, "status": "working"}]) for i in imports])
    for n, import_id in enumerate(imports):
        await pipeline.create(spec((1,), wid=f"wch_{n:024d}", import_id=import_id))
        await asyncio.sleep(0.06)  # due one after another
    await redis.config_resetstat()
    runner = asyncio.create_task(pipeline.poller.run())
    try:
        await asyncio.sleep(3.0)
    finally:
        await pipeline.poller.stop(1.0)
        await runner
    stats = await redis.info("commandstats")
    scripts = int(stats["cmdstat_evalsha"]["calls"])  # claims and commits
    polls = pipeline.poller.polls
    assert polls >= 30
    # One claim when an import is due and one commit per poll; no claim in between that finds nothing.
    assert scripts / polls < 2.5, (scripts, polls)


async def test_a_poll_committed_on_its_own_costs_no_script_check(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}])
    await pipeline.create(spec((5,)))
    await redis.config_resetstat()
    assert await pipeline.poll_due() == 1
    stats = await redis.info("commandstats")
    # The commit script alone: no pipeline, whose SCRIPT EXISTS would cost a round trip more.
    assert "cmdstat_script|exists" not in stats, sorted(stats)


async def test_a_clubs_stored_credentials_are_used_instead_of_the_default_token(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}])
    await control.set_club_token(SLUG, "the-club-s-own-token")
    store = CredentialStore(redis, SecretBox(pipeline.settings.require_secret_key()))
    await store.put(SLUG, "the-club-s-own-token", "club-crm", time.time())
    watch = await pipeline.create(spec((5,)))
    await pipeline.poll_due()
    assert await pipeline.types(watch.id) == ["bulk.started"]
    [entry] = (await control.requests()).items
    assert (entry.token, entry.product_name) == ("match", "club-crm")


async def test_a_503_with_retry_after_pauses_the_whole_club(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    await control.put_import(SLUG, "imp-0002", [{"id": 6}])
    await pipeline.create(spec((5,)))
    await pipeline.create(spec((6,), wid="wch_00000000000000000000bbbb", import_id="imp-0002"))
    await control.add_fault("503", count=1, retry_after=30, match=f"/{IMPORT}/")
    await pipeline.poll_due(ahead_s=0)
    paused_until = float(await redis.get(keys.club_pause(SLUG)) or 0) / 1000
    assert 25 < paused_until - time.time() <= 31
    assert await pipeline.poll_due(ahead_s=20) == 0  # the other import of the club waits too


async def test_retry_after_on_a_bulk_fetch_pauses_the_club(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    await pipeline.create(spec())  # the whole import: the listing, then the new bulk's details
    await control.add_fault("429", count=1, retry_after=30, match="/bulks/")
    await pipeline.poll_due(ahead_s=0)
    paused_until = float(await redis.get(keys.club_pause(SLUG)) or 0) / 1000
    assert 25 < paused_until - time.time() <= 31
    assert await pipeline.poll_due(ahead_s=20) == 0


async def test_imports_claimed_before_a_pause_send_nothing_until_it_ends(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    await control.put_import(SLUG, "imp-0002", [{"id": 6}])
    await pipeline.create(spec((5,)))
    await pipeline.create(spec((6,), wid="wch_00000000000000000000bbbb", import_id="imp-0002"))
    claim = await pipeline.store.claim(time.time(), 10)
    assert len(claim.trackers) == 2
    first, second = sorted(claim.trackers, key=lambda t: t.tid != f"{SLUG}/{IMPORT}")
    await control.add_fault("429", count=1, retry_after=30)
    await pipeline.poller.poll(first)
    before = (await control.counters()).requests
    await pipeline.poller.poll(second)  # claimed ahead, before MPC said to wait
    assert (await control.counters()).requests == before
    due = await redis.zscore(keys.SCHEDULE, second.tid)
    assert due is not None and 25 < due / 1000 - time.time() <= 31


async def test_a_retry_after_pauses_the_club_for_every_worker_at_once_not_when_the_poll_ends(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5}, {"id": 6}])
    await pipeline.create(spec((5, 6)))
    await control.add_fault("429", count=1, retry_after=30, match="/bulks/5")
    await control.add_fault("hang", count=1, hang_s=2.0, match="/bulks/6")
    polling = asyncio.create_task(pipeline.poll_due(ahead_s=0))
    try:

        async def paused() -> bool:
            return await redis.get(keys.club_pause(SLUG)) is not None

        await eventually(paused, timeout_s=1.0, what="the club paused while bulk 6 still hangs")
        assert not polling.done()
    finally:
        await polling


async def test_a_stop_during_a_claim_hands_back_what_that_claim_leased(
    pipeline: Pipeline, redis: Redis, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 5, "status": "working"}])
    await pipeline.create(spec((5,)))
    # Redis holds every write (the claim script included) for a moment: the stop arrives while the
    # claim is on its way, and whatever that claim leases must not be left in the lease set.
    await redis.client_pause(400, all=False)
    runner = asyncio.create_task(pipeline.poller.run())
    await asyncio.sleep(0.1)
    assert await pipeline.poller.stop(drain_s=5) == []
    await asyncio.wait_for(runner, 5)
    assert await redis.zcard(keys.INFLIGHT) == 0
    assert await redis.zcard(keys.SCHEDULE) == 1
