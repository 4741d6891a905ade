"""A busy import's requests, as the MPC simulator saw them arrive: never closer than the floor, and
the floor apart (not the floor plus MPC's answer time) while MPC answers slowly."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Final

from bridge.core.model import WatchSpec
from mpc_simulator import SimulatorControl
from mpc_simulator.state import PathKind, RequestLogEntry
from tests.integration.conftest import SLUG, Pipeline
from tests.integration.test_upstream_budget import all_requests

IMPORT: Final = "imp-0001"
FLOOR_S: Final = 0.3
SLOW_ANSWER_S: Final = 0.2
"""How long the simulator takes over every answer: two thirds of the floor."""
POLLING_S: Final = 3.0
BUSY_GAP_TOLERANCE_S: Final = 0.05
"""What starting a poll may add to the floor (the claim and budget round trips, loop wake-up), well
under the answer time that a schedule counted from the poll's end would add."""
EPSILON_S: Final = 1e-3
"""The simulator's clock read as a float at arrival; no margin for the bridge."""


def spec(bulk_ids: tuple[int, ...] | None) -> WatchSpec:
    now = time.time()
    return WatchSpec(
        id="wch_00000000000000000000pace",
        loyalty_club_slug=SLUG,
        import_id=IMPORT,
        created_at=now,
        expires_at=now + 3600,
        bulk_ids=bulk_ids,
    )


async def run_poller(pipeline: Pipeline, seconds: float) -> None:
    """The worker's real poll loop, for ``seconds``."""
    running = asyncio.create_task(pipeline.poller.run())
    await asyncio.sleep(seconds)
    assert await pipeline.poller.stop(drain_s=2.0) == []
    await running


def gaps_by_url(entries: list[RequestLogEntry], kind: PathKind) -> dict[str, list[float]]:
    """Seconds between consecutive arrivals of the requests for each URL of this kind."""
    arrivals: dict[str, list[float]] = {}
    for entry in entries:
        if entry.kind == kind:
            arrivals.setdefault(entry.path, []).append(entry.t_mono - entry.duration_s)
    return {
        path: [later - earlier for earlier, later in itertools.pairwise(sorted(times))]
        for path, times in arrivals.items()
    }


def pacing(pipeline_factory: Callable[..., Pipeline], **extra: str) -> Pipeline:
    return pipeline_factory(
        BRIDGE_POLL_MIN_INTERVAL_S=str(FLOOR_S), BRIDGE_POLL_MAX_INTERVAL_S=str(FLOOR_S * 4), **extra
    )


async def test_a_busy_imports_requests_are_the_floor_apart_even_when_mpc_answers_slowly(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl
) -> None:
    pipeline = pacing(pipeline_factory)
    await control.put_import(SLUG, IMPORT, [{"id": 1, "status": "working"}, {"id": 2}])
    await control.add_fault("hang", p=1.0, hang_s=SLOW_ANSWER_S, match=f"/imports/{IMPORT}")
    await pipeline.create(spec(None))
    await run_poller(pipeline, POLLING_S)
    gaps = gaps_by_url(await all_requests(control), "import")
    [import_gaps] = gaps.values()
    assert len(import_gaps) >= POLLING_S / (FLOOR_S + SLOW_ANSWER_S)
    assert min(import_gaps) >= FLOOR_S - EPSILON_S
    # Counted from the poll's end, the interval would be the floor plus the answer time (0.5 s).
    assert statistics.median(import_gaps) <= FLOOR_S + BUSY_GAP_TOLERANCE_S


async def test_named_bulks_asked_one_after_another_each_keep_the_floor(
    pipeline_factory: Callable[..., Pipeline], control: SimulatorControl
) -> None:
    # One request at a time: the second bulk goes out an answer after the first, and the next
    # poll is paced by it, so neither bulk is asked again within the floor.
    pipeline = pacing(pipeline_factory, BRIDGE_MPC_REQUESTS_PER_POLL="1")
    await control.put_import(SLUG, IMPORT, [{"id": 1, "status": "working"}, {"id": 2, "status": "working"}])
    await control.add_fault("hang", p=1.0, hang_s=SLOW_ANSWER_S / 2, match=f"/imports/{IMPORT}")
    await pipeline.create(spec((1, 2)))
    await run_poller(pipeline, POLLING_S)
    gaps = gaps_by_url(await all_requests(control), "bulk")
    assert len(gaps) == 2 and all(len(per_bulk) >= 2 for per_bulk in gaps.values())
    assert min(min(per_bulk) for per_bulk in gaps.values()) >= FLOOR_S - EPSILON_S
    for per_bulk in gaps.values():
        assert statistics.median(per_bulk) <= FLOOR_S + SLOW_ANSWER_S / 2 + BUSY_GAP_TOLERANCE_S
