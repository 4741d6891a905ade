"""Routing in the poll pipeline: an event goes to the subscriptions that exist when it is recorded."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from bridge.core.model import WatchSpec
from bridge.store import keys
from bridge.webhooks.model import destination
from mpc_simulator import SimulatorControl
from tests.integration.conftest import SLUG, Pipeline, outbox
from tests.integration.webhooks_helpers import Webhooks

IMPORT = "imp-routing"


def spec() -> WatchSpec:
    now = time.time()
    return WatchSpec(
        id="wch_0000000000000000000route",
        loyalty_club_slug=SLUG,
        import_id=IMPORT,
        created_at=now,
        expires_at=now + 3600,
        bulk_ids=None,
    )


async def test_a_subscription_gets_the_events_recorded_after_it_exists_and_matching_its_filters(
    pipeline: Pipeline, control: SimulatorControl, redis: Redis
) -> None:
    webhooks = Webhooks(redis)
    other_club, _ = await webhooks.subscribe("https://hooks.example.com/x", loyalty_club_slug="other-mall")
    await control.put_import(SLUG, IMPORT, [{"id": 1}])
    watch = await pipeline.create(spec())
    await pipeline.poll_due()  # bulk.discovered, before the subscription exists
    everything, _ = await webhooks.subscribe("https://hooks.example.com/all")
    finished, _ = await webhooks.subscribe("https://hooks.example.com/f", event_types=("bulk.finished",))
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_created_number=1)
    await pipeline.poll_due()
    events = {e.id: e.type for e in await pipeline.events(watch.id)}
    routed: dict[str, list[str]] = {}
    for entry in await outbox(redis):
        eid, dest = keys.split_outbox_entry(entry.decode())
        routed.setdefault(dest, []).append(events[eid])
    assert sorted(routed[destination(everything)]) == ["bulk.finished", "bulk.started", "import.completed"]
    assert routed[destination(finished)] == ["bulk.finished"]
    assert destination(other_club) not in routed
    assert sorted(routed["log"]) == sorted(events.values())
    await webhooks.close()
