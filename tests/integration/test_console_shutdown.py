"""An API with console pages open still stops at once: its live streams end when SIGTERM comes
instead of holding the graceful drain to its deadline (a real ``bridge api`` process)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
from redis.asyncio import Redis

from bridge.exits import EXIT_OK
from bridge_tools.processes import LOOPBACK, Process, free_port
from tests.integration.conftest import API_KEY, eventually
from tests.integration.test_console import csrf_of
from tests.integration.test_shutdown import processes, wait_exit  # noqa: F401 - the fixture
from tests.integration.test_worker_process import worker_env

DRAIN_S = 8


async def test_open_console_streams_do_not_hold_the_drain(
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    processes: list[Process],  # noqa: F811
) -> None:
    env = worker_env(redis_url, "http://127.0.0.1:9") | {"BRIDGE_API_DRAIN_S": str(DRAIN_S)}
    port = free_port()
    api = Process(
        [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)],
        tmp_path / "api.log",
        env,
    ).start()
    processes.append(api)
    base = f"http://{LOOPBACK}:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def up() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, 30, "the API")
        form = await http.get("/ui/sign-in")
        signed = await http.post("/ui/sign-in", data={"csrf_token": csrf_of(form.text), "api_key": API_KEY})
        assert signed.status_code == 303, signed.text
        ended: list[float] = []

        async def hold() -> None:
            async with http.stream("GET", "/ui/stream") as stream:
                assert stream.status_code == 200
                async for _ in stream.aiter_bytes():
                    pass
            ended.append(time.monotonic())

        streams = [asyncio.create_task(hold()) for _ in range(3)]
        await asyncio.sleep(1.0)
        assert not any(s.done() for s in streams)
        code, took = await asyncio.to_thread(wait_exit, api, DRAIN_S + 10)
        await asyncio.gather(*streams, return_exceptions=True)
    assert code == EXIT_OK, api.output()[-3000:]
    assert took < DRAIN_S / 2, api.output()[-3000:]
    assert len(ended) == 3  # each stream ended cleanly, none was cut
