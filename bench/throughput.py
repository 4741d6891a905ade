"""Poll throughput of worker processes, against bare httpx and aiohttp GET loops (same run).

Every watched bulk is ``working`` and the interval floor is lowered far below what the worker
can serve, so every bulk is always due: the worker polls as fast as it can, each poll a full
cycle (claim, GET, decode, diff, atomic commit, reschedule). Polls are counted by the simulator.
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time
from typing import Any, Final

from redis.asyncio import Redis

from bench.harness import MPC_TOKEN, CpuMeter, Stack, cpu_seconds
from bridge.core.model import WatchSpec
from bridge.store.redis_store import RedisStore
from bridge.upstream.mpc import user_agent
from mpc_simulator import SimulatorControl

SLUG: Final = "bench-club"
FLIPS_PER_RUN: Final = 300
"""Bulks moved to ``finished`` while the workers of one run poll: their events are checked for
duplicates (two workers announcing one change)."""
SETTLE_MAX_S: Final = 30.0
"""How long the flipped bulks may take to be announced once the window ends."""
TIMELINE_MAX: Final = 1000
BATCH: Final = 1000
CONCURRENCY: Final = 50
"""The workers' BRIDGE_POLL_CONCURRENCY, and the baselines' concurrency."""
FLOOR_S: Final = "0.05"
WARMUP_S: Final = 5.0


def bulk_url(stack: Stack, n: int) -> str:
    return f"{stack.simulator_url}/v3/{SLUG}/members/imports/imp-{n}/bulks/{n + 1}"


async def populate(stack: Stack, count: int, status: str = "working") -> None:
    """``count`` imports of one bulk each (in ``status``), and one named-bulk watch on each."""
    async with SimulatorControl(stack.simulator_url) as control:
        for start in range(0, count, BATCH):
            await control.put_imports(
                [
                    (SLUG, f"imp-{n}", [{"id": n + 1, "status": status, "members_in_payload_number": 100}])
                    for n in range(start, min(count, start + BATCH))
                ]
            )
    redis = Redis(port=stack.redis_port)
    store = RedisStore(redis, retention_s=3600)
    now = time.time()
    for n in range(count):
        spec = WatchSpec(
            id=f"wch_bench{n:019d}",
            loyalty_club_slug=SLUG,
            import_id=f"imp-{n}",
            created_at=now,
            expires_at=now + 86_400,
            bulk_ids=(n + 1,),
        )
        await store.create_watch(spec, f"bench-{n}", 0.0)
    await redis.aclose()


async def polls(stack: Stack) -> int:
    async with SimulatorControl(stack.simulator_url) as control:
        return (await control.counters()).by_kind.get("bulk", 0)


async def measure_workers(stack: Stack, workers: int, seconds: float, flip_from: int) -> dict[str, Any]:
    env = stack.bridge_env(
        BRIDGE_POLL_MIN_INTERVAL_S=FLOOR_S,
        BRIDGE_POLL_MAX_INTERVAL_S="1",
        BRIDGE_POLL_CONCURRENCY=str(CONCURRENCY),
    )
    names = [f"worker-{i + 1}" for i in range(workers)]
    for name in names:
        stack.start_worker(name, env)
    await asyncio.sleep(WARMUP_S)
    meter = CpuMeter(
        {
            "simulator": stack.pid("simulator"),
            "redis": stack.pid("redis"),
            **{name: stack.pid(name) for name in names},
        }
    )
    before = await polls(stack)
    meter.start()
    started = time.monotonic()
    await asyncio.sleep(seconds / 2)
    flipped = range(flip_from, flip_from + FLIPS_PER_RUN)
    await flip(stack, flipped)
    await asyncio.sleep(seconds / 2)
    after = await polls(stack)
    elapsed = time.monotonic() - started
    cpu = meter.stop()
    settle_until = time.monotonic() + SETTLE_MAX_S
    checked = await check_events(stack, flipped)
    while checked["finished_announced"] < len(flipped) and time.monotonic() < settle_until:
        await asyncio.sleep(1.0)
        checked = await check_events(stack, flipped)
    for name in names:
        stack.procs.pop(name).stop()
    return {
        "workers": workers,
        "polls_per_s": round((after - before) / elapsed),
        "cpu_percent": cpu,
        **checked,
    }


async def flip(stack: Stack, numbers: range) -> None:
    async with SimulatorControl(stack.simulator_url) as control:
        await control.put_imports(
            [
                (SLUG, f"imp-{n}", [{"id": n + 1, "status": "finished", "members_in_payload_number": 100}])
                for n in numbers
            ]
        )


async def check_events(stack: Stack, flipped: range) -> dict[str, int]:
    """Every flipped bulk announced as finished, and no change announced twice."""
    redis = Redis(port=stack.redis_port)
    store = RedisStore(redis, retention_s=3600)
    finished = duplicates = 0
    try:
        for n in flipped:
            bodies = await store.timeline(f"wch_bench{n:019d}", 0, TIMELINE_MAX)
            changes = collections.Counter(_change(json.loads(body)) for body in bodies)
            finished += sum(count for change, count in changes.items() if change[0] == "bulk.finished")
            duplicates += sum(count - 1 for count in changes.values())
    finally:
        await redis.aclose()
    return {"flipped": len(flipped), "finished_announced": finished, "duplicate_events": duplicates}


def _change(event: dict[str, Any]) -> tuple[Any, ...]:
    data = event["data"]
    return (event["type"], data.get("bulk_id"), data.get("status"), data.get("previous_status"))


def measure_baseline(stack: Stack, client: str, count: int, seconds: float) -> dict[str, Any]:
    urls = stack.workdir / "urls.txt"
    urls.write_text("\n".join(bulk_url(stack, n) for n in range(count)))
    headers = [
        f"X-Client-Authorization: {MPC_TOKEN}",
        f"X-Loyalty-Club-Slug: {SLUG}",
        "X-Product-Name: mpc-import-bridge",
        f"X-User-Agent: {user_agent()}",
        "Accept: application/json",
    ]
    argv = [
        sys.executable,
        "-m",
        "bench.baselines",
        client,
        "--urls",
        str(urls),
        "--concurrency",
        str(CONCURRENCY),
        "--seconds",
        str(seconds),
    ]
    for header in headers:
        argv += ["--header", header]
    sim_pid = stack.pid("simulator")
    sim_before, t0 = cpu_seconds(sim_pid), time.monotonic()
    result = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    sim_cpu = 100 * (cpu_seconds(sim_pid) - sim_before) / (time.monotonic() - t0)
    return {
        "client": client,
        "requests_per_s": round(result["requests"] / result["seconds"]),
        "simulator_cpu_percent": round(sim_cpu, 1),
    }


async def run(stack: Stack, *, bulks: int, seconds: float, worker_counts: tuple[int, ...]) -> dict[str, Any]:
    stack.start_redis()
    stack.start_simulator("--request-log", "1000")
    await populate(stack, bulks)
    baselines = {client: measure_baseline(stack, client, bulks, seconds) for client in ("httpx", "aiohttp")}
    runs = [
        await measure_workers(stack, n, seconds, flip_from=i * FLIPS_PER_RUN)
        for i, n in enumerate(worker_counts)
    ]
    one = runs[0]["polls_per_s"]
    return {
        "bulks": bulks,
        "concurrency": CONCURRENCY,
        "seconds": seconds,
        "baselines": baselines,
        "runs": runs,
        "ratio_to_aiohttp": round(one / baselines["aiohttp"]["requests_per_s"], 3),
        "ratio_to_httpx": round(one / baselines["httpx"]["requests_per_s"], 3),
    }
