"""Slack delivery against real parts: the Slack stand-in over HTTP, a real Redis, the simulator.

A :class:`SlackRig` is the poll side of a worker (the ``Pipeline``) plus any number of delivery
sides — each a "worker" with its own aiohttp session and notifiers — sharing Redis and Slack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import aiohttp
import msgspec
import pytest
from redis.asyncio import Redis

from bridge import wiring
from bridge.core.model import Event, SlackTarget, WatchSpec
from bridge.delivery.loop import DeliveryLoop
from bridge.delivery.model import SLACK, Notifier, SendResult
from bridge.delivery.service import Deliveries, RetryLater
from bridge.http import build_session
from bridge.slack.plain import message_lines
from bridge.store.redis_store import RedisStore
from bridge_tools.slack_standin import Message, RunningStandin, start
from tests.integration.conftest import SLUG, Pipeline, eventually

BOT_TOKEN: Final = "xoxb-test-" + "0" * 24
CHANNEL: Final = "C0SLACKTEST"
IMPORT: Final = "imp-slack"


@pytest.fixture
async def standin() -> AsyncIterator[RunningStandin]:
    running = await start(BOT_TOKEN)
    try:
        yield running
    finally:
        await running.stop()


def watch_spec(
    bulk_ids: tuple[int, ...] | None = None,
    *,
    wid: str = "wch_0000000000000000000slack",
    channel: str | None = CHANNEL,
    **options: object,
) -> WatchSpec:
    now = time.time()
    fields: dict[str, object] = {
        "id": wid,
        "loyalty_club_slug": SLUG,
        "import_id": IMPORT,
        "created_at": now,
        "expires_at": now + 3600,
        "bulk_ids": bulk_ids,
        "slack": None if channel is None else SlackTarget(channel=channel),
    }
    fields.update(options)
    return WatchSpec(**fields)  # type: ignore[arg-type]


class SlackRig:
    def __init__(self, pipeline: Pipeline, redis: Redis, standin: RunningStandin) -> None:
        self.pipeline = pipeline
        self.redis = redis
        self.standin = standin
        self.slack = standin.slack
        self._sessions: list[aiohttp.ClientSession] = []
        self.notifiers: dict[str, Notifier] = {}
        """The first delivery side's notifiers (what a worker's ``runtime.notifiers`` holds)."""
        self.deliveries = self.worker()

    def worker(self, timeout_s: float | None = None) -> Deliveries:
        """A delivery side with its own HTTP session and notifiers, as another worker process has
        (``timeout_s``: a session with a shorter timeout than the workers' own)."""
        session = (
            wiring.slack_session(self.pipeline.settings)
            if timeout_s is None
            else build_session(timeout_s=timeout_s)
        )
        assert session is not None
        self._sessions.append(session)
        notifiers = wiring.notifiers(
            self.pipeline.settings, store=self.pipeline.store, redis=self.redis, slack_http=session
        )
        self.notifiers = self.notifiers or notifiers
        return Deliveries(self.pipeline.store, notifiers)

    async def events(self, watch_id: str) -> list[Event]:
        return await self.pipeline.events(watch_id)

    async def deliver(
        self, event: Event, attempt: int = 1, deliveries: Deliveries | None = None
    ) -> SendResult | RetryLater:
        try:
            state = await self.pipeline.store.delivery_state(event.id, SLACK)
            claimed = msgspec.structs.replace(state, tries=attempt - 1)
            return await (deliveries or self.deliveries).run(claimed)
        except RetryLater as later:
            return later

    async def deliver_all(self, watch_id: str, max_rounds: int = 5) -> list[SendResult | RetryLater]:
        """Deliver every event of the watch in timeline order, again while any asks to retry."""
        results: list[SendResult | RetryLater] = []
        for attempt in range(1, max_rounds + 1):
            pending = [
                e
                for e in await self.events(watch_id)
                if not await self.pipeline.store.was_delivered(e.id, SLACK)
            ]
            if not pending:
                break
            for event in pending:
                results.append(await self.deliver(event, attempt))
        return results

    def card(self, channel: str = CHANNEL) -> Message:
        cards = self.slack.cards(channel)
        assert len(cards) == 1, [c.text for c in cards]
        return cards[0]

    def card_lines(self, channel: str = CHANNEL) -> list[str]:
        return message_lines(msgspec.to_builtins(self.card(channel)))

    def replies(self, channel: str = CHANNEL) -> list[Message]:
        return self.slack.replies(self.card(channel))

    async def close(self) -> None:
        for session in self._sessions:
            await session.close()


@pytest.fixture
async def rig_factory(
    pipeline_factory: Callable[..., Pipeline], redis: Redis, standin: RunningStandin
) -> AsyncIterator[Callable[..., SlackRig]]:
    made: list[SlackRig] = []

    def make(**extra: str | None) -> SlackRig:
        env: dict[str, str | None] = {
            "BRIDGE_SLACK_BOT_TOKEN": BOT_TOKEN,
            "BRIDGE_SLACK_API_URL": standin.api_url,
            "BRIDGE_SLACK_POST_INTERVAL_S": "0",
            "BRIDGE_NOTIFY_LOG": "false",
            **extra,
        }
        given = {k: v for k, v in env.items() if v is not None}  # None: leave the variable unset
        rig = SlackRig(pipeline_factory(**given), redis, standin)
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            await rig.close()


@pytest.fixture
async def rig(rig_factory: Callable[..., SlackRig]) -> SlackRig:
    return rig_factory()


async def run_deliveries(rig: SlackRig, *, max_jobs: int = 100, timeout_s: float = 20.0) -> None:
    """Every delivery in the outbox, as a worker's delivery loop runs them (retries included),
    until the outbox is empty."""
    store = rig.pipeline.store
    loop = DeliveryLoop(
        store=store,
        deliveries=rig.deliveries,
        redis=store.redis,
        max_jobs=max_jobs,
        lease_s=30.0,
        timeout_s=10.0,
        poll_delay_s=0.05,
    )
    task = asyncio.get_running_loop().create_task(loop.run())
    try:
        await eventually(lambda: _outbox_empty(store), timeout_s, "the outbox to drain")
    finally:
        await loop.stop(1.0, 0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _outbox_empty(store: RedisStore) -> bool:
    return await store.outbox_size() == 0
