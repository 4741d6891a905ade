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

The delay a poller at the floor gives a flip is where the flip falls in its poll cycle, so one
run's median carries noise of its own: with ~2,400 flips its standard error is about 0.05 s for
each poller. A full run therefore plays :data:`SEEDS` one after another and pools their delays,
and reports the difference of the medians (bridge minus naive) with a bootstrap 95 % interval
(:func:`median_difference`), so "no worse" is read from a figure whose noise is known.

Request gap: between two requests for the same URL the poller paces (the import endpoint for the
bridge, each bulk for the naive poller), as the simulator saw them arrive; "busy" gaps follow an
answer that showed a bulk MPC was working on, when both pollers should ask at the floor. The same
gaps are also read from a capture of the loopback interface where ``tcpdump`` can run
(:mod:`bench.wire`): the simulator stamps a request when it reads it, which under load can be a
few milliseconds after it arrived (tens in MPC time), the kernel when it arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from bench import wire
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
SEEDS: Final = (20_261_127, 20_261_206, 20_261_207)
"""Scenarios a full run plays, pooled; a quick run plays the first."""
BOOTSTRAP_RESAMPLES: Final = 2000
BOOTSTRAP_SEED: Final = 1
TERMINAL: Final = ("finished", "failed")
REQUEST_LOG: Final = 2_000_000


def scenario_params(imports: int, bulks: int, seed: int) -> dict[str, Any]:
    return {
        "imports": imports,
        "bulks_per_import": bulks,
        "start_spread_s": 0.0,
        "time_scale": TIME_SCALE,
        "seed": seed,
        "slugs": ["bench-club"],
    }


async def _wait_done(control: SimulatorControl, scenario_id: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await control.scenario(scenario_id)).state != "running":
            return
        await asyncio.sleep(0.5)


async def run_bridge(stack: Stack, imports: int, bulks: int, seed: int) -> Measured:
    stack.start_redis()
    stack.start_simulator("--request-log", str(REQUEST_LOG))
    _start_capture(stack)
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
        status = await control.start_scenario("realistic", **scenario_params(imports, bulks, seed))
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
    result.wire_gaps = _wire_gaps(stack, "import")
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


async def run_naive(stack: Stack, imports: int, bulks: int, seed: int) -> Measured:
    stack.start_simulator("--request-log", str(REQUEST_LOG))
    _start_capture(stack)
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
        status = await control.start_scenario("realistic", **scenario_params(imports, bulks, seed))
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
        result = await _measure(control, paced="bulk")
    result.wire_gaps = _wire_gaps(stack, "bulk")
    return result


def _start_capture(stack: Stack) -> None:
    if wire.can_capture():
        port = int(stack.simulator_url.rsplit(":", 1)[1])
        stack.procs["capture"] = wire.start_capture(
            port, stack.workdir / "upstream.pcap", stack.workdir / "tcpdump.log"
        )


def _wire_gaps(stack: Stack, paced: PathKind) -> list[float] | None:
    """Gaps (real seconds) between requests for the same paced URL, as captured on the wire."""
    capture = stack.procs.pop("capture", None)
    if capture is None:
        return None
    capture.stop()
    arrivals: dict[str, list[float]] = {}
    for t, path in wire.get_requests((stack.workdir / "upstream.pcap").read_bytes()):
        if ("/bulks/" in path) == (paced == "bulk") and "/members/imports/" in path:
            arrivals.setdefault(path, []).append(t)
    return [
        (after - before) * TIME_SCALE
        for times in arrivals.values()
        for before, after in itertools.pairwise(sorted(times))
    ]


@dataclass
class Measured:
    """One poller's runs: its requests, and the raw delays and gaps (real seconds) to pool."""

    requests: int = 0
    completed: int = 0
    transitions: int = 0
    delays: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    busy_gaps: list[float] = field(default_factory=list)
    wire_gaps: list[float] | None = None
    """As captured on loopback; ``None`` where no capture could be taken."""

    def add(self, other: Measured) -> None:
        self.requests += other.requests
        self.completed += other.completed
        self.transitions += other.transitions
        self.delays += other.delays
        self.gaps += other.gaps
        self.busy_gaps += other.busy_gaps
        if other.wire_gaps is not None:
            self.wire_gaps = (self.wire_gaps or []) + other.wire_gaps

    def summary(self) -> dict[str, Any]:
        delays, gaps, busy = sorted(self.delays), self.gaps, sorted(self.busy_gaps)
        return {
            "requests": self.requests,
            "completed_bulks": self.completed,
            "requests_per_completed_bulk": round(self.requests / max(self.completed, 1), 2),
            "transitions": self.transitions,
            "observed_transitions": len(delays),
            "median_detection_delay_s": round(statistics.median(delays), 3) if delays else None,
            "p90_detection_delay_s": round(delays[int(0.9 * (len(delays) - 1))], 2) if delays else None,
            "min_request_gap_s": round(min(gaps), 3) if gaps else None,
            "gaps_below_floor": sum(gap < MPC_FLOOR_S for gap in gaps),
            "request_gaps": len(gaps),
            "median_busy_request_gap_s": round(statistics.median(busy), 3) if busy else None,
            "wire_request_gaps": None if self.wire_gaps is None else len(self.wire_gaps),
            "min_wire_request_gap_s": round(min(self.wire_gaps), 4) if self.wire_gaps else None,
            "wire_gaps_below_floor": (
                None if self.wire_gaps is None else sum(gap < MPC_FLOOR_S for gap in self.wire_gaps)
            ),
            "p90_busy_request_gap_s": round(busy[int(0.9 * (len(busy) - 1))], 3) if busy else None,
        }


def median_difference(
    a: list[float], b: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """``median(a) - median(b)`` and its bootstrap 95 % interval (percentile method, both
    samples resampled independently with a seeded generator)."""
    rng = random.Random(seed)
    point = statistics.median(a) - statistics.median(b)
    draws = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(resamples)
    )
    return point, draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]


def _request_gaps(served: list[RequestLogEntry], paced: PathKind, into: Measured) -> None:
    """Gaps (real seconds) between consecutive arrivals of requests for the same paced URL."""
    arrivals: dict[str, list[RequestLogEntry]] = {}
    for request in served:
        if request.kind == paced:
            arrivals.setdefault(request.path, []).append(request)
    gaps, busy = into.gaps, into.busy_gaps
    for entries in arrivals.values():
        entries.sort(key=lambda e: e.t_mono - e.duration_s)
        for before, after in itertools.pairwise(entries):
            gap = (after.t_mono - after.duration_s - (before.t_mono - before.duration_s)) * TIME_SCALE
            gaps.append(gap)
            if any(status in ACTIVE_STATUSES for status in before.shown.values()):
                busy.append(gap)


async def _measure(control: SimulatorControl, *, paced: PathKind) -> Measured:
    flips = [f for f in await control.all_flips() if f.source == "scenario" and f.from_ is not None]
    served = await control.all_requests()
    shown: dict[tuple[int, str], list[float]] = {}
    for request in served:
        for bulk_id, status in request.shown.items():
            shown.setdefault((int(bulk_id), status), []).append(request.t)
    by_bulk: dict[int, list[Any]] = {}
    for flip in flips:
        by_bulk.setdefault(flip.bulk_id, []).append(flip)
    for bulk_flips in by_bulk.values():
        bulk_flips.sort(key=lambda f: f.t)
    completed = sum(bulk_flips[-1].to in TERMINAL for bulk_flips in by_bulk.values())
    measured = Measured(requests=len(served), completed=completed, transitions=len(flips))
    delays = measured.delays
    for bulk_flips in by_bulk.values():
        for index, flip in enumerate(bulk_flips):
            next_t = bulk_flips[index + 1].t if index + 1 < len(bulk_flips) else float("inf")
            seen = next((t for t in shown.get((flip.bulk_id, flip.to), []) if flip.t <= t < next_t), None)
            if seen is not None:
                delays.append((seen - flip.t) * TIME_SCALE)
    _request_gaps(served, paced, measured)
    return measured


async def run(bridge_stack: Stack, *, imports: int, bulks: int, seeds: tuple[int, ...]) -> dict[str, Any]:
    """Play each seed twice (bridge, then naive poller), each in a stack of its own, and pool."""
    bridge, naive = Measured(), Measured()
    per_seed: list[dict[str, Any]] = []
    for n, seed in enumerate(seeds):
        if n == 0:
            one_bridge = await run_bridge(bridge_stack, imports, bulks, seed)
            bridge_stack.close()
        else:
            with stack() as bridge_stack_n:
                one_bridge = await run_bridge(bridge_stack_n, imports, bulks, seed)
        with stack() as naive_stack:
            one_naive = await run_naive(naive_stack, imports, bulks, seed)
        per_seed.append(
            {
                "seed": seed,
                "bridge_median_detection_delay_s": one_bridge.summary()["median_detection_delay_s"],
                "naive_median_detection_delay_s": one_naive.summary()["median_detection_delay_s"],
            }
        )
        bridge.add(one_bridge)
        naive.add(one_naive)
    b, nv = bridge.summary(), naive.summary()
    point, low, high = median_difference(bridge.delays, naive.delays)
    return {
        "imports": imports,
        "bulks_per_import": bulks,
        "time_scale": TIME_SCALE,
        "seeds": list(seeds),
        "bridge": b,
        "naive_5s_poller": nv,
        "per_seed": per_seed,
        "median_delay_difference_s": round(point, 3),
        "median_delay_difference_ci95_s": [round(low, 3), round(high, 3)],
        "request_ratio": round(b["requests_per_completed_bulk"] / nv["requests_per_completed_bulk"], 3),
    }
