"""The per-club MPC request budget shared by every worker, and the cap on requests in flight per poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import pytest
from redis.asyncio import Redis

from bridge.core.model import WatchSpec
from bridge.store import keys
from mpc_simulator import SimulatorControl
from mpc_simulator.state import RequestLogEntry
from tests.integration.conftest import SLUG, Pipeline

IMPORT: Final = "imp-0001"
TID: Final = f"{SLUG}/{IMPORT}"
DEFAULT_BUDGET: Final = {"BRIDGE_MPC_CLUB_RATE": "5", "BRIDGE_MPC_CLUB_BURST": "10"}
"""The shipped defaults (the other integration tests lift the budget)."""


def spec(bulk_ids: tuple[int, ...] | None, wid: str = "wch_00000000000000000000aaaa") -> WatchSpec:
    now = time.time()
    return WatchSpec(
        id=wid,
        loyalty_club_slug=SLUG,
        import_id=IMPORT,
        created_at=now,
        expires_at=now + 3600,
        bulk_ids=bulk_ids,
    )


async def all_requests(control: SimulatorControl) -> list[RequestLogEntry]:
    found: list[RequestLogEntry] = []
    since = 0
    while True:
        page = await control.requests(since=since)
        found += page.items
        if not page.items or page.items[-1].seq >= page.last_seq:
            return found
        since = page.items[-1].seq


def most_at_once(entries: list[RequestLogEntry]) -> int:
    """The most requests the simulator was answering at the same moment."""
    edges = sorted(
        [(e.t_mono - e.duration_s, 1) for e in entries] + [(e.t_mono, -1) for e in entries],
        key=lambda edge: (edge[0], edge[1]),
    )
    current = highest = 0
    for _, step in edges:
        current += step
        highest = max(highest, current)
    return highest


@pytest.mark.parametrize("first_tokens", [False, True], ids=["poll-takes-all", "claim-takes-first"])
async def test_one_clubs_budget_is_shared_by_every_worker_and_a_throttled_poll_sends_nothing(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl, redis: Redis, first_tokens: bool
) -> None:
    one, other = pipeline_factory(**DEFAULT_BUDGET), pipeline_factory(**DEFAULT_BUDGET)
    bulks = tuple(range(1, 31))
    await control.put_import(SLUG, IMPORT, [{"id": b, "status": "working"} for b in bulks])
    watch = await one.create(spec(bulks))
    await one.poll_due(first_tokens=first_tokens)
    assert len(await all_requests(control)) == 10  # the burst, not 30
    assert len(await one.types(watch.id)) == 10  # bulk.started of the ten it could ask
    await other.poll_due(first_tokens=first_tokens)  # another worker, at once: the same budget, spent
    assert len(await all_requests(control)) == 10
    due = await redis.zscore(keys.SCHEDULE, TID)
    # Due again when the next token comes (5 a second: 0.2 s), not at the poll floor (0.05 s here).
    assert due is not None and 0.12 <= due / 1000 - time.time() <= 0.25
    record = await other.store.get_watch(watch.id)
    assert record is not None and record.state == "active"
    assert "watch.upstream_failing" not in await other.types(watch.id)  # throttled is not a failure


async def test_a_budget_shorter_than_the_list_still_reaches_every_bulk(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl
) -> None:
    pipeline = pipeline_factory(BRIDGE_MPC_CLUB_RATE="1000", BRIDGE_MPC_CLUB_BURST="10")
    bulks = tuple(range(1, 31))
    await control.put_import(SLUG, IMPORT, [{"id": b, "status": "finished"} for b in bulks])
    watch = await pipeline.create(spec(bulks))
    for _ in range(3):
        await pipeline.poll_due()
        await asyncio.sleep(0.02)  # the bucket refills
    types = await pipeline.types(watch.id)
    assert types.count("bulk.finished") == 30 and types[-1] == "import.completed"
    assert len(await all_requests(control)) == 30  # each bulk once


async def poll_a_thousand_bulks(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl, per_poll: int
) -> int:
    pipeline = pipeline_factory(
        BRIDGE_MPC_REQUESTS_PER_POLL=str(per_poll),
        BRIDGE_POLL_LEASE_S="300",
        BRIDGE_UPSTREAM_TIMEOUT_S="30",
        BRIDGE_UPSTREAM_CONNECT_TIMEOUT_S="30",
        BRIDGE_MPC_CLUB_RATE="100000",
        BRIDGE_MPC_CLUB_BURST="100000",
    )
    await control.put_import(SLUG, IMPORT, [{"id": b, "status": "working"} for b in range(1, 1001)])
    await control.add_fault("hang", p=1.0, hang_s=0.01, match="/bulks/")
    watch = await pipeline.create(spec(None))  # the whole import: all 1,000 bulks are new to it
    await pipeline.poll_due()
    entries = [e for e in await all_requests(control) if e.kind == "bulk"]
    assert len(entries) == 1000 and all(e.status == 200 for e in entries)
    assert (await pipeline.types(watch.id)).count("bulk.discovered") == 1000
    return most_at_once(entries)


async def test_a_poll_of_a_thousand_bulks_has_at_most_four_requests_in_flight(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl
) -> None:
    assert 2 <= await poll_a_thousand_bulks(pipeline_factory, control, per_poll=4) <= 4


async def test_without_the_cap_the_same_poll_fires_far_more_at_once(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl
) -> None:
    # The measurement sees concurrency when there is some: the cap above is what holds it at 4.
    assert await poll_a_thousand_bulks(pipeline_factory, control, per_poll=1000) > 20
