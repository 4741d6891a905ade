"""Bare GET loops, the baselines of the throughput figures: ``python -m bench.baselines``.

Each runs in its own process, on uvloop like the workers, at a given concurrency, over the same
URLs and headers the bridge sends, and prints ``{"requests": n, "seconds": s}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import httpx
import uvloop


async def _loop(
    fetch: Callable[[str], Coroutine[Any, Any, None]], urls: list[str], concurrency: int, seconds: float
) -> tuple[int, float]:
    done = 0
    deadline = time.monotonic() + seconds
    cycle = itertools.cycle(urls)

    async def runner() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await fetch(next(cycle))
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return done, time.monotonic() - started


async def run_httpx(
    urls: list[str], headers: dict[str, str], concurrency: int, seconds: float
) -> tuple[int, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers=headers, trust_env=False, timeout=30) as client:

        async def fetch(url: str) -> None:
            response = await client.get(url)
            response.read()

        return await _loop(fetch, urls, concurrency, seconds)


async def run_aiohttp(
    urls: list[str], headers: dict[str, str], concurrency: int, seconds: float
) -> tuple[int, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def fetch(url: str) -> None:
            async with session.get(url) as response:
                await response.read()

        return await _loop(fetch, urls, concurrency, seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=["httpx", "aiohttp"])
    parser.add_argument("--urls", required=True, help="a file with one URL per line")
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with open(args.urls) as handle:
        urls = [line.strip() for line in handle if line.strip()]
    headers = dict(h.split(": ", 1) for h in args.header)
    run = run_httpx if args.client == "httpx" else run_aiohttp
    requests, seconds = uvloop.run(run(urls, headers, args.concurrency, args.seconds))
    print(json.dumps({"requests": requests, "seconds": seconds}))


if __name__ == "__main__":
    main()
