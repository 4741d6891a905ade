"""The console live: how fast a change reaches a browser, and what open console pages cost the API.

One API process, one worker, the MPC simulator and a real redis-server, all on loopback; a
headless Chromium (the system's, through playwright) signed in to the console on the watches page.

1. ``GET /v1/watches/{id}`` under load (:mod:`bench.load`) with no console page open: the baseline
   (measured again at the end, after the streams closed; the baseline is the mean of both, so
   drift over the run shows and cancels);
2. ``streams`` console sessions are signed in and each opens the live stream (what a browser tab
   on the watches page holds open); the same load again, in the same run;
3. with those streams still open, ``flips`` bulks of a watched import are flipped one by one in
   the simulator (``waiting`` -> ``working``), and for each the time from the flip to the row
   changing in the browser is taken (a MutationObserver stamps the change in the page; both
   clocks are this machine's). This covers the whole way: the worker's next poll, the commit,
   the change note, the API's stream and htmx's swap. The poll interval is the simulator-facing
   part of it, so the bench runs with the tests' fast intervals (0.05 s to 0.2 s);
4. the console's own part alone: a change note published straight to Redis (the watch's
   ``updated_at`` moved forward first) to the row changing, ``flips`` times.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any, Final

import aiohttp
import httpx
import redis.asyncio as aioredis
from playwright.async_api import Page, async_playwright

from bench.api import run_load
from bench.harness import API_KEY, Stack
from bridge.store import keys
from bridge.store.changes import Change, encode_change
from bridge.store.redis_store import resolved

CHROMIUM: Final = "/usr/bin/chromium"
CLUB: Final = "console-bench"
IMPORT_ID: Final = "console-bench-import"
FLIP_TIMEOUT_S: Final = 15.0
FAST_POLLS: Final = {"BRIDGE_POLL_MIN_INTERVAL_S": "0.05", "BRIDGE_POLL_MAX_INTERVAL_S": "0.2"}
OBSERVER: Final = """
() => {
  window.__changes = [];
  const rows = document.getElementById("rows");
  new MutationObserver(() => {
    const bar = rows.querySelector("svg.bar");
    const time = rows.querySelector("time");
    window.__changes.push({
      at: performance.timeOrigin + performance.now(),
      label: bar ? bar.getAttribute("aria-label") : "",
      time: time ? time.textContent : "",
    });
  }).observe(rows, {childList: true, subtree: true, attributes: true});
}
"""


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
        "count": len(ordered),
    }


async def _session_cookie(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/ui/sign-in") as page:
        html = await page.text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token is not None
    async with http.post(
        f"{base}/ui/sign-in",
        data={"csrf_token": token.group(1), "api_key": API_KEY},
        allow_redirects=False,
    ) as answer:
        if answer.status != 303:
            raise RuntimeError(f"console sign-in answered {answer.status}")
        return answer.cookies["bridge_console"].value


async def _hold_stream(base: str, opened: asyncio.Event, counter: list[int]) -> None:
    """One console tab's live stream, held open (and read) until cancelled."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=None)) as http:
        await _session_cookie(http, base)
        async with http.get(f"{base}/ui/stream?club={CLUB}") as stream:
            if stream.status != 200:
                raise RuntimeError(f"stream answered {stream.status}")
            counter[0] += 1
            if counter[0] >= counter[1]:
                opened.set()
            async for _ in stream.content:
                pass


async def _wait_change(page: Page, count: int, deadline_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        changes = await page.evaluate("window.__changes.length")
        if changes >= count:
            found: dict[str, Any] = await page.evaluate(f"window.__changes[{count - 1}]")
            return found
        await asyncio.sleep(0.002)
    raise RuntimeError("the row did not change in time")


async def _flips(page: Page, stack: Stack, flips: int) -> list[float]:
    """Simulator flip -> row change, one bulk at a time."""
    taken: list[float] = []
    async with httpx.AsyncClient(base_url=f"{stack.simulator_url}/_control", timeout=10) as control:
        for n in range(flips):
            label = f"{n + 1} working"
            await page.evaluate("window.__changes = []")
            started = time.time()
            response = await control.patch(
                f"/imports/{CLUB}/{IMPORT_ID}/bulks/{n + 1}", json={"status": "working"}
            )
            response.raise_for_status()
            deadline = time.monotonic() + FLIP_TIMEOUT_S
            seen = 0
            while True:
                change = await _wait_change(page, seen + 1, deadline - time.monotonic())
                seen += 1
                if label in change["label"]:
                    taken.append(change["at"] / 1000.0 - started)
                    break
    return taken


async def _notes(page: Page, redis_port: int, watch_id: str, flips: int) -> list[float]:
    """Change note published to Redis -> row change (the console's own part)."""
    taken: list[float] = []
    client = aioredis.Redis(port=redis_port)
    try:
        for n in range(flips):
            updated_ms = int((time.time() + 3600 + n) * 1000)  # ahead of every bulk change
            await resolved(client.hset(keys.watch(watch_id), keys.W_UPDATED, str(updated_ms)))
            await page.evaluate("window.__changes = []")
            started = time.time()
            await client.publish(
                keys.CHANGES, encode_change(Change(kind="watch", watch_id=watch_id, club=CLUB))
            )
            change = await _wait_change(page, 1, FLIP_TIMEOUT_S)
            taken.append(change["at"] / 1000.0 - started)
    finally:
        await client.aclose()
    return taken


async def run(stack: Stack, *, flips: int = 50, streams: int = 50, seconds: float = 5.0) -> dict[str, Any]:
    stack.start_redis()
    stack.start_simulator()
    env = stack.bridge_env(**FAST_POLLS)
    stack.start_api(env)
    stack.start_worker("worker", env)
    async with httpx.AsyncClient(timeout=10) as http:
        bulks = [{"id": n + 1, "status": "waiting"} for n in range(flips)]
        answer = await http.put(
            f"{stack.simulator_url}/_control/imports/{CLUB}/{IMPORT_ID}", json={"bulks": bulks}
        )
        answer.raise_for_status()
        created = await http.post(
            f"{stack.api_url}/v1/watches",
            json={"loyalty_club_slug": CLUB, "import_id": IMPORT_ID},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        created.raise_for_status()
        watch_id: str = created.json()["id"]
    ids = stack.workdir / "console-watch-ids.txt"
    ids.write_text(f"{watch_id}\n")

    without = run_load(stack, "show", seconds, "--ids", str(ids))
    opened, counter = asyncio.Event(), [0, streams]
    holders = [asyncio.create_task(_hold_stream(stack.api_url, opened, counter)) for _ in range(streams)]
    try:
        await asyncio.wait_for(opened.wait(), 60)
        with_streams = await asyncio.to_thread(run_load, stack, "show", seconds, "--ids", str(ids))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = await browser.new_page(base_url=stack.api_url)
                await page.goto("/ui/sign-in")
                await page.get_by_label("API key").fill(API_KEY)
                await page.get_by_role("button", name="Sign in").click()
                await page.goto(f"/ui/watches?club={CLUB}")
                await page.wait_for_selector(f'tr[data-watch-id="{watch_id}"]')
                # The first poll discovers every bulk: wait until the row shows them all waiting.
                await page.wait_for_selector(f'svg.bar[aria-label="{flips} waiting"]', timeout=30_000)
                await page.evaluate(OBSERVER)
                await asyncio.sleep(1.0)  # the stream is connected
                flip_times = await _flips(page, stack, flips)
                note_times = await _notes(page, stack.redis_port, watch_id, flips)
            finally:
                await browser.close()
    finally:
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    without_after = run_load(stack, "show", seconds, "--ids", str(ids))
    baseline = (without["requests_per_s"] + without_after["requests_per_s"]) / 2
    return {
        "streams": streams,
        "simulator_flip_to_row": _ms(flip_times),
        "redis_note_to_row": _ms(note_times),
        "api_without_streams": without,
        "api_with_streams": with_streams,
        "api_without_streams_after": without_after,
        "ratio_with_to_without": round(with_streams["requests_per_s"] / baseline, 3),
    }
