"""Webhooks through arq: deferred retries that hold no worker slot, and a real worker process
delivering a simulated import's events to a subscription."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
import structlog
from redis.asyncio import Redis

from bridge.config import Settings, load_settings
from bridge.store import keys
from bridge.store.redis_store import RedisStore, now_ms
from bridge.webhooks.model import destination, event_delivery_id
from bridge.wiring import announce_deliveries, worker_options
from bridge.worker.arq_compat import BridgeWorker
from bridge_tools.processes import Process
from bridge_tools.tls import ThrowawayCa, server_context
from bridge_tools.webhook_receiver import Reply, WebhookReceiver
from mpc_simulator import RunningSimulator, SimulatorControl
from tests.integration.conftest import API_KEY, FAST_ENV, MPC_TOKEN, SLUG, eventually
from tests.integration.test_worker_process import spec
from tests.integration.webhooks_helpers import FERNET_KEY, LOOPBACK_NET, Webhooks, make_event

HOOK = "hooks/worker"
SLOT_TEST_JOBS = 6
DEFERRED_BY_S = 1.0
LONG_POLL_DELAY_S = 10.0
"""Far longer than the deferral: a job started on time was not waiting for the job loop's next look."""


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as running:
        yield running


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """A worker's startup configures logging for its process; the test process gets its own back."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    try:
        yield
    finally:
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.configure(**config)


@pytest.fixture
async def worker_factory(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    started: list[tuple[BridgeWorker, asyncio.Task[None]]] = []

    async def start(**env: str) -> Settings:
        settings = load_settings(
            {
                "BRIDGE_REDIS_URL": redis_url,
                "BRIDGE_SECRET_KEY": FERNET_KEY,
                "BRIDGE_WEBHOOK_ALLOW_CIDRS": LOOPBACK_NET,
                "BRIDGE_NOTIFY_LOG": "false",
                "BRIDGE_LOG_LEVEL": "warning",
                "BRIDGE_WORKER_DRAIN_S": "0",
                **env,
            }
        )
        worker = BridgeWorker(**{**worker_options(settings), "handle_signals": False})
        started.append((worker, asyncio.get_running_loop().create_task(worker.async_run())))
        return settings

    with logging_restored():
        try:
            yield start
        finally:
            for worker, task in started:
                with contextlib.suppress(asyncio.CancelledError), warnings.catch_warnings():
                    # arq 0.28 closes its pool with redis-py's deprecated close()
                    warnings.simplefilter("ignore", DeprecationWarning)
                    await worker.close()
                await asyncio.gather(task, return_exceptions=True)


async def test_failed_attempts_are_postponed_in_the_outbox_on_the_configured_schedule(
    redis: Redis, receiver: WebhookReceiver, worker_factory: Callable[..., Any]
) -> None:
    webhooks = Webhooks(redis)
    sid, secret = await webhooks.subscribe(receiver.url(HOOK))
    receiver.set_secrets(HOOK, [secret])
    receiver.script(HOOK, [Reply(status=500), Reply(status=429, retry_after="1")])
    await worker_factory(BRIDGE_WEBHOOK_RETRY_SCHEDULE_S="0.3,0.5,5")
    event = make_event()
    await webhooks.record(event, destination(sid))
    await announce_deliveries(redis, event.id, [destination(sid)])
    got = await receiver.wait_for(3, HOOK, timeout_s=10)
    assert [r.status for r in got] == [500, 429, 204] and all(r.verified for r in got)
    assert {r.webhook_id for r in got} == {event.id} and len({r.body for r in got}) == 1
    first_gap, second_gap = got[1].at - got[0].at, got[2].at - got[1].at
    assert 0.24 <= first_gap < 1.5  # 0.3 s +-20 %
    assert 0.8 <= second_gap < 2.5  # Retry-After 1 s, capped at twice the 0.5 s (+-20 %) step
    await eventually(lambda: webhooks.events.was_delivered(event.id, destination(sid)), 5, "delivered")
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and [a.status_code for a in record.attempts] == [500, 429, 204]
    assert await redis.zcard(keys.OUTBOX) == 0
    await webhooks.close()


async def test_a_delivery_due_later_starts_when_due_not_at_the_next_look(
    redis: Redis, receiver: WebhookReceiver, worker_factory: Callable[..., Any]
) -> None:
    webhooks = Webhooks(redis)
    sid, secret = await webhooks.subscribe(receiver.url(HOOK))
    receiver.set_secrets(HOOK, [secret])
    event = make_event()
    await webhooks.record(event, destination(sid))
    # Due in a second, without a wake-up: the delivery loop's first claim finds when.
    queued = time.time()
    await redis.zadd(
        keys.OUTBOX, {keys.outbox_entry(event.id, destination(sid)): now_ms(queued + DEFERRED_BY_S)}
    )
    await worker_factory(BRIDGE_WORKER_POLL_DELAY_S=str(LONG_POLL_DELAY_S))
    [got] = await receiver.wait_for(1, HOOK, timeout_s=LONG_POLL_DELAY_S)
    assert DEFERRED_BY_S * 0.9 <= got.at - queued < LONG_POLL_DELAY_S / 2
    await webhooks.close()


async def test_a_retry_waiting_holds_no_worker_slot(
    redis: Redis, receiver: WebhookReceiver, worker_factory: Callable[..., Any]
) -> None:
    webhooks = Webhooks(redis)
    failing, _ = await webhooks.subscribe(receiver.url("hooks/failing"))
    healthy, _ = await webhooks.subscribe(receiver.url("hooks/healthy"))
    receiver.script("hooks/failing", [Reply(status=500)] * 5)
    await worker_factory(BRIDGE_WEBHOOK_RETRY_SCHEDULE_S="3,3", BRIDGE_WORKER_MAX_JOBS="1")
    dispatcher = functools.partial(announce_deliveries, redis)
    stuck = make_event()
    await webhooks.record(stuck, destination(failing))
    await dispatcher(stuck.id, [destination(failing)])
    await receiver.wait_for(1, "hooks/failing", timeout_s=5)
    started = time.monotonic()
    for _ in range(3):  # one slot: each needs the slot the waiting retry does not hold
        event = make_event()
        await webhooks.record(event, destination(healthy))
        await dispatcher(event.id, [destination(healthy)])
    await receiver.wait_for(3, "hooks/healthy", timeout_s=5)
    assert time.monotonic() - started < 2.0  # long before the retry's 3 s
    assert len(receiver.requests("hooks/failing")) == 1
    await webhooks.close()


async def test_a_freed_slot_takes_the_next_due_delivery_at_once_not_at_the_next_poll_delay(
    redis: Redis, receiver: WebhookReceiver, worker_factory: Callable[..., Any]
) -> None:
    webhooks = Webhooks(redis)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    # Two slots: the first job ends at once, the second much later. The queue then starts with
    # the second job, still running: the freed slot must go to the third.
    receiver.script(HOOK, [Reply(delay_s=0.05), Reply(delay_s=1.0)])
    dispatcher = functools.partial(announce_deliveries, redis)
    events = [make_event() for _ in range(SLOT_TEST_JOBS)]
    for event in events:
        await webhooks.record(event, destination(sid))
        await dispatcher(event.id, [destination(sid)])
        await asyncio.sleep(0.002)  # queued in this order (a job's score is its enqueue time, in ms)
    started = time.monotonic()
    await worker_factory(BRIDGE_WORKER_MAX_JOBS="2", BRIDGE_WORKER_POLL_DELAY_S="5")
    await receiver.wait_for(SLOT_TEST_JOBS, HOOK, timeout_s=10)
    assert time.monotonic() - started < 3.0  # well before the 5 s the job loop would sleep
    await webhooks.close()


async def test_a_worker_verifies_https_receivers_with_the_ca_bundle_it_is_configured_with(
    redis: Redis, worker_factory: Callable[..., Any], tmp_path: Path
) -> None:
    ca = ThrowawayCa()
    bundle = ca.write_bundle(tmp_path / "webhook-ca.pem")
    webhooks = Webhooks(redis)
    async with WebhookReceiver(ssl_context=server_context(ca.issue(tmp_path))) as receiver:
        sid, secret = await webhooks.subscribe(receiver.url(HOOK))
        assert receiver.url(HOOK).startswith("https://127.0.0.1:")
        receiver.set_secrets(HOOK, [secret])
        await worker_factory(BRIDGE_WEBHOOK_CA_BUNDLE=str(bundle))
        event = make_event()
        await webhooks.record(event, destination(sid))
        await announce_deliveries(redis, event.id, [destination(sid)])
        [got] = await receiver.wait_for(1, HOOK, timeout_s=10)
        assert got.verified and got.webhook_id == event.id
        await eventually(lambda: webhooks.events.was_delivered(event.id, destination(sid)), 5, "delivered")
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and [a.status_code for a in record.attempts] == [204]
    await webhooks.close()


@pytest.mark.slow
async def test_a_worker_process_delivers_an_imports_events_signed_and_never_logs_the_secret(
    redis: Redis,
    redis_url: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    webhooks = Webhooks(redis)
    _, secret = await webhooks.subscribe(receiver.url(HOOK), event_types=("bulk.*",))
    receiver.set_secrets(HOOK, [secret])
    store = RedisStore(redis, retention_s=3600)
    await control.put_import(SLUG, "imp-worker", [{"id": 5}])
    await store.create_watch(spec((5,)), "fp", 0.05)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(FAST_ENV)
    env.update(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_MPC_BASE_URL": simulator.url,
            "BRIDGE_MPC_TOKEN": MPC_TOKEN,
            "BRIDGE_API_KEYS": API_KEY,
            "BRIDGE_SECRET_KEY": FERNET_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": LOOPBACK_NET,
            "BRIDGE_LOG_FORMAT": "json",
            "BRIDGE_LOG_LEVEL": "debug",
            "PYTHONUNBUFFERED": "1",
        }
    )
    worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
    try:

        async def polled() -> bool:
            record = await store.get_watch(spec((5,)).id)
            return bool(record and record.snapshot and 5 in record.snapshot.bulks)

        await eventually(polled, 20, "the first poll")
        await control.patch_bulk(SLUG, "imp-worker", 5, status="working")
        await receiver.wait_for(1, HOOK, timeout_s=20)
        await control.patch_bulk(SLUG, "imp-worker", 5, status="finished", members_created_number=3)
        got = await receiver.wait_for(2, HOOK, timeout_s=20)
    finally:
        worker.stop()
    assert [r.json()["type"] for r in got] == ["bulk.started", "bulk.finished"]
    for received in got:
        assert received.webhook_id == received.json()["data"]["event_id"]
        standardwebhooks.Webhook(secret).verify(received.body, received.headers)
    output = worker.output()
    assert "webhook delivered" in output
    assert secret not in output and secret.removeprefix("whsec_") not in output
    await webhooks.close()
