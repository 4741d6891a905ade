"""Scale and memory: 100,000 active watched bulks, created through the API.

One named-bulk watch per bulk (the costliest shape: a watch, a tracker and a schedule entry per
bulk), or one watch per import of several bulks (``bulks_per_watch``, the usual shape). Figures:
time to create them through the API; Redis memory per watched bulk (``INFO memory`` before the
watches, after creating them, and after every bulk has been polled once, snapshots included);
worker RSS; and whether scheduling keeps every bulk within its interval — from the simulator's
request log, the gaps between two polls of one bulk: none below the floor, none above the
ceiling (plus jitter and a second). The floor and ceiling are raised to 60 s and 120 s so that
one worker can serve them all.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from bench.harness import API_KEY, Stack, rss_bytes
from bench.throughput import BATCH, SLUG
from bridge.core.schedule import JITTER
from mpc_simulator import SimulatorControl

FLOOR_S: Final = 60.0
CEILING_S: Final = 120.0
CREATE_CONCURRENCY: Final = 64
REQUEST_LOG: Final = 2_000_000
SLACK_S: Final = 1.0
"""Tolerance on the ceiling for the claim loop's own granularity and the test's clocks."""


async def _create_watches(stack: Stack, count: int, bulks_per_watch: int = 1) -> float:
    """POST ``count`` watches through the API, each on an import's ``bulks_per_watch`` bulks;
    the rate in watches/s."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    failures: list[int] = []
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            first = n * bulks_per_watch + 1
            body = {
                "loyalty_club_slug": SLUG,
                "import_id": f"imp-{n}",
                "bulk_ids": list(range(first, first + bulks_per_watch)),
            }
            async with session.post(f"{stack.api_url}/v1/watches", json=body, headers=headers) as response:
                if response.status != 201:
                    failures.append(response.status)
                await response.read()

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=CREATE_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(CREATE_CONCURRENCY)))
    if failures:
        raise RuntimeError(f"{len(failures)} watches not created: {sorted(set(failures))}")
    return count / (time.monotonic() - started)


async def run(
    stack: Stack,
    *,
    bulks: int,
    observe_s: float,
    bulks_per_watch: int = 1,
    floor_s: float = FLOOR_S,
    ceiling_s: float = CEILING_S,
) -> dict[str, Any]:
    """``bulks`` watched bulks: one watch per import of ``bulks_per_watch`` bulks."""
    stack.start_redis()
    stack.start_simulator("--request-log", str(REQUEST_LOG))
    watches = bulks // bulks_per_watch
    async with SimulatorControl(stack.simulator_url) as control:
        for start in range(0, watches, BATCH):
            await control.put_imports(
                [
                    (SLUG, f"imp-{n}", [{"id": n * bulks_per_watch + k + 1} for k in range(bulks_per_watch)])
                    for n in range(start, min(watches, start + BATCH))
                ]
            )
    env = stack.bridge_env(
        BRIDGE_POLL_MIN_INTERVAL_S=str(floor_s),
        BRIDGE_POLL_MAX_INTERVAL_S=str(ceiling_s),
        # Every watch is one simulated club's: the per-club cap would refuse all but its first ones.
        BRIDGE_MAX_WATCHES_PER_CLUB=str(watches),
    )
    stack.start_api(env)
    redis = Redis(port=stack.redis_port)
    before = int((await redis.info("memory"))["used_memory"])
    rate = await _create_watches(stack, watches, bulks_per_watch)
    created = int((await redis.info("memory"))["used_memory"])
    stack.start_worker("worker-1", env)
    started = time.time()
    await asyncio.sleep(observe_s)
    rss = rss_bytes(stack.pid("worker-1"))
    polled = int((await redis.info("memory"))["used_memory"])
    await redis.aclose()
    async with SimulatorControl(stack.simulator_url) as control:
        served = [r for r in await control.all_requests() if r.t >= started]
    times: dict[str, list[float]] = defaultdict(list)
    for request in served:
        times[request.path].append(request.t)
    gaps = [b - a for polled in times.values() for a, b in itertools.pairwise(polled)]
    ceiling = ceiling_s * (1 + JITTER) + SLACK_S
    return {
        "bulks": bulks,
        "bulks_per_watch": bulks_per_watch,
        "watches": watches,
        "created_per_s": round(rate, 1),
        "create_seconds": round(watches / rate, 1),
        "redis_bytes_per_watched_bulk_created": round((created - before) / bulks),
        "redis_bytes_per_watched_bulk": round((polled - before) / bulks),
        "worker_rss_mb": round(rss / 2**20, 1),
        "observed_s": observe_s,
        "bulks_polled": len(times),
        "polls": len(served),
        "min_gap_s": round(min(gaps), 3) if gaps else None,
        "max_gap_s": round(max(gaps), 3) if gaps else None,
        "gaps_below_floor": sum(g < floor_s for g in gaps),
        "gaps_above_ceiling": sum(g > ceiling for g in gaps),
        "floor_s": floor_s,
        "ceiling_s": ceiling_s,
    }
