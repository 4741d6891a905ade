"""A load client at fixed concurrency: ``python -m bench.load``.

aiohttp on uvloop (about 0.1 ms of CPU per request, so it is not what limits a Python server),
in its own process so its CPU is its own. Routes:

- ``livez``: ``GET /livez``;
- ``create``: ``POST /v1/watches``, a distinct watch each time (a fresh ``import_id``); the ids
  created are written to ``--ids-out``, one per line;
- ``show``: ``GET /v1/watches/{id}`` over the ids in ``--ids``, in turn;
- ``post``: ``POST --url`` with the bodies of ``--bodies`` (one per line), in turn.

It warms up for ``--warmup`` seconds (connections opened, nothing counted), prints ``START`` on
stdout, measures for ``--seconds`` (or until ``--count`` requests, whichever comes first), and
prints one JSON line: requests, seconds, errors, statuses, latency percentiles, and the CPU time
this process used while measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import uvloop

START_LINE: Final = "START"
IMPORT_ID_PREFIX: Final = "bench-imp-"
CLUB: Final = "bench-club"
WATCHED_BULKS: Final = [11, 12]
"""A watch on two named bulks, like the README's example."""
ROUTES: Final = ("livez", "create", "show", "post")


def percentile_ms(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted seconds, in ms."""
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index] * 1000, 2)


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.counting = False
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.warmup_requests = 0
        self.created: list[str] = []
        self._serial = itertools.count()
        self._ids: Iterator[str] = itertools.cycle(_lines(args.ids)) if args.ids else iter(())
        self._bodies: Iterator[bytes] = (
            itertools.cycle([line.encode() for line in _lines(args.bodies)]) if args.bodies else iter(())
        )

    def request(self, session: aiohttp.ClientSession) -> Callable[[], Coroutine[Any, Any, int]]:
        base = self.args.base
        route = self.args.route

        async def livez() -> int:
            async with session.get(f"{base}/livez") as response:
                await response.read()
                return response.status

        async def create() -> int:
            body = {
                "loyalty_club_slug": CLUB,
                "import_id": f"{IMPORT_ID_PREFIX}{self.args.tag}-{next(self._serial)}",
                "bulk_ids": WATCHED_BULKS,
            }
            async with session.post(f"{base}/v1/watches", json=body) as response:
                data = await response.json()
                if response.status == 201 and self.counting:
                    self.created.append(data["id"])
                return response.status

        async def show() -> int:
            async with session.get(f"{base}/v1/watches/{next(self._ids)}") as response:
                await response.read()
                return response.status

        async def post() -> int:
            body = next(self._bodies)
            headers = {"Content-Type": "application/json"}
            async with session.post(self.args.url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        return {"livez": livez, "create": create, "show": show, "post": post}[route]

    async def run(self) -> dict[str, Any]:
        args = self.args
        headers = dict(h.split(": ", 1) for h in args.header)
        connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=args.force_close)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
            call = self.request(session)
            stop_at = time.monotonic() + args.warmup
            remaining = args.count

            async def runner() -> None:
                nonlocal remaining
                while time.monotonic() < stop_at and remaining != 0:
                    if self.counting and remaining > 0:
                        remaining -= 1
                    started = time.perf_counter()
                    try:
                        status = await call()
                    except (aiohttp.ClientError, TimeoutError, ValueError):
                        status = 0
                    elapsed = time.perf_counter() - started
                    if not self.counting:
                        self.warmup_requests += 1
                        continue
                    if status == 0:
                        self.errors += 1
                    else:
                        self.statuses[status] += 1
                        self.latencies.append(elapsed)

            if args.warmup > 0:
                await asyncio.gather(*(runner() for _ in range(args.concurrency)))
            self.counting = True
            print(START_LINE, flush=True)
            cpu0, t0 = time.process_time(), time.monotonic()
            stop_at = t0 + args.seconds
            await asyncio.gather(*(runner() for _ in range(args.concurrency)))
            seconds = time.monotonic() - t0
            cpu = time.process_time() - cpu0
        ordered = sorted(self.latencies)
        return {
            "route": args.route,
            "concurrency": args.concurrency,
            "keep_alive": not args.force_close,
            "requests": len(ordered),
            "errors": self.errors,
            "warmup_requests": self.warmup_requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "seconds": round(seconds, 3),
            "requests_per_s": round(len(ordered) / seconds, 1),
            "p50_ms": percentile_ms(ordered, 50),
            "p99_ms": percentile_ms(ordered, 99),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else float("nan"),
            "client_cpu_percent": round(100 * cpu / seconds, 1),
            "client_cpu_ms_per_request": round(1000 * cpu / max(1, len(ordered)), 3),
        }


def measure(args: Sequence[str], pids: Mapping[str, int]) -> tuple[dict[str, Any], dict[str, float]]:
    """Run this client (``args``: its command line after ``python -m bench.load``) from the bench;
    its result, and the CPU the processes in ``pids`` used over its measuring window."""
    from bench.harness import CpuMeter  # the client process itself does not need it

    meter = CpuMeter(dict(pids))
    with subprocess.Popen(
        [sys.executable, "-m", "bench.load", *args], stdout=subprocess.PIPE, text=True
    ) as client:
        assert client.stdout is not None
        line = client.stdout.readline().strip()
        if line != START_LINE:
            raise RuntimeError(f"bench.load did not start: {line!r}")
        meter.start()
        result: dict[str, Any] = json.loads(client.stdout.readline())
        cpu = meter.stop()
        if client.wait() != 0:
            raise RuntimeError(f"bench.load {args[0]} exited with {client.returncode}")
    return result, cpu


def _lines(path: str) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("route", choices=ROUTES)
    parser.add_argument("--base", default="", help="the API's base URL")
    parser.add_argument("--url", default="", help="for post: where to")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=-1, help="stop after this many requests (-1: no limit)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--tag", default="0", help="for create: makes import ids distinct across runs")
    parser.add_argument("--ids", default="", help="for show: a file of watch ids")
    parser.add_argument("--ids-out", default="", help="for create: where to write the ids created")
    parser.add_argument("--bodies", default="", help="for post: a file of bodies, one per line")
    parser.add_argument("--force-close", action="store_true", help="a new connection for every request")
    args = parser.parse_args()
    load = Load(args)
    result = uvloop.run(load.run())
    if args.ids_out:
        Path(args.ids_out).write_text("\n".join(load.created))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
