"""What the bridge costs when it is quiet, as most deployments are: CPU of each process.

- ``idle``: no watches, no jobs. One API, one worker and their Redis, doing nothing.
- ``quiet``: 200 watched bulks (40 imports x 5, a whole-import watch each) that stay ``working``,
  so every import is polled at MPC's 5 s floor. Figures: each process's CPU (API, worker, Redis,
  in % of one core, from ``/proc``), the upstream requests, CPU per upstream request and per
  watched bulk per minute.

Both measure the bridge as configured (the job loop woken by events) and then, in the same run
and on the same Redis and API, a worker whose job loop looks at the queue every 10 ms (the
previous default of ``BRIDGE_WORKER_POLL_DELAY_S``), as a baseline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import aiohttp

from bench.harness import API_KEY, CpuMeter, Stack
from mpc_simulator import SimulatorControl

SLUG: Final = "bench-club"
FLOOR_S: Final = 5.0
"""MPC's floor between two polls of one import (the bridge's default)."""
BASELINE_POLL_DELAY_S: Final = "0.01"
"""The job loop's look at the queue every 10 ms: the default before it was woken by events."""
WARM_UP_S: Final = 15.0
"""After a worker starts: its first polls, imports settled at the floor, the sweeper's first run."""


async def _create_watches(stack: Stack, imports: int) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for n in range(imports):
            body = {
                "loyalty_club_slug": SLUG,
                "import_id": f"imp-{n}",
            }  # the whole import: one listing a poll
            async with session.post(f"{stack.api_url}/v1/watches", json=body) as response:
                if response.status != 201:
                    raise RuntimeError(f"watch not created: {response.status} {await response.text()}")


async def _measure(stack: Stack, seconds: float, watched_bulks: int) -> dict[str, Any]:
    """CPU of the API, the worker and Redis over ``seconds``, and the upstream requests meanwhile."""
    meter = CpuMeter({name: stack.pid(name) for name in ("api", "worker", "redis")})
    async with SimulatorControl(stack.simulator_url) as control:
        before = (await control.counters()).requests
        meter.start()
        await asyncio.sleep(seconds)
        percent = meter.stop()
        requests = (await control.counters()).requests - before
    cpu_ms_per_s = 1000 * sum(meter.cpu_s.values()) / meter.wall_s  # unrounded: 0.1 % is 0.125 ms a request
    result: dict[str, Any] = {
        "seconds": seconds,
        "cpu_percent": percent,
        "bridge_cpu_percent": round(cpu_ms_per_s / 10, 2),
        "upstream_requests": requests,
        "upstream_requests_per_s": round(requests / seconds, 2),
    }
    if requests:
        result["cpu_ms_per_upstream_request"] = round(1000 * sum(meter.cpu_s.values()) / requests, 3)
    if watched_bulks:
        result["cpu_ms_per_watched_bulk_per_min"] = round(cpu_ms_per_s * 60 / watched_bulks, 2)
    return result


async def run(stack: Stack, *, imports: int, bulks: int, seconds: float) -> dict[str, Any]:
    """``imports`` x ``bulks`` watched bulks staying ``working`` (none: the idle scenario)."""
    stack.start_redis()
    stack.start_simulator()
    if imports:
        async with SimulatorControl(stack.simulator_url) as control:
            await control.put_imports(
                [
                    (SLUG, f"imp-{n}", [{"id": n * bulks + k + 1, "status": "working"} for k in range(bulks)])
                    for n in range(imports)
                ]
            )
    env = stack.bridge_env(BRIDGE_POLL_MIN_INTERVAL_S=str(FLOOR_S))
    stack.start_api(env)
    if imports:
        await _create_watches(stack, imports)
    runs: dict[str, Any] = {}
    for label, overrides in (
        ("events", {}),
        ("poll_10ms", {"BRIDGE_WORKER_POLL_DELAY_S": BASELINE_POLL_DELAY_S}),
    ):
        stack.start_worker("worker", env | overrides)
        await asyncio.sleep(WARM_UP_S)
        started = time.monotonic()
        runs[label] = await _measure(stack, seconds, imports * bulks)
        runs[label]["wall_s"] = round(time.monotonic() - started, 1)
        stack.procs["worker"].stop()
    return {"imports": imports, "bulks_per_import": bulks, "watched_bulks": imports * bulks, **runs}
