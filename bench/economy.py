"""Upstream economy: requests per completed bulk, against a naive fixed 5 s per-bulk poller.

The simulator plays its ``realistic`` scenario (200 imports x 5 bulks: a first bulk waits minutes,
jobs work tens of seconds one after another, some retry, a few fail) time-compressed by
``TIME_SCALE``; the same seed is played twice, once watched by the bridge (whole-import
watches), once by the naive poller (a GET per known bulk every 5 s until it is terminal, which
is what an n8n flow or changedetection.io would do; it is told each bulk the moment it appears,
for free). Both are running when the scenario starts: the bridge's worker is up and listening
before the first bulk appears, as the naive poller is. Every interval is compressed by the same
factor, so request counts compare as they would in real time, and delays are reported in real
seconds.

Detection delay of a status change: from the simulator's flip to the first upstream answer that
showed the new status (an import listing counts: it is where the bridge learns it).

Request gap: between two requests for the same URL the poller paces (the import endpoint for the
bridge, each bulk for the naive poller), as the simulator saw them arrive; "busy" gaps follow an
answer that showed a bulk MPC was working on, when both pollers should ask at the floor.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from bench.harness import MPC_TOKEN, Stack, stack
from bridge.core.model import ACTIVE_STATUSES, WatchSpec
from bridge.store import keys
from bridge.store.redis_store import RedisStore
from bridge.upstream.mpc import user_agent
from mpc_simulator import SimulatorControl
from mpc_simulator.state import PathKind, RequestLogEntry

TIME_SCALE: Final = 10.0
MPC_FLOOR_S: Final = 5.0
MPC_CEILING_S: Final = 60.0
NAIVE_EVERY_S: Final = 5.0
SEED: Final = 20_261_127
TERMINAL: Final = ("finished", "failed")
REQUEST_LOG: Final = 2_000_000


def scenario_params(imports: int, bulks: int) -> dict[str, Any]:
    return {
        "imports": imports,
        "bulks_per_import": bulks,
        "start_spread_s": 0.0,
        "time_scale": TIME_SCALE,
        "seed": SEED,
        "slugs": ["bench-club"],
    }


async def _wait_done(control: SimulatorControl, scenario_id: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await control.scenario(scenario_id)).state != "running":
            return
        await asyncio.sleep(0.5)


async def run_bridge(stack: Stack, imports: int, bulks: int) -> dict[str, Any]:
    stack.start_redis()
    stack.start_simulator("--request-log", str(REQUEST_LOG))
    env = stack.bridge_env(
        BRIDGE_POLL_MIN_INTERVAL_S=str(MPC_FLOOR_S / TIME_SCALE),
        BRIDGE_POLL_MAX_INTERVAL_S=str(MPC_CEILING_S / TIME_SCALE),
    )
    redis = Redis(port=stack.redis_port)
    store = RedisStore(redis, retention_s=3600)
    # The worker runs before the scenario starts, as the naive poller does: its start-up (a second
    # or two of Python imports, ten to twenty in the scenario's time) is not detection delay.
    stack.start_worker("worker-1", env)
    await _until_worker_listens(redis)
    async with SimulatorControl(stack.simulator_url) as control:
        status = await control.start_scenario("realistic", **scenario_params(imports, bulks))
        now = time.time()
        for n, ref in enumerate(status.imports):
            spec = WatchSpec(
                id=f"wch_econ{n:020d}",
                loyalty_club_slug=ref.slug,
                import_id=ref.import_id,
                created_at=now,
                expires_at=now + 86_400,
            )
            await store.create_watch(spec, f"econ-{n}", 0.0)
        await _wait_done(control, status.id, 3600)
        await _until_watches_end(store, [f"wch_econ{n:020d}" for n in range(len(status.imports))])
        result = await _measure(control, paced="import")
    await redis.aclose()
    return result


async def _until_worker_listens(redis: Redis, timeout_s: float = 60) -> None:
    """Until the worker follows the schedule's wake channel: its poll loop runs, and a new watch
    is claimed at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        [(_, listeners)] = await redis.pubsub_numsub(keys.SCHEDULE_WAKE_CHANNEL)
        if listeners:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the worker did not start")


async def _until_watches_end(store: RedisStore, watch_ids: list[str], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(watch_ids)
    while pending and time.monotonic() < deadline:
        for wid in list(pending):
            record = await store.get_watch(wid)
            if record is not None and record.state != "active":
                pending.discard(wid)
        await asyncio.sleep(1.0)


async def run_naive(stack: Stack, imports: int, bulks: int) -> dict[str, Any]:
    stack.start_simulator("--request-log", str(REQUEST_LOG))
    every = NAIVE_EVERY_S / TIME_SCALE
    headers = {"X-Client-Authorization": MPC_TOKEN, "X-Product-Name": "naive", "X-User-Agent": user_agent()}
    polling: set[int] = set()
    tasks: list[asyncio.Task[None]] = []

    async def poll(session: aiohttp.ClientSession, slug: str, import_id: str, bulk_id: int) -> None:
        url = f"{stack.simulator_url}/v3/{slug}/members/imports/{import_id}/bulks/{bulk_id}"
        while True:
            async with session.get(url, headers={**headers, "X-Loyalty-Club-Slug": slug}) as response:
                body = await response.json() if response.status == 200 else {}
            if body.get("status") in TERMINAL:
                return
            await asyncio.sleep(every)

    async with SimulatorControl(stack.simulator_url) as control, aiohttp.ClientSession() as session:
        status = await control.start_scenario("realistic", **scenario_params(imports, bulks))
        where = {b: (ref.slug, ref.import_id) for ref in status.imports for b in ref.bulk_ids}
        since = 0
        while (await control.scenario(status.id)).state == "running" or any(not t.done() for t in tasks):
            page = await control.flips(since=since, limit=10_000)
            for flip in page.items:
                if flip.bulk_id not in polling and flip.bulk_id in where:
                    polling.add(flip.bulk_id)
                    tasks.append(asyncio.create_task(poll(session, *where[flip.bulk_id], flip.bulk_id)))
            since = page.last_seq or since
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)
        return await _measure(control, paced="bulk")


def _request_gaps(served: list[RequestLogEntry], paced: PathKind) -> dict[str, Any]:
    """Gaps (real seconds) between consecutive arrivals of requests for the same paced URL."""
    arrivals: dict[str, list[RequestLogEntry]] = {}
    for request in served:
        if request.kind == paced:
            arrivals.setdefault(request.path, []).append(request)
    gaps: list[float] = []
    busy: list[float] = []
    for entries in arrivals.values():
        entries.sort(key=lambda e: e.t_mono - e.duration_s)
        for before, after in itertools.pairwise(entries):
            gap = (after.t_mono - after.duration_s - (before.t_mono - before.duration_s)) * TIME_SCALE
            gaps.append(gap)
            if any(status in ACTIVE_STATUSES for status in before.shown.values()):
                busy.append(gap)
    return {
        "min_request_gap_s": round(min(gaps), 3) if gaps else None,
        "gaps_below_floor": sum(gap < MPC_FLOOR_S for gap in gaps),
        "median_busy_request_gap_s": round(statistics.median(busy), 3) if busy else None,
        "p90_busy_request_gap_s": round(sorted(busy)[int(0.9 * (len(busy) - 1))], 3) if busy else None,
    }


async def _measure(control: SimulatorControl, *, paced: PathKind) -> dict[str, Any]:
    flips = [f for f in await control.all_flips() if f.source == "scenario" and f.from_ is not None]
    served = await control.all_requests()
    shown: dict[tuple[int, str], list[float]] = {}
    for request in served:
        for bulk_id, status in request.shown.items():
            shown.setdefault((int(bulk_id), status), []).append(request.t)
    delays: list[float] = []
    by_bulk: dict[int, list[Any]] = {}
    for flip in flips:
        by_bulk.setdefault(flip.bulk_id, []).append(flip)
    completed = 0
    for bulk_flips in by_bulk.values():
        bulk_flips.sort(key=lambda f: f.t)
        completed += bulk_flips[-1].to in TERMINAL
        for index, flip in enumerate(bulk_flips):
            next_t = bulk_flips[index + 1].t if index + 1 < len(bulk_flips) else float("inf")
            seen = next((t for t in shown.get((flip.bulk_id, flip.to), []) if flip.t <= t < next_t), None)
            if seen is not None:
                delays.append((seen - flip.t) * TIME_SCALE)
    return {
        "requests": len(served),
        "completed_bulks": completed,
        "requests_per_completed_bulk": round(len(served) / max(completed, 1), 2),
        "transitions": len(flips),
        "observed_transitions": len(delays),
        "median_detection_delay_s": round(statistics.median(delays), 2) if delays else None,
        "p90_detection_delay_s": round(sorted(delays)[int(0.9 * (len(delays) - 1))], 2) if delays else None,
        **_request_gaps(served, paced),
    }


async def run(bridge_stack: Stack, *, imports: int, bulks: int) -> dict[str, Any]:
    bridge = await run_bridge(bridge_stack, imports, bulks)
    bridge_stack.close()
    with stack() as naive_stack:
        naive = await run_naive(naive_stack, imports, bulks)
    return {
        "imports": imports,
        "bulks_per_import": bulks,
        "time_scale": TIME_SCALE,
        "bridge": bridge,
        "naive_5s_poller": naive,
        "request_ratio": round(
            bridge["requests_per_completed_bulk"] / naive["requests_per_completed_bulk"], 3
        ),
    }
