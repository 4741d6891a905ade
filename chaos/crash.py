"""Scenario 1: workers killed at random while imports progress; nothing lost, nothing twice.

Three workers; every 1-3 s one of them gets SIGKILL and is started again, while the simulator's
bulks change at random instants. Then every change must be in its watch's timeline once, every
event must have reached the webhook receiver (verified; duplicates only under the same
``webhook-id``) and its Slack thread (duplicates at most 0.5 %), and every card must show the
simulator's final state.
"""

from __future__ import annotations

import asyncio
import random
from typing import Final

from chaos.model import Outcome, RunContext, Size
from chaos.stack import Rig, rig, verify

WORKERS: Final = 3
KILL_EVERY_S: Final = (1.0, 3.0)
SEED: Final = 20261127
SHORT: Final = {"imports": 14, "seconds": 27.0}
"""About 270 events: 0.5 % of them allows one duplicate Slack reply, as the full size does."""
FULL: Final = {"imports": 50, "seconds": 180.0}


async def _killer(r: Rig, names: list[str], rng: random.Random, kills: list[int]) -> None:
    while True:
        await asyncio.sleep(rng.uniform(*KILL_EVERY_S))
        name = rng.choice(names)
        r.stack.kill(name)
        r.stack.start_worker(name)
        kills.append(1)


async def run(ctx: RunContext, size: Size) -> Outcome:
    outcome = Outcome("crash")
    shape = SHORT if size.short else FULL
    imports, seconds = int(shape["imports"]), shape["seconds"]
    async with rig(ctx, "crash", imports=imports, seed=SEED, gap_max_s=seconds / 3) as r:
        names = [f"worker-{n}" for n in range(1, WORKERS + 1)]
        for name in names:
            r.stack.start_worker(name)
        outcome.figures["setup (processes, watches, first polls)"] = f"{await r.baseline():.1f} s"
        kills: list[int] = []
        killer = asyncio.get_running_loop().create_task(_killer(r, names, random.Random(SEED), kills))
        try:
            await r.load.run(seconds)
        finally:
            killer.cancel()
            await asyncio.gather(killer, return_exceptions=True)
        for name in names:  # a worker killed last may still be starting
            if not r.stack.procs[name].alive():
                r.stack.start_worker(name)
        settled, evidence = await r.settled_evidence()
        outcome.figures.update(
            {"imports x bulks": f"{imports} x 5", "load seconds": seconds, "workers killed": len(kills)}
        )
        verify(outcome, evidence, strict_slack=False)
        outcome.figures["settled after the load"] = settled
    return outcome
