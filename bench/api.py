"""API throughput and latency: ``POST /v1/watches`` and ``GET /v1/watches/{id}`` against ``GET /livez``.

One API process (``bridge api``: uvicorn on uvloop, one process) on a real redis-server; a load
client (:mod:`bench.load`, aiohttp on uvloop, its own process) keeps ``concurrency`` requests in
flight for ``seconds`` on each route in turn, after a warm-up:

1. ``GET /livez`` — no auth, no Redis: what this process serves at best (the baseline);
2. ``POST /v1/watches`` — a distinct watch each time (201), two named bulks;
3. ``GET /v1/watches/{id}`` — over the watches step 2 created (fresh watches: no snapshot yet);
4. ``GET /livez`` again, so drift over the run shows.

The baseline is the mean of steps 1 and 4; each route's ratio is its throughput over it. CPU is
read for the API, Redis and the client over each measuring window (100 % is one core); a client
near 100 % would mean the client, not the API, was the limit. The API's CPU time per request is
the figure least disturbed by whatever else the machine runs meanwhile.
"""

from __future__ import annotations

from typing import Any, Final

from bench.harness import API_KEY, Stack, redis_commands
from bench.load import measure

CONCURRENCY: Final = 32
WARMUP_S: Final = 1.0
NO_MPC_URL: Final = "http://127.0.0.1:9"
"""The API never calls MPC and no worker runs here: a loopback address that is never used."""
ROUTE_NAMES: Final = {
    "livez": "GET /livez",
    "create": "POST /v1/watches",
    "show": "GET /v1/watches/{id}",
}


def run_load(stack: Stack, route: str, seconds: float, *extra: str) -> dict[str, Any]:
    """One measuring window of :mod:`bench.load` on ``route``, with API and Redis CPU."""
    args = [
        route,
        "--base",
        stack.api_url,
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--concurrency",
        str(CONCURRENCY),
        "--seconds",
        str(seconds),
        "--warmup",
        str(WARMUP_S),
        *extra,
    ]
    commands = redis_commands(stack.redis_port)
    result, cpu = measure(args, {"api": stack.pid("api"), "redis": stack.pid("redis")})
    commands = redis_commands(stack.redis_port) - commands - 1
    issued = result["requests"] + result["errors"] + result["warmup_requests"]
    result["redis_commands_per_request"] = round(commands / max(1, issued), 2)
    result["name"] = ROUTE_NAMES[route]
    result["api_cpu_percent"] = cpu["api"]
    result["redis_cpu_percent"] = cpu["redis"]
    result["api_cpu_ms_per_request"] = round(
        10 * cpu["api"] * result["seconds"] / max(1, result["requests"]), 3
    )
    return result


async def run(stack: Stack, *, seconds: float) -> dict[str, Any]:
    stack.start_redis()
    stack.start_api(stack.bridge_env(BRIDGE_MPC_BASE_URL=NO_MPC_URL))
    ids = stack.workdir / "watch-ids.txt"
    before = run_load(stack, "livez", seconds)
    create = run_load(stack, "create", seconds, "--ids-out", str(ids))
    if not ids.read_text().strip():
        raise RuntimeError(f"POST /v1/watches created no watch: {create['statuses']}, see {stack.workdir}")
    show = run_load(stack, "show", seconds, "--ids", str(ids))
    after = run_load(stack, "livez", seconds)
    baseline = round((before["requests_per_s"] + after["requests_per_s"]) / 2, 1)
    for route in (create, show):
        route["ratio_to_livez"] = round(route["requests_per_s"] / baseline, 3)
    return {
        "concurrency": CONCURRENCY,
        "seconds": seconds,
        "warmup_s": WARMUP_S,
        "client": "aiohttp on uvloop, one process (bench.load)",
        "livez_baseline_requests_per_s": baseline,
        "livez_before": before,
        "livez_after": after,
        "create": create,
        "show": show,
    }
