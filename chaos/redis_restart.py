"""Scenario 3: Redis (AOF, ``appendfsync everysec``) restarted twice under load.

Redis gets SIGTERM and is started again on the same port with the same directory, twice, while
bulks change (some during the outage) and webhook retries are pending (the receiver answers 503
just before). While Redis is down the API answers 503 on ``/readyz``; it recovers by itself, and
the workers reconnect without a restart (the same PIDs are alive at the end), and a worker
started during an outage waits for Redis instead of exiting. Every watch, event,
subscription and pending delivery survives, and changes made during an outage are announced
after it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis

from bridge.redis_url import OUTAGE_WAIT_MAX_S
from bridge.store import keys
from bridge_tools.processes import LOOPBACK
from chaos.model import Outcome, RunContext, Size
from chaos.stack import FLIP_GAP_MIN_S, START_TIMEOUT_S, Rig, rig, until, verify

WORKERS: Final = ("worker-1", "worker-2")
LATE_WORKER: Final = "worker-3"
"""Started while Redis is down (the last outage)."""
RESTARTS: Final = 2
SEED: Final = 20261129
SHORT: Final = {"imports": 6, "seconds": 27.0, "outage_s": 3.0}
FULL: Final = {"imports": 20, "seconds": 90.0, "outage_s": 6.0}
BURST: Final = 6
"""Bulks changed just before each outage: their deliveries are pending when Redis stops."""
FAILING_ANSWERS: Final = 3 * BURST
"""Webhooks answered 503 just before each outage: their retries are pending when Redis stops."""
BURST_TO_STOP_S: Final = 1.2
READYZ_EVERY_S: Final = 0.25


@dataclass
class Stored:
    """What Redis holds that must survive a restart."""

    watches: set[str] = field(default_factory=set)
    subscriptions: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    """Outbox entries ``event|destination``: deliveries not done yet."""


async def stored(r: Rig) -> Stored:
    found = Stored()
    page = await r.api.call("GET", "/v1/watches?limit=500")
    found.watches = {w["id"] for w in page["items"]}
    subs = await r.api.call("GET", "/v1/subscriptions")
    found.subscriptions = {s["id"] for s in subs["items"]}
    for wid in r.watches:
        found.events |= {e["event_id"] for e in await r.api.timeline(wid)}
    client: Any = Redis(host=LOOPBACK, port=r.stack.redis_port)
    try:
        found.pending = {m.decode() for m in await client.zrange(keys.OUTBOX, 0, -1)}
    finally:
        await client.aclose()
    return found


async def survived(r: Rig, before: Stored) -> list[str]:
    """What was stored before the restart and is gone after it (a pending delivery may be done)."""
    after = await stored(r)
    gone = [f"watch {w}" for w in before.watches - after.watches]
    gone += [f"subscription {s}" for s in before.subscriptions - after.subscriptions]
    gone += [f"event {e}" for e in before.events - after.events]
    client: Any = Redis(host=LOOPBACK, port=r.stack.redis_port)
    try:
        for entry in before.pending - after.pending:
            if not await client.exists(keys.DELIVERED_PREFIX + entry):
                gone.append(f"pending delivery {entry}")
    finally:
        await client.aclose()
    return gone


@dataclass
class Restart:
    down_s: float = 0.0
    redis_exit: int | None = None
    readyz: list[int] = field(default_factory=list)
    """``/readyz`` answers while Redis was down (0: no answer)."""
    recovered_s: float = 0.0
    """From Redis answering again to ``/readyz`` 200."""
    flips_during: int = 0
    pending: int = 0
    gone: list[str] = field(default_factory=list)


async def restart_redis(r: Rig, outage_s: float, start_worker: str | None = None) -> Restart:
    done = Restart()
    await r.stack.failing_receiver(503, FAILING_ANSWERS)
    await r.load.burst(BURST)
    await asyncio.sleep(BURST_TO_STOP_S)
    before = await stored(r)
    done.pending = len(before.pending)
    flips = r.load.flips
    started = time.monotonic()
    done.redis_exit = r.stack.stop_redis()
    if start_worker is not None:
        r.stack.start_worker(start_worker)  # it must wait for Redis, not exit
    while time.monotonic() - started < outage_s:
        done.readyz.append(await r.stack.readyz())
        await asyncio.sleep(READYZ_EVERY_S)
    r.stack.start_redis(aof=True)
    await r.stack.redis_up()
    done.down_s = time.monotonic() - started
    done.flips_during = r.load.flips - flips
    done.recovered_s = await until(r.stack.ready, START_TIMEOUT_S, "/readyz after the restart")
    done.gone = await survived(r, before)
    return done


async def run(ctx: RunContext, size: Size) -> Outcome:
    outcome = Outcome("redis")
    shape = SHORT if size.short else FULL
    imports, seconds, outage_s = int(shape["imports"]), shape["seconds"], shape["outage_s"]
    # A bulk changes at most once around an outage, and not again before the workers are back.
    gap_min = outage_s + OUTAGE_WAIT_MAX_S + FLIP_GAP_MIN_S
    async with rig(
        ctx, "redis", imports=imports, seed=SEED, gap_max_s=seconds / 2, gap_min_s=gap_min, aof=True
    ) as r:
        pids = {name: r.stack.start_worker(name).pid for name in WORKERS}
        outcome.figures["setup (processes, watches, first polls)"] = f"{await r.baseline():.1f} s"
        load = asyncio.get_running_loop().create_task(r.load.run(seconds))
        restarts: list[Restart] = []
        late_pid = 0
        try:
            began = time.monotonic()
            for index in range(RESTARTS):
                at = began + seconds * (index + 1) / (RESTARTS + 1)
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                starts = LATE_WORKER if index == RESTARTS - 1 else None
                restarts.append(await restart_redis(r, outage_s, starts))
                if starts is not None:
                    late_pid = r.stack.procs[starts].pid
            await load
        finally:
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
        settled, evidence = await r.settled_evidence()
        outcome.figures.update(
            {"imports x bulks": f"{imports} x 5", "load seconds": seconds, "Redis restarts": len(restarts)}
        )
        for n, done in enumerate(restarts, 1):
            outcome.figures[f"restart {n}: down"] = f"{done.down_s:.1f} s (redis exit {done.redis_exit})"
            outcome.figures[f"restart {n}: /readyz while down"] = ",".join(
                sorted({str(s) for s in done.readyz})
            )
            outcome.figures[f"restart {n}: /readyz 200 again after"] = f"{done.recovered_s:.2f} s"
            outcome.figures[f"restart {n}: changes during the outage"] = done.flips_during
            outcome.figures[f"restart {n}: pending deliveries at the stop"] = done.pending
        details = verify(outcome, evidence, strict_slack=False)
        outcome.check(
            "/readyz 503 while Redis was down",
            all(done.readyz and set(done.readyz) == {503} for done in restarts),
            "; ".join(",".join(map(str, sorted(set(d.readyz)))) for d in restarts),
        )
        pending = sum(d.pending for d in restarts)
        outcome.check("deliveries were pending at a stop", pending > 0, str(pending))
        outcome.check("/readyz 200 again by itself", all(d.recovered_s >= 0 for d in restarts))
        gone = [g for d in restarts for g in d.gone]
        outcome.check(
            "every watch, event, subscription and pending delivery survived",
            not gone,
            "; ".join(gone[:3]) or "0",
        )
        alive = {
            name: r.stack.procs[name].alive() and r.stack.procs[name].pid == pid for name, pid in pids.items()
        }
        outcome.check(
            "workers reconnected without a restart (same PIDs alive)", all(alive.values()), str(alive)
        )
        late_proc = r.stack.procs.get(LATE_WORKER)
        late_alive = late_proc is not None and late_proc.alive() and late_proc.pid == late_pid
        outcome.check(
            "a worker started during an outage waited for Redis (alive, same PID)",
            late_alive,
            f"{LATE_WORKER} alive: {late_alive}",
        )
        during = sum(d.flips_during for d in restarts)
        outcome.check(
            "changes during the outages announced after them",
            during > 0 and not details["lost"],
            f"{during} changes, {len(details['lost'])} lost",
        )
        outcome.figures["settled after the load"] = settled
    return outcome
