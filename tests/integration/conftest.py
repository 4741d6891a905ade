"""The pipeline in this process against real parts: the MPC simulator over HTTP, a real Redis."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import msgspec
import pytest
from arq.connections import ArqRedis
from redis.asyncio import Redis

from bridge import wiring
from bridge.config import Settings, load_settings
from bridge.core.codec import deserialize_job, serialize_job
from bridge.core.model import Event, WatchSpec
from bridge.store import keys
from bridge.store.redis_store import ClaimBudget, RedisStore, resolved
from mpc_simulator import RunningSimulator, SimulatorControl, start
from tests.integration.webhooks_helpers import Webhooks

MPC_TOKEN: Final = "mpc-test-token"
API_KEY: Final = "test-api-key-0123456789abcdefghijkl"
SLUG: Final = "infinity-mall"
SECRET_KEY: Final = "q0Yh0a5lYk7oQ1xJc6a1rP9sJpJ2c8U4pW1s5bW0dX8="
FAST_ENV: Final = {
    "BRIDGE_SECRET_KEY": SECRET_KEY,
    "BRIDGE_POLL_MIN_INTERVAL_S": "0.05",
    "BRIDGE_POLL_MAX_INTERVAL_S": "0.2",
    "BRIDGE_UPSTREAM_TIMEOUT_S": "0.5",
    "BRIDGE_UPSTREAM_CONNECT_TIMEOUT_S": "0.5",
    "BRIDGE_POLL_LEASE_S": "2.5",
    "BRIDGE_UPSTREAM_FAILING_AFTER": "3",
    # Polls here come 100 times faster than MPC allows: the clubs' request budget would hold most
    # of them back. tests/integration/test_upstream_budget.py runs with the real defaults.
    "BRIDGE_MPC_CLUB_RATE": "100000",
    "BRIDGE_MPC_CLUB_BURST": "100000",
}
_event_decoder: Final = msgspec.json.Decoder(Event)


def settings_for(redis_url: str, mpc_url: str, **extra: str) -> Settings:
    return load_settings(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_MPC_BASE_URL": mpc_url,
            "BRIDGE_MPC_TOKEN": MPC_TOKEN,
            "BRIDGE_API_KEYS": API_KEY,
            **FAST_ENV,
            **extra,
        }
    )


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    running = await start(default_token=MPC_TOKEN, seed=7)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def control(simulator: RunningSimulator) -> AsyncIterator[SimulatorControl]:
    async with SimulatorControl(simulator.url) as client:
        yield client


class Pipeline:
    """A worker's poll side in this process: store, MPC client, poller, dispatcher."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.settings = settings
        self.queue = ArqRedis(
            connection_pool=redis.connection_pool,
            job_serializer=serialize_job,
            job_deserializer=deserialize_job,
            default_queue_name=keys.QUEUE,
        )
        self.store = RedisStore(redis, retention_s=settings.retention_s, lease_s=settings.poll_lease_s)
        self.http, self.mpc = wiring.upstream(settings, redis)
        self.poller = wiring.poller(
            settings,
            redis=redis,
            store=self.store,
            mpc=self.mpc,
            dispatch=functools.partial(wiring.announce_deliveries, redis),
        )

    async def poll_due(self, ahead_s: float = 3600.0, *, first_tokens: bool = False) -> int:
        """Claim every scheduled import as if ``ahead_s`` had passed, and poll each once (with
        ``first_tokens``, the claim takes each poll's first token, as the poll loop's claim does)."""
        budget = None
        if first_tokens:
            budget = ClaimBudget(
                rate=self.settings.mpc_club_rate, burst=self.settings.mpc_club_burst, takes=1000
            )
        claim = await self.store.claim(time.time() + ahead_s, 1000, budget)
        await asyncio.gather(*(self.poller.poll(tracker) for tracker in claim.trackers))
        return len(claim.trackers)

    async def create(self, spec: WatchSpec) -> WatchSpec:
        created, _ = await self.store.create_watch(spec, spec.id, self.settings.poll_min_interval_s)
        assert created
        return spec

    async def events(self, watch_id: str) -> list[Event]:
        return [_event_decoder.decode(body) for body in await self.store.timeline(watch_id, 0, 10_000)]

    async def types(self, watch_id: str) -> list[str]:
        return [e.type for e in await self.events(watch_id)]

    async def close(self) -> None:
        await self.http.aclose()


@pytest.fixture
async def pipeline_factory(
    redis: Redis, redis_url: str, simulator: RunningSimulator
) -> AsyncIterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(**extra: str) -> Pipeline:
        pipeline = Pipeline(redis, settings_for(redis_url, simulator.url, **extra))
        made.append(pipeline)
        return pipeline

    try:
        yield make
    finally:
        for pipeline in made:
            await pipeline.close()


@pytest.fixture
async def pipeline(pipeline_factory: Callable[..., Pipeline]) -> Pipeline:
    return pipeline_factory()


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s: {what}")
        await asyncio.sleep(0.05)


async def outbox(redis: Redis) -> list[bytes]:
    entries: list[bytes] = await resolved(redis.zrange(keys.OUTBOX, 0, -1))
    return entries


@pytest.fixture
async def webhooks_factory(redis: Redis) -> AsyncIterator[Callable[..., Webhooks]]:
    made: list[Webhooks] = []

    def make(**options: object) -> Webhooks:
        made.append(Webhooks(redis, **options))  # type: ignore[arg-type]
        return made[-1]

    try:
        yield make
    finally:
        for webhooks in made:
            await webhooks.close()
