"""``make chaos``: every guarantee scenario at full size, a table of figures, ``chaos/results.json``.

    python -m chaos [--short] [--only crash,graceful,...] [--worker-entry bridge|arq] [--keep]

``--short`` is the CI version (≤ 3 minutes in all), run by ``tests/chaos``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from bridge_tools.redis_binary import require_redis_server
from chaos.model import WORKER_ENTRIES, Outcome, RunContext, Size
from chaos.secret_scan import scan

SCENARIOS: Final = {
    "crash": "chaos.crash",
    "graceful": "chaos.graceful",
    "redis": "chaos.redis_restart",
    "upstream": "chaos.upstream_faults",
    "sinks": "chaos.sink_faults",
    "badinput": "chaos.bad_input",
}
"""Scenario name → module with ``async def run(ctx, size) -> Outcome``."""


def table(outcomes: list[Outcome]) -> str:
    rows = [("scenario", "figure / check", "value")]
    for outcome in outcomes:
        for key, value in outcome.figures.items():
            rows.append((outcome.scenario, key, str(value)))
        for check in outcome.checks:
            verdict = "PASS" if check.passed else "FAIL"
            rows.append((outcome.scenario, check.name, f"{verdict} {check.detail}".rstrip()))
        rows.append((outcome.scenario, "wall time", f"{outcome.seconds:.1f} s"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)


async def run_all(names: list[str], size: Size, workdir: Path, worker_entry: str = "bridge") -> list[Outcome]:
    ctx = RunContext(workdir, worker_entry=worker_entry)
    outcomes: list[Outcome] = []
    for name in names:
        module = importlib.import_module(SCENARIOS[name])
        started = time.monotonic()
        outcome: Outcome = await module.run(ctx, size)
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
        print(table([outcome]), flush=True)
    outcomes.append(scan(ctx))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the CI version (about 3 minutes)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument(
        "--worker-entry",
        choices=list(WORKER_ENTRIES),
        default="bridge",
        help="start workers as `bridge worker` or `arq workers.settings.WorkerSettings`",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    require_redis_server("chaos")
    workdir = Path(tempfile.mkdtemp(prefix="bridge-chaos-"))
    try:
        outcomes = asyncio.run(
            run_all(names, Size("short" if args.short else "full"), workdir, args.worker_entry)
        )
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n" + table(outcomes))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "scenario": o.scenario,
                        "figures": o.figures,
                        "checks": [c.__dict__ for c in o.checks],
                        "seconds": round(o.seconds, 1),
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    failed = [f"{o.scenario}: {c.name}" for o in outcomes for c in o.checks if not c.passed]
    print("\nALL PASSED" if not failed else "\nFAILED:\n  " + "\n  ".join(failed))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
