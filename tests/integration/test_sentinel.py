"""Redis Sentinel: a real master, replica and Sentinel, the API and a worker as real processes.

A failover in the middle of polling must lose nothing: every status change the simulator makes
still becomes exactly one event, delivered, and the API answers again on its own.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.redis_url import connect
from bridge.store import keys
from bridge.store.redis_store import RedisStore
from bridge_tools.processes import LOOPBACK, Process, SentinelGroup, free_port, sentinel_group
from mpc_simulator import RunningSimulator, SimulatorControl
from tests.integration.conftest import API_KEY, SLUG, eventually
from tests.integration.test_worker_process import worker_env

pytestmark = pytest.mark.slow
IMPORT = "imp-sentinel"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    workdir = tmp_path / "sentinel"
    workdir.mkdir()
    with sentinel_group(workdir) as running:
        yield running


@pytest.fixture
async def store(group: SentinelGroup) -> AsyncIterator[RedisStore]:
    client = connect(group.url)
    try:
        yield RedisStore(client, retention_s=3600)
    finally:
        await client.aclose()


async def test_the_sentinel_url_reaches_the_master_and_follows_a_failover(
    group: SentinelGroup, store: RedisStore
) -> None:
    client = store.redis
    await client.set("before", "1")
    # Replication is asynchronous: only a write the replica has is sure to survive its promotion.
    assert await client.wait(1, 5000) == 1
    first = group.master_port()
    second = await asyncio.to_thread(group.failover)
    assert second != first
    # The pooled connection still points at the demoted master: the client finds the new one.
    await client.set("after", "2")
    assert await client.mget("before", "after") == [b"1", b"2"]
    info = await client.info("server")
    assert info["tcp_port"] == second


@pytest.mark.parametrize("how", ["failover", "kill"])
async def test_losing_the_master_during_polling_loses_no_event_and_the_api_recovers(
    how: str,
    group: SentinelGroup,
    store: RedisStore,
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
) -> None:
    env = worker_env(group.url, simulator.url)
    port = free_port()
    api = Process(
        [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)],
        tmp_path / "api.log",
        env,
    ).start()
    worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
    statuses: Counter[int] = Counter()
    try:
        async with httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{port}", headers=AUTH, timeout=30) as http:

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, 30, "the API to be ready")
            await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}, {"id": 3}])
            created = await http.post(
                "/v1/watches", json={"loyalty_club_slug": SLUG, "import_id": IMPORT, "bulk_ids": [1, 2, 3]}
            )
            assert created.status_code == 201, created.text
            watch_id = created.json()["id"]

            async def timeline() -> list[dict[str, Any]]:
                answer = await http.get(f"/v1/watches/{watch_id}/events", params={"limit": 100})
                if answer.status_code != 200:
                    return []
                items: list[dict[str, Any]] = answer.json()["items"]
                return items

            async def has(bulk_id: int, kind: str) -> bool:
                return any(
                    e["type"] == kind and e["data"].get("bulk_id") == bulk_id for e in await timeline()
                )

            stop_hammering = asyncio.Event()

            async def hammer() -> None:
                # The API through the failovers: every answer is a 200 or a clear 503, never a 500.
                while not stop_hammering.is_set():
                    try:
                        statuses[(await http.get(f"/v1/watches/{watch_id}")).status_code] += 1
                    except httpx.TransportError:
                        statuses[0] += 1
                    await asyncio.sleep(0.02)

            hammering = asyncio.create_task(hammer())
            await eventually(lambda: _polled(control), 20, "the worker's first poll")

            # A change, and the master goes away while the worker is polling it: asked to step down
            # (SENTINEL FAILOVER), or killed (the Sentinel notices after its down-after time).
            await control.patch_bulk(SLUG, IMPORT, 1, status="working")
            await asyncio.to_thread(group.failover if how == "failover" else group.kill_master)
            await eventually(lambda: has(1, "bulk.started"), 30, "bulk 1 started after losing the master")

            await control.patch_bulk(SLUG, IMPORT, 2, status="working")
            await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_created_number=3)
            if how == "failover":  # and back (a killed master left no replica to fail over to)
                await asyncio.to_thread(group.failover)
            await control.patch_bulk(SLUG, IMPORT, 3, status="working")
            await eventually(lambda: has(3, "bulk.started"), 30, "bulk 3 started after failover 2")

            await control.patch_bulk(SLUG, IMPORT, 2, status="finished", members_created_number=2)
            await control.patch_bulk(SLUG, IMPORT, 3, status="failed")
            await eventually(lambda: _completed(timeline), 30, "import.completed")
            stop_hammering.set()
            await hammering

            events = await timeline()
            watch = (await http.get(f"/v1/watches/{watch_id}")).json()
    finally:
        api.stop()
        worker_alive = worker.alive()
        worker.stop()

    assert worker_alive, worker.output()[-3000:]
    kinds = Counter((e["type"], e["data"].get("bulk_id")) for e in events)
    assert kinds == Counter(
        {
            ("bulk.started", 1): 1,
            ("bulk.finished", 1): 1,
            ("bulk.started", 2): 1,
            ("bulk.finished", 2): 1,
            ("bulk.started", 3): 1,
            ("bulk.failed", 3): 1,
            ("import.completed", None): 1,
        }
    ), events
    assert len({e["event_id"] for e in events}) == len(events)
    assert watch["state"] == "completed"
    assert set(statuses) <= {200, 503}, statuses
    event_ids = [e["event_id"] for e in events]
    await eventually(lambda: _all_delivered(store, event_ids), 30, "every event delivered to the log")
    assert await eventually(lambda: _outbox_empty(store), 30, "an empty outbox")
    assert "Traceback" not in worker.output(), worker.output()[-3000:]


async def _polled(control: SimulatorControl) -> bool:
    return bool((await control.requests()).items)


async def _completed(timeline: Any) -> bool:
    return any(e["type"] == "import.completed" for e in await timeline())


async def _all_delivered(store: RedisStore, event_ids: list[str]) -> bool:
    return all([await store.was_delivered(eid, "log") for eid in event_ids])


async def _outbox_empty(store: RedisStore) -> bool:
    return not await store.redis.zcard(keys.OUTBOX)
