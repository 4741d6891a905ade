"""Change notes: the store publishes one when a watch, its bulks or a delivery changes, and the
console's hub hands each to every open stream (a real redis-server, real pub/sub)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from bridge.console.hub import QUEUE_SIZE, ChangeHub
from bridge.store.changes import Change, decode_change, encode_change
from bridge.webhooks.model import WebhookDelivery
from bridge.webhooks.store import SubscriptionStore
from tests.builders import T0, watch
from tests.integration.test_store import MIN_INTERVAL_S, plan_from, store_for

WAIT_S = 5.0


async def next_change(queue: asyncio.Queue[Change | None]) -> Change:
    change = await asyncio.wait_for(queue.get(), WAIT_S)
    assert change is not None, "the hub ended the stream"
    return change


async def test_create_stop_and_commits_with_news_publish_a_note(redis: Redis) -> None:
    store = store_for(redis)
    hub = ChangeHub(redis)
    queue = await hub.subscribe()
    try:
        spec = watch((11,), created_at=T0)
        await store.create_watch(spec, "fp", MIN_INTERVAL_S)
        assert await next_change(queue) == Change(
            kind="created", watch_id=spec.id, club=spec.loyalty_club_slug
        )
        [claimed] = (await store.claim(T0, 10)).trackers
        await store.commit_many([plan_from(claimed, T0, "working")])
        assert await next_change(queue) == Change(kind="watch", watch_id=spec.id, club=spec.loyalty_club_slug)
        # The same observation again: nothing new, so no note (most polls are like that).
        [claimed] = (await store.claim(T0 + 3600, 10)).trackers
        await store.commit_many([plan_from(claimed, T0 + 1, "working")])
        await store.stop_watch(spec, T0 + 2)
        assert await next_change(queue) == Change(kind="watch", watch_id=spec.id, club=spec.loyalty_club_slug)
        assert queue.empty()
    finally:
        hub.unsubscribe(queue)
        await hub.aclose()


async def test_a_saved_delivery_publishes_a_note_naming_its_event(redis: Redis) -> None:
    hub = ChangeHub(redis)
    queue = await hub.subscribe()
    try:
        subscriptions = SubscriptionStore(redis, box=None, retention_s=3600)
        delivery = WebhookDelivery(
            id="dlv_" + "0" * 24,
            subscription_id="sub_" + "1" * 24,
            event_id="evt_1",
            event_type="bulk.started",
            kind="event",
            created_at=T0,
        )
        await subscriptions.save_delivery(delivery)
        assert await next_change(queue) == Change(
            kind="delivery", subscription_id=delivery.subscription_id, event_id="evt_1"
        )
        assert await subscriptions.get_deliveries([delivery.id, "dlv_" + "9" * 24]) == [delivery, None]
    finally:
        await hub.aclose()


async def test_every_stream_gets_every_note_and_a_slow_one_loses_only_its_oldest(redis: Redis) -> None:
    hub = ChangeHub(redis)
    fast, slow = await hub.subscribe(), await hub.subscribe()
    try:
        assert hub.listeners == 2

        async def read_all() -> list[str]:
            return [(await next_change(fast)).watch_id for _ in range(QUEUE_SIZE + 10)]

        reader = asyncio.create_task(read_all())
        for n in range(QUEUE_SIZE + 10):
            await redis.publish("bridge:changes", encode_change(Change(kind="watch", watch_id=f"w{n}")))
            await asyncio.sleep(0)
        await redis.publish("bridge:changes", b"not a note")  # ignored
        assert await reader == [f"w{n}" for n in range(QUEUE_SIZE + 10)]
        assert slow.qsize() == QUEUE_SIZE and (await next_change(slow)).watch_id == "w10"
        hub.unsubscribe(slow)
        assert hub.listeners == 1
    finally:
        await hub.aclose()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b"{",
        b'{"kind": "nope"}',
        b'{"kind": 1e309}',
        b"[" * 10_000,
        b"\xff\xfe",
        b"x" * 1_000_000,
    ],
)
def test_anything_but_a_note_decodes_to_none(raw: bytes) -> None:
    assert decode_change(raw) is None


@given(
    st.builds(
        Change,
        kind=st.sampled_from(["created", "watch", "delivery"]),
        watch_id=st.text(max_size=40),
        club=st.text(max_size=40),
        subscription_id=st.text(max_size=40),
        event_id=st.text(max_size=40),
    )
)
def test_a_note_survives_the_channel(change: Change) -> None:
    assert decode_change(encode_change(change)) == change
    assert msgspec.json.decode(encode_change(change))["kind"] == change.kind


async def test_ending_the_streams_tells_every_stream_and_every_later_one(redis: Redis) -> None:
    hub = ChangeHub(redis)
    first, second = await hub.subscribe(), await hub.subscribe()
    try:
        await asyncio.to_thread(hub.end_streams_threadsafe)  # as from the signal handler
        assert await asyncio.wait_for(first.get(), WAIT_S) is None
        assert await asyncio.wait_for(second.get(), WAIT_S) is None
        late = await hub.subscribe()
        assert late.get_nowait() is None
    finally:
        await hub.aclose()


async def test_one_note_is_read_and_rendered_once_for_every_stream(redis: Redis) -> None:
    from bridge.config import load_settings
    from bridge.console.routes import ConsoleState

    console = ConsoleState(load_settings({}), redis)
    calls = 0

    async def read() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return "row"

    note, other = Change(kind="watch", watch_id="w1"), Change(kind="watch", watch_id="w1")
    results = await asyncio.gather(*(console.shared(note, "row", read) for _ in range(50)))
    assert results == ["row"] * 50 and calls == 1
    await console.shared(other, "row", read)  # an equal but later note is read again
    assert calls == 2
