"""Graceful shutdown of real processes: `bridge worker` and `bridge api` on SIGTERM.

What an orchestrator relies on: a worker stops taking work at once, lets what runs finish within
BRIDGE_WORKER_DRAIN_S, hands the rest back and is gone within the drain plus its margin even when
Redis is gone; the API lets requests in flight finish and takes no new connection. The exit code
says how it went: 0 after a clean drain, 3 when the deadline cut work short (logged with what was
left), 75 when a worker's own watchdog had to end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from bridge.config import WORKER_EXIT_MARGIN_S
from bridge.core.model import WatchSpec
from bridge.exits import EXIT_DRAIN_CUT_SHORT, EXIT_FAILURE, EXIT_OK, EXIT_STOP_TIMEOUT
from bridge.store import keys
from bridge.store.redis_store import RedisStore
from bridge.webhooks.model import destination
from bridge.wiring import announce_deliveries
from bridge.worker.settings import health_check_key
from bridge_tools.processes import LOOPBACK, Process, free_port, redis_server
from bridge_tools.webhook_receiver import Reply, WebhookReceiver
from mpc_simulator import RunningSimulator, SimulatorControl
from tests.integration.conftest import API_KEY, SLUG, eventually
from tests.integration.test_worker_process import worker_env
from tests.integration.webhooks_helpers import FERNET_KEY, LOOPBACK_NET, Webhooks, make_event

pytestmark = pytest.mark.slow


def watch(import_id: str, suffix: str) -> WatchSpec:
    now = time.time()
    return WatchSpec(
        id=f"wch_0000000000000000000{suffix}",
        loyalty_club_slug=SLUG,
        import_id=import_id,
        created_at=now,
        expires_at=now + 3600,
        bulk_ids=(1,),
    )


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def wait_exit(proc: Process, timeout_s: float) -> tuple[int, float]:
    """SIGTERM, then wait: (exit code, seconds it took)."""
    assert proc.popen is not None
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    try:
        code = proc.popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout_s}s after SIGTERM:\n{proc.output()[-3000:]}")
    return code, time.monotonic() - started


async def test_a_worker_finishes_the_poll_in_flight_and_claims_nothing_after_sigterm(
    redis: Redis,
    redis_url: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    store = RedisStore(redis, retention_s=3600)
    slow, busy = watch("imp-slow", "aaaaa"), watch("imp-busy", "bbbbb")
    for spec in (slow, busy):
        await control.put_import(SLUG, spec.import_id, [{"id": 1}])
        await store.create_watch(spec, spec.id, 0.05)
    env = worker_env(redis_url, simulator.url) | {
        "BRIDGE_WORKER_DRAIN_S": "10",
        "BRIDGE_UPSTREAM_TIMEOUT_S": "5",  # longer than the hang: the poll in flight succeeds
        "BRIDGE_POLL_LEASE_S": "15",
    }
    worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
    processes.append(worker)

    async def both_polled() -> bool:
        paths = {entry.import_id for entry in (await control.requests()).items}
        return {"imp-slow", "imp-busy"} <= paths

    await eventually(both_polled, 20, "both imports polled")
    await control.add_fault("hang", count=1, hang_s=1.5, match="imp-slow")
    await control.patch_bulk(SLUG, "imp-slow", 1, status="working")

    async def slow_in_flight() -> bool:
        return not await control.list_faults() or any(f.hits for f in await control.list_faults())

    await eventually(slow_in_flight, 10, "the slow poll in flight")
    sent = time.time()
    code, took = await asyncio.to_thread(wait_exit, worker, 15)

    assert code == 0, worker.output()[-3000:]
    assert took < 5, "the drain waited for the poll in flight only, not for BRIDGE_WORKER_DRAIN_S"
    # The poll that was in flight finished and committed its change.
    bodies = await store.timeline(slow.id, 0, 10)
    assert [msgspec.json.decode(b)["type"] for b in bodies] == ["bulk.started"]
    assert await redis.zcard(keys.INFLIGHT) == 0
    # Nothing new was asked of MPC once the signal had been handled.
    late = [e for e in (await control.requests()).items if e.t - e.duration_s > sent + 0.2]
    assert late == [], late


@pytest.mark.parametrize(
    ("how", "exit_codes"),
    [
        # Refused connections: the stop cannot hand back, says so and exits with the drain cut short.
        ("killed", {EXIT_DRAIN_CUT_SHORT}),
        # A Redis that hangs (stopped, connections open): the watchdog ends the process, unless
        # the call the stop is waiting on times out first (5 s socket timeout, no retry left) and
        # it ends the stop itself. Which one depends on where the stop was when Redis stopped
        # answering; either way it is gone within the drain and the margin, which is the promise,
        # and its exit code says the stop was not clean.
        ("hung", {EXIT_DRAIN_CUT_SHORT, EXIT_STOP_TIMEOUT}),
    ],
)
async def test_a_worker_exits_within_its_drain_and_margin_when_redis_is_gone(
    how: str,
    exit_codes: set[int],
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    with redis_server(tmp_path) as (server, port):
        url = f"redis://{LOOPBACK}:{port}/0"
        client = Redis.from_url(url)
        try:
            store = RedisStore(client, retention_s=3600)
            spec = watch("imp-gone", "ccccc")
            await control.put_import(SLUG, spec.import_id, [{"id": 1}])
            await store.create_watch(spec, spec.id, 0.05)
            env = worker_env(url, simulator.url) | {"BRIDGE_WORKER_DRAIN_S": "1"}
            worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
            processes.append(worker)
            await eventually(lambda: _polled(control), 20, "the first poll")
            await control.add_fault("hang", p=1.0, hang_s=30.0)
            await eventually(lambda: _in_flight(client), 10, "an import in flight")
        finally:
            await client.aclose()
        server.signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        try:
            code, took = await asyncio.to_thread(wait_exit, worker, 1 + WORKER_EXIT_MARGIN_S + 10)
        finally:
            server.signal(signal.SIGCONT)
    assert took < 1 + WORKER_EXIT_MARGIN_S + 3, worker.output()[-3000:]
    assert code in exit_codes, worker.output()[-3000:]


async def test_the_api_finishes_requests_in_flight_and_takes_no_new_connection(
    redis: Redis, redis_url: str, tmp_path: Path, processes: list[Process]
) -> None:
    env = worker_env(redis_url, "http://127.0.0.1:9") | {"BRIDGE_API_DRAIN_S": "5"}
    port = free_port()
    api = Process(
        [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)],
        tmp_path / "api.log",
        env,
    ).start()
    processes.append(api)
    base = f"http://{LOOPBACK}:{port}"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:

        async def up() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, 30, "the API")
        # Redis holds every command for 1.5 s: a request that needs it is in flight that long.
        await redis.client_pause(1500, all=True)
        in_flight = asyncio.create_task(http.get("/v1/watches"))
        await asyncio.sleep(0.3)
        stopping = asyncio.create_task(asyncio.to_thread(wait_exit, api, 10))
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=base, timeout=2) as fresh:
            with pytest.raises(httpx.ConnectError):
                await fresh.get("/livez")
        answer = await in_flight
        code, took = await stopping

    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == []
    # A clean drain exits 0 (uvicorn alone raises the signal again: -15 here, 143 under tini).
    assert code == EXIT_OK, api.output()[-3000:]
    assert took < 5
    assert "drain cut short" not in api.output()


async def test_an_api_whose_drain_is_cut_short_exits_3_and_logs_what_was_cancelled(
    redis: Redis, redis_url: str, tmp_path: Path, processes: list[Process]
) -> None:
    env = worker_env(redis_url, "http://127.0.0.1:9") | {"BRIDGE_API_DRAIN_S": "1"}
    port = free_port()
    api = Process(
        [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)],
        tmp_path / "api.log",
        env,
    ).start()
    processes.append(api)
    base = f"http://{LOOPBACK}:{port}"
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"}) as http:

        async def up() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, 30, "the API")
        # Redis holds every command for 4 s: the request outlives the 1 s drain.
        await redis.client_pause(4000, all=True)
        in_flight = asyncio.create_task(http.get("/v1/watches", timeout=10))
        await asyncio.sleep(0.3)
        code, took = await asyncio.to_thread(wait_exit, api, 10)
        with contextlib.suppress(httpx.HTTPError):
            await in_flight
    assert code == EXIT_DRAIN_CUT_SHORT, api.output()[-3000:]
    assert took < 3.5
    cut = [line for line in api.output().splitlines() if "drain cut short" in line]
    assert len(cut) == 1, api.output()[-3000:]
    assert json.loads(cut[0])["requests_cancelled"] == 1


async def test_a_worker_whose_poll_outlives_the_drain_exits_3_and_names_the_import(
    redis: Redis,
    redis_url: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    store = RedisStore(redis, retention_s=3600)
    slow = watch("imp-cut", "ddddd")
    await control.put_import(SLUG, slow.import_id, [{"id": 1}])
    await store.create_watch(slow, slow.id, 0.05)
    env = worker_env(redis_url, simulator.url) | {
        "BRIDGE_WORKER_DRAIN_S": "1",
        "BRIDGE_UPSTREAM_TIMEOUT_S": "20",  # the poll hangs on MPC, not on its own timeout
        "BRIDGE_POLL_LEASE_S": "60",  # longer than a poll can take
    }
    worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
    processes.append(worker)
    await eventually(lambda: _polled(control), 20, "the first poll")
    await control.add_fault("hang", p=1.0, hang_s=30.0, match="imp-cut")
    await eventually(lambda: _in_flight(redis), 10, "the poll in flight")
    code, took = await asyncio.to_thread(wait_exit, worker, 1 + WORKER_EXIT_MARGIN_S)
    assert code == EXIT_DRAIN_CUT_SHORT, worker.output()[-3000:]
    assert took < 4
    cut = [json.loads(line) for line in worker.output().splitlines() if "drain cut short" in line]
    assert len(cut) == 1, worker.output()[-3000:]
    assert cut[0]["polls_cut_short"] == 1 and cut[0]["imports"] == [f"{SLUG}/imp-cut"]
    assert cut[0]["handed_back"] is True
    # Handed back: due again now, not when its 60 s lease would have run out.
    assert await redis.zcard(keys.INFLIGHT) == 0


async def test_a_worker_whose_delivery_outlives_the_drain_exits_3_and_names_the_job(
    redis: Redis, redis_url: str, tmp_path: Path, processes: list[Process]
) -> None:
    webhooks = Webhooks(redis)
    async with WebhookReceiver() as receiver:
        sid, secret = await webhooks.subscribe(receiver.url("hooks/slow"))
        receiver.set_secrets("hooks/slow", [secret])
        receiver.script("hooks/slow", [Reply(status=204, delay_s=20)])
        env = worker_env(redis_url, "http://127.0.0.1:9") | {
            "BRIDGE_SECRET_KEY": FERNET_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": LOOPBACK_NET,
            "BRIDGE_NOTIFY_LOG": "false",
            "BRIDGE_WORKER_DRAIN_S": "2",
        }
        worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
        processes.append(worker)
        event = make_event()
        await webhooks.record(event, destination(sid))
        await announce_deliveries(redis, event.id, [destination(sid)])
        await receiver.wait_for(1, "hooks/slow", timeout_s=20)
        code, took = await asyncio.to_thread(wait_exit, worker, 2 + WORKER_EXIT_MARGIN_S)
    await webhooks.close()
    assert code == EXIT_DRAIN_CUT_SHORT, worker.output()[-3000:]
    assert took < 5
    cut = [json.loads(line) for line in worker.output().splitlines() if "drain cut short" in line]
    assert len(cut) == 1, worker.output()[-3000:]
    assert cut[0]["deliveries_cut_short"] == 1 and cut[0]["polls_cut_short"] == 0
    # Handed back: due again at once, for a worker to run it again.
    [entry] = cut[0]["deliveries"]
    assert entry == keys.outbox_entry(event.id, destination(sid))
    score = await redis.zscore(keys.OUTBOX, entry)
    assert score is not None and score <= time.time() * 1000


async def test_a_worker_whose_delivery_ends_within_the_drain_exits_0_at_once(
    redis: Redis, redis_url: str, tmp_path: Path, processes: list[Process]
) -> None:
    webhooks = Webhooks(redis)
    async with WebhookReceiver() as receiver:
        sid, secret = await webhooks.subscribe(receiver.url("hooks/slowish"))
        receiver.set_secrets("hooks/slowish", [secret])
        receiver.script("hooks/slowish", [Reply(status=204, delay_s=1.0)])
        env = worker_env(redis_url, "http://127.0.0.1:9") | {
            "BRIDGE_SECRET_KEY": FERNET_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": LOOPBACK_NET,
            "BRIDGE_NOTIFY_LOG": "false",
            "BRIDGE_WORKER_DRAIN_S": "6",
            # The delivery loop looks at the outbox only every 10 s when nothing wakes it: the drain
            # must not wait for that to see the delivery done.
            "BRIDGE_WORKER_POLL_DELAY_S": "10",
        }
        worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
        processes.append(worker)
        event = make_event()
        await webhooks.record(event, destination(sid))
        await announce_deliveries(redis, event.id, [destination(sid)])
        await receiver.wait_for(1, "hooks/slowish", timeout_s=20)
        code, took = await asyncio.to_thread(wait_exit, worker, 6 + WORKER_EXIT_MARGIN_S)
    await webhooks.close()
    assert code == EXIT_OK, worker.output()[-3000:]
    assert took < 3.5, worker.output()[-3000:]


async def _polled(control: SimulatorControl) -> bool:
    return bool((await control.requests()).items)


async def _in_flight(client: Redis) -> bool:
    return bool(await client.zcard(keys.INFLIGHT))


async def test_the_arq_cli_runs_the_same_worker_and_both_checks_follow_its_health(
    redis: Redis, redis_url: str, simulator: RunningSimulator, tmp_path: Path, processes: list[Process]
) -> None:
    env = worker_env(redis_url, simulator.url)
    arq = str(Path(sys.executable).parent / "arq")
    checks = {
        "arq --check": [arq, "--check", "workers.settings.WorkerSettings"],
        "bridge worker --check": [sys.executable, "-m", "bridge", "worker", "--check"],
    }

    def passing() -> dict[str, bool]:
        return {
            name: subprocess.run(argv, env=env, capture_output=True, check=False).returncode == 0
            for name, argv in checks.items()
        }

    assert passing() == dict.fromkeys(checks, False)
    worker = Process([arq, "workers.settings.WorkerSettings"], tmp_path / "arq.log", env).start()
    processes.append(worker)
    await eventually(lambda: redis.exists(health_check_key()), 20, "the worker's health record")
    assert await asyncio.to_thread(passing) == dict.fromkeys(checks, True)
    code, _ = await asyncio.to_thread(wait_exit, worker, 30)
    assert code == 0, worker.output()[-3000:]
    assert await asyncio.to_thread(passing) == dict.fromkeys(checks, False)


def test_an_api_that_cannot_listen_exits_1_not_3(redis_url: str, tmp_path: Path) -> None:
    """uvicorn's own startup failure code is 3, which here means a drain cut short."""
    env = worker_env(redis_url, "http://127.0.0.1:9")
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == EXIT_FAILURE, result.stdout + result.stderr
    assert "address already in use" in result.stdout + result.stderr


IDLE_OBSERVED_S = 3.0


def _wake_ups(pid: int) -> int:
    """Times the process's main thread went to sleep waiting (its voluntary context switches)."""
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


async def test_an_idle_api_wakes_about_once_a_second_and_still_stops_on_sigterm(
    redis_url: str, tmp_path: Path, processes: list[Process]
) -> None:
    env = worker_env(redis_url, "http://127.0.0.1:9")
    port = free_port()
    api = Process(
        [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)],
        tmp_path / "api.log",
        env,
    ).start()
    processes.append(api)
    async with httpx.AsyncClient(base_url=f"http://{LOOPBACK}:{port}") as http:

        async def up() -> bool:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, 30, "the API")
    await asyncio.sleep(1.0)
    before = _wake_ups(api.pid)
    await asyncio.sleep(IDLE_OBSERVED_S)
    woke = _wake_ups(api.pid) - before
    # uvicorn's own loop ticks every 0.1 s: 30 wake-ups here at least.
    assert woke < 2 * IDLE_OBSERVED_S + 5, woke
    code, took = await asyncio.to_thread(wait_exit, api, 10)
    assert code == EXIT_OK, api.output()[-3000:]
    assert took < 5, took  # as before: mostly the interpreter and its clients closing
