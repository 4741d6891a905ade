"""Scenario 2: SIGTERM to a worker under load; it drains within ``BRIDGE_WORKER_DRAIN_S``.

Two workers; webhooks and Slack answer slowly, so deliveries are in flight. Each worker in turn
gets SIGTERM mid-load: it must finish or hand back its polls and jobs and exit (code 0) within
the drain window, and is then started again. Nothing may be lost and nothing sent twice.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from typing import Final

from chaos.model import Outcome, RunContext, Size
from chaos.stack import Rig, rig, verify

WORKERS: Final = ("worker-1", "worker-2")
DRAIN_S: Final = 4.0
EXIT_TOLERANCE_S: Final = 1.0
"""Interpreter teardown after the drain (closing sockets, flushing logs)."""
SINK_DELAY_S: Final = 0.8
"""Every webhook and Slack post takes this long: SIGTERM finds deliveries running."""
BURST: Final = 14
"""Bulks changed at once just before each SIGTERM."""
BURST_TO_SIGTERM_S: Final = 0.8
"""Within a poll interval (1 s) and a sink's delay of the burst: most of it is committed and the
deliveries of the changes seen first are still running (later than this, a fast delivery path
had often finished them all)."""
SINK_SLOW_COUNT: Final = 5_000
TO_COMPLETE: Final = re.compile(r"deliveries: shutdown on SIGTERM .* (\d+) to be completed")
SEED: Final = 20261128
SHORT: Final = {"imports": 6, "seconds": 12.0}
FULL: Final = {"imports": 20, "seconds": 60.0}


async def _terminate(r: Rig, name: str) -> tuple[float, int | None]:
    """SIGTERM by PID; seconds until the process is gone, and its exit code."""
    proc = r.stack.procs[name]
    assert proc.popen is not None
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.popen.wait)
    return time.monotonic() - started, code


async def run(ctx: RunContext, size: Size) -> Outcome:
    outcome = Outcome("graceful")
    shape = SHORT if size.short else FULL
    imports, seconds = int(shape["imports"]), shape["seconds"]
    env = {"BRIDGE_WORKER_DRAIN_S": str(DRAIN_S)}
    async with rig(ctx, "graceful", imports=imports, seed=SEED, gap_max_s=seconds / 3, env=env) as r:
        await r.stack.slow_sinks(SINK_DELAY_S, SINK_SLOW_COUNT)
        for name in WORKERS:
            r.stack.start_worker(name)
        outcome.figures["setup (processes, watches, first polls)"] = f"{await r.baseline():.1f} s"
        load = asyncio.get_running_loop().create_task(r.load.run(seconds))
        exits: list[tuple[str, float, int | None]] = []
        burst = 0
        try:
            began = time.monotonic()
            for index, name in enumerate(WORKERS):
                at = began + seconds * (index + 1) / (len(WORKERS) + 1)
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                burst += await r.load.burst(BURST)
                await asyncio.sleep(BURST_TO_SIGTERM_S)  # polled, committed, deliveries running
                took, code = await _terminate(r, name)
                exits.append((name, took, code))
                r.stack.start_worker(name)
            await load
        finally:
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
        settled, evidence = await r.settled_evidence()
        outcome.figures.update(
            {
                "imports x bulks": f"{imports} x 5",
                "load seconds": seconds,
                "drain window (BRIDGE_WORKER_DRAIN_S)": DRAIN_S,
            }
        )
        for name, took, code in exits:
            outcome.figures[f"{name}: exit after SIGTERM"] = f"{took:.2f} s, code {code}"
        lines = r.stack.output_of(*WORKERS)
        running = [int(m.group(1)) for line in lines if (m := TO_COMPLETE.search(line))]
        outcome.figures["bulks changed just before the SIGTERMs"] = burst
        outcome.figures["deliveries running at SIGTERM"] = " + ".join(str(n) for n in running) or "?"
        outcome.check("SIGTERM found deliveries running", sum(running) > 0, f"{sum(running)} deliveries")
        verify(outcome, evidence, strict_slack=True)
        outcome.check(
            "each worker exited (code 0) within the drain window",
            all(code == 0 and took <= DRAIN_S + EXIT_TOLERANCE_S for _, took, code in exits),
            ", ".join(f"{n} {t:.2f} s code {c}" for n, t, c in exits),
        )
        duplicates = outcome.figures["webhook duplicates (same id)"]
        outcome.check("nothing sent twice (webhooks)", duplicates == 0, str(duplicates))
        outcome.figures["settled after the load"] = settled
    return outcome
