"""Change → notification latency: from the simulator's flip to the signed webhook received.

2,000 watched bulks (one per import, named-bulk watches) at a 1 s poll floor; the simulator
flips statuses at random instants (``random_flips``). For every flip that a poll observed (a bulk
that changed twice between two polls shows only its last status, and nothing is invented for the
first), three instants:

- ``t_flip``: the simulator applied the change (its flip log);
- ``t_seen``: the first answer of the bulk endpoint that showed the new status (request log);
- ``t_recv``: the local receiver got the webhook for that bulk and status.

Total latency is ``t_recv - t_flip`` (target p99 ≤ poll interval + 100 ms); the bridge's own part
is ``t_recv - t_seen`` (target p99 ≤ 50 ms). All three clocks are this machine's wall clock.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, Final

import httpx
import msgspec

from bench.harness import API_KEY, Stack
from bench.throughput import SLUG, populate
from bridge_tools.processes import Process
from mpc_simulator import SimulatorControl

FLOOR_S: Final = 1.0
POLL_CONCURRENCY: Final = 200
"""The default of ``BRIDGE_POLL_CONCURRENCY``."""
RECEIVER_PATH: Final = "bench"
REQUEST_LOG: Final = 1_000_000


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p90_ms": round(percentile(values, 90) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1) if values else float("nan"),
    }


def start_receiver(stack: Stack) -> str:
    argv = [sys.executable, "-m", "bridge_tools.webhook_receiver", "--port", "0"]
    proc = Process(argv, stack.workdir / "receiver.log").start(stdout_pipe=True)
    stack.procs["receiver"] = proc
    assert proc.popen is not None and proc.popen.stdout is not None
    return str(proc.popen.stdout.readline().decode().split()[-1])


async def run(
    stack: Stack, *, bulks: int, rate: float, seconds: float, concurrency: int = POLL_CONCURRENCY
) -> dict[str, Any]:
    stack.start_redis()
    stack.start_simulator("--request-log", str(REQUEST_LOG))
    receiver = start_receiver(stack)
    await populate(stack, bulks, status="waiting")
    env = stack.bridge_env(
        BRIDGE_POLL_MIN_INTERVAL_S=str(FLOOR_S),
        BRIDGE_POLL_MAX_INTERVAL_S=str(FLOOR_S),
        BRIDGE_POLL_CONCURRENCY=str(concurrency),
    )
    stack.start_api(env)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as api:
        created = await api.post(
            "/v1/subscriptions", json={"url": f"{receiver}/{RECEIVER_PATH}", "event_types": ["bulk.*"]}
        )
        created.raise_for_status()
        secret = created.json()["secret"]
    async with httpx.AsyncClient(base_url=receiver) as client:
        (
            await client.put(f"/_control/secrets/{RECEIVER_PATH}", json={"secrets": [secret]})
        ).raise_for_status()
    stack.start_worker("worker-1", env)
    await asyncio.sleep(3 * FLOOR_S)  # every bulk polled once: the baseline
    refs = [{"slug": SLUG, "import_id": f"imp-{n}", "bulk_id": n + 1} for n in range(bulks)]
    async with SimulatorControl(stack.simulator_url) as control:
        started = time.time()
        await control.start_scenario(
            "random_flips", bulks=refs, rate=rate, duration_s=seconds, finish_p=0.3, seed=20261127
        )
        await asyncio.sleep(seconds + 3 * FLOOR_S)
        flips = [f for f in await control.all_flips() if f.t >= started and f.source == "scenario"]
        served = await control.all_requests()
    async with httpx.AsyncClient(base_url=receiver, timeout=60) as client:
        received = (await client.get("/_control/requests", params={"path": RECEIVER_PATH})).json()
    return measure(flips, served, received, bulks=bulks, rate=rate, seconds=seconds)


def measure(
    flips: list[Any], served: list[Any], received: list[dict[str, Any]], **params: Any
) -> dict[str, Any]:
    shown: dict[tuple[int, str], list[float]] = {}
    for request in served:
        for bulk_id, status in request.shown.items():
            shown.setdefault((int(bulk_id), status), []).append(request.t)
    arrivals: dict[tuple[int, str], list[float]] = {}
    for item in received:
        data = msgspec.json.decode(item["body"])["data"]
        if data.get("bulk_id") is not None and item["verified"]:
            arrivals.setdefault((data["bulk_id"], data["status"]), []).append(item["at"])
    total: list[float] = []
    own: list[float] = []
    overtaken = missing = returned = 0
    by_bulk: dict[int, list[Any]] = {}
    for flip in flips:
        by_bulk.setdefault(flip.bulk_id, []).append(flip)
    for bulk_flips in by_bulk.values():
        bulk_flips.sort(key=lambda f: f.t)
        observed_status = bulk_flips[0].from_
        for index, flip in enumerate(bulk_flips):
            next_t = bulk_flips[index + 1].t if index + 1 < len(bulk_flips) else float("inf")
            seen = next((t for t in shown.get((flip.bulk_id, flip.to), []) if flip.t <= t < next_t), None)
            if seen is None:
                overtaken += 1  # changed again before any poll saw it: not observable
                continue
            if flip.to == observed_status:
                # Back to the status the last poll showed, the change between unseen (A → B → A):
                # to the bridge nothing changed, and nothing is announced.
                returned += 1
                continue
            observed_status = flip.to
            got = next((t for t in arrivals.get((flip.bulk_id, flip.to), []) if t >= seen), None)
            if got is None:
                missing += 1
                continue
            total.append(got - flip.t)
            own.append(got - seen)
    return {
        **params,
        "poll_floor_s": FLOOR_S,
        "flips": len(flips),
        "observed_flips": len(total) + missing,
        "overtaken_before_a_poll": overtaken,
        "returned_to_the_status_last_seen": returned,
        "not_delivered": missing,
        "total": summary_ms(total),
        "own_part": summary_ms(own),
        "samples_total_s": [round(v, 4) for v in total],
        "samples_own_s": [round(v, 4) for v in own],
    }
