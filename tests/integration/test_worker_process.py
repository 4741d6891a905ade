"""Real worker processes (``bridge worker`` and ``arq workers.settings.WorkerSettings``), started and
killed by PID."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from bridge.core.model import WatchSpec
from bridge.store import keys
from bridge.store.redis_store import RedisStore
from bridge.wiring import announce_deliveries
from bridge.worker.settings import SWEEP_EVERY_S, health_check_key
from bridge_tools.processes import LOOPBACK, Process, free_port, redis_server
from mpc_simulator import RunningSimulator, SimulatorControl
from tests.integration.conftest import API_KEY, FAST_ENV, MPC_TOKEN, SLUG, eventually

IMPORT = "imp-worker"
ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "bridge worker": [sys.executable, "-m", "bridge", "worker"],
    "arq": [str(Path(sys.executable).with_name("arq")), "workers.settings.WorkerSettings"],
}
"""The two documented ways to start a worker (arq's command line reads the settings from the cwd)."""
pytestmark = pytest.mark.slow


def worker_env(redis_url: str, mpc_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(FAST_ENV)
    env.update(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_MPC_BASE_URL": mpc_url,
            "BRIDGE_MPC_TOKEN": MPC_TOKEN,
            "BRIDGE_API_KEYS": API_KEY,
            "BRIDGE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def spec(bulk_ids: tuple[int, ...]) -> WatchSpec:
    now = time.time()
    return WatchSpec(
        id="wch_00000000000000000000cccc",
        loyalty_club_slug=SLUG,
        import_id=IMPORT,
        created_at=now,
        expires_at=now + 3600,
        bulk_ids=bulk_ids,
    )


async def test_a_worker_killed_mid_poll_loses_no_event(
    redis: Redis,
    redis_url: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
    workers: list[Process],
) -> None:
    store = RedisStore(redis, retention_s=3600)
    env = worker_env(redis_url, simulator.url)
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    watch = spec((5,))
    await store.create_watch(watch, "fp", 0.05)
    workers.append(
        Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker-1.log", env).start()
    )

    async def status() -> str | None:
        record = await store.get_watch(watch.id)
        snap = record.snapshot if record else None
        return snap.bulks[5].status if snap and 5 in snap.bulks else None

    async def hang_consumed() -> bool:
        return not await control.list_faults()

    async def first_event() -> bytes | None:
        bodies = await store.timeline(watch.id, 0, 10)
        return bodies[0] if bodies else None

    async def waiting() -> bool:
        return await status() == "waiting"

    await eventually(waiting, 20, "the worker's first poll")
    await control.add_fault("hang", count=1, hang_s=5.0)
    await control.patch_bulk(SLUG, IMPORT, 5, status="working")
    await eventually(hang_consumed, 10, "the worker to be mid-poll")
    workers[0].kill()
    assert await store.timeline(watch.id, 0, 10) == []

    workers.append(
        Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker-2.log", env).start()
    )
    body = await eventually(first_event, 20, "the transition after restart")
    event_id = msgspec.json.decode(body)["data"]["event_id"]
    assert msgspec.json.decode(body)["type"] == "bulk.started"
    await eventually(lambda: store.was_delivered(event_id, "log"), 20, "the log delivery")
    assert await redis.zcard(keys.OUTBOX) == 0
    assert '"event"' in workers[1].output() and event_id in workers[1].output()
    assert MPC_TOKEN not in workers[0].output() + workers[1].output()


async def test_a_worker_stops_on_sigterm_and_hands_back_its_imports(
    redis: Redis,
    redis_url: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
    workers: list[Process],
) -> None:
    store = RedisStore(redis, retention_s=3600)
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    watch = spec((5,))
    await store.create_watch(watch, "fp", 0.05)
    env = worker_env(redis_url, simulator.url) | {"BRIDGE_WORKER_DRAIN_S": "1"}
    workers.append(Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start())

    async def polled() -> bool:
        return bool((await control.requests()).items)

    async def in_flight() -> bool:
        return bool(await redis.zcard(keys.INFLIGHT))

    await eventually(polled, 20, "the first poll")
    await control.add_fault("hang", p=1.0, hang_s=30.0)
    await eventually(in_flight, 10, "an import in flight")
    started = time.monotonic()
    assert workers[0].stop(grace_s=15) == 0
    assert time.monotonic() - started < 10
    assert await redis.zcard(keys.INFLIGHT) == 0
    assert await redis.zscore(keys.SCHEDULE, watch.tracker_id) is not None


STARTED_BEFORE_REDIS_S = 4.0
"""Longer than redis-py's connection retries, after which the worker used to exit with code 1."""


async def test_a_worker_started_while_redis_is_down_waits_for_it(
    simulator: RunningSimulator, tmp_path: Path, workers: list[Process]
) -> None:
    port = free_port()
    url = f"redis://{LOOPBACK}:{port}/0"
    worker = Process(
        [sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", worker_env(url, simulator.url)
    )
    workers.append(worker.start())
    await asyncio.sleep(STARTED_BEFORE_REDIS_S)
    assert worker.alive(), worker.output()[-3000:]
    with redis_server(tmp_path, port):
        client = Redis.from_url(url)
        try:
            await eventually(lambda: client.exists(health_check_key()), 20, "the worker's health record")
        finally:
            await client.aclose()
        assert worker.alive(), worker.output()[-3000:]


REDIS_DOWN_S = 4.0
"""Longer than redis-py's own connection retries, after which arq's plain worker exited with code 1."""


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
async def test_a_worker_outlives_a_redis_restart_and_polls_again(
    entry: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
    workers: list[Process],
) -> None:
    port = free_port()
    url = f"redis://{LOOPBACK}:{port}/0"
    worker = Process(ENTRY_POINTS[entry], tmp_path / "worker.log", worker_env(url, simulator.url), cwd=ROOT)
    with redis_server(tmp_path, port, aof=True):
        workers.append(worker.start())
        client = Redis.from_url(url)
        try:
            await eventually(lambda: client.exists(health_check_key()), 20, "the worker's health record")
        finally:
            await client.aclose()
    await asyncio.sleep(REDIS_DOWN_S)
    assert worker.alive(), worker.output()[-3000:]
    await control.put_import(SLUG, IMPORT, [{"id": 5}])
    with redis_server(tmp_path, port, aof=True):
        logged_before = len(worker.output())

        async def job_loop_ran() -> bool:
            # The sweeper, an arq cron job, runs every SWEEP_EVERY_S in the job loop.
            return "cron:sweep()" in worker.output()[logged_before:]

        client = Redis.from_url(url)
        try:
            store = RedisStore(client, retention_s=3600)
            watch = spec((5,))
            await store.create_watch(watch, "fp", 0.05)

            async def polled() -> bool:
                record = await store.get_watch(watch.id)
                return record is not None and record.snapshot is not None

            await eventually(polled, 20, "a poll after the restart")
            await eventually(job_loop_ran, 2 * SWEEP_EVERY_S, "the job loop after the restart")
        finally:
            await client.aclose()
        assert worker.alive(), worker.output()[-3000:]
    assert "redis unavailable" in worker.output()


IDLE_OBSERVED_S = 10.0
IDLE_COMMANDS_PER_S_MAX = 8
"""An idle worker's Redis commands per second, those its scripts run included: its job, delivery
and poll loops' fallback looks every 5 s, the sweeper every 10 s, its metrics and health record.
(Looking every 0.5 s it was about 19; every 10 ms, over 100 for the job loop alone.)"""
FOREIGN_START_MAX_S = 0.5
"""A job enqueued by another process starts within this, although its job loop looks only every 5 s."""


async def test_an_idle_worker_sends_redis_few_commands(
    simulator: RunningSimulator, tmp_path: Path, workers: list[Process]
) -> None:
    with redis_server(tmp_path) as (_, port):
        url = f"redis://{LOOPBACK}:{port}/0"
        env = worker_env(url, simulator.url)
        workers.append(Process(ENTRY_POINTS["bridge worker"], tmp_path / "worker.log", env).start())
        client = Redis.from_url(url)
        try:
            await eventually(lambda: client.exists(health_check_key()), 20, "the worker's health record")
            await asyncio.sleep(1.0)  # the sweeper's first run is over
            await client.config_resetstat()
            await asyncio.sleep(IDLE_OBSERVED_S)
            stats = await client.info("commandstats")
        finally:
            await client.aclose()
    commands = sum(int(entry["calls"]) for entry in stats.values()) - 1  # INFO itself
    assert commands / IDLE_OBSERVED_S < IDLE_COMMANDS_PER_S_MAX, {k: v["calls"] for k, v in stats.items()}


async def test_an_idle_worker_claims_a_delivery_recorded_elsewhere_at_once(
    simulator: RunningSimulator, tmp_path: Path, workers: list[Process]
) -> None:
    with redis_server(tmp_path) as (_, port):
        url = f"redis://{LOOPBACK}:{port}/0"
        env = worker_env(url, simulator.url) | {"BRIDGE_WORKER_POLL_DELAY_S": "5"}
        workers.append(Process(ENTRY_POINTS["bridge worker"], tmp_path / "worker.log", env).start())
        client = Redis.from_url(url)
        try:
            await eventually(lambda: client.exists(health_check_key()), 20, "the worker's health record")
            await asyncio.sleep(1.0)  # the sweeper's first run is over: the delivery loop sleeps
            entry = keys.outbox_entry("evt_elsewhere", "log")
            enqueued = time.monotonic()
            # What the API's record_explicit and its announcement do.
            await client.zadd(keys.OUTBOX, {entry: int(time.time() * 1000)})
            assert await announce_deliveries(client, "evt_elsewhere", ["log"]) == 1

            async def claimed() -> bool:
                score = await client.zscore(keys.OUTBOX, entry)
                return score is None or score > time.time() * 1000  # leased, or already settled

            await eventually(claimed, 10, "the delivery to be claimed")
            assert time.monotonic() - enqueued < FOREIGN_START_MAX_S
        finally:
            await client.aclose()


NEW_WATCHES = 6
NEW_WATCH_POLLED_MAX_S = 0.2
"""From a new watch to its first poll by an idle worker. Without a wake-up the poll loop would find
it on its next look at the schedule, up to half a second later (each one alone: by chance)."""


async def test_an_idle_worker_polls_a_new_watch_at_once(
    redis: Redis,
    redis_url: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
    workers: list[Process],
) -> None:
    store = RedisStore(redis, retention_s=3600)
    imports = [f"imp-new-{n}" for n in range(NEW_WATCHES)]
    # Finished: each watch ends at its first poll, and the worker is idle again before the next.
    await control.put_imports([(SLUG, i, [{"id": 1, "status": "finished"}]) for i in imports])
    env = worker_env(redis_url, simulator.url)
    workers.append(Process(ENTRY_POINTS["bridge worker"], tmp_path / "worker.log", env).start())
    await eventually(lambda: redis.exists(health_check_key()), 20, "the worker's health record")
    delays = []
    for n, import_id in enumerate(imports):
        await asyncio.sleep(0.7)  # idle again
        now = time.time()
        watch = msgspec.structs.replace(spec((1,)), id=f"wch_{n:024d}", import_id=import_id)
        await store.create_watch(watch, f"fp-{n}", 0.05)

        async def polled(import_id: str = import_id) -> list[float]:
            return [r.t for r in (await control.requests()).items if import_id in r.path]

        delays.append(min(await eventually(polled, 10, "the new watch's first poll")) - now)
    assert max(delays) < NEW_WATCH_POLLED_MAX_S, delays
