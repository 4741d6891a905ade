"""The outbox as the delivery queue: claims lease due entries, retries postpone them, a delivered
one leaves with its mark, on a real Redis."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from bridge.store import keys
from bridge.store.redis_store import RedisStore, now_ms

LEASE_S = 30.0


async def test_a_claim_leases_due_entries_with_their_state_and_says_when_the_next_falls_due(
    redis: Redis,
) -> None:
    store = RedisStore(redis, retention_s=3600)
    now = time.time()
    await redis.set(keys.event("evt_1"), b"{}")
    await redis.set(keys.delivered("evt_2", "log"), b"1")
    await redis.zadd(
        keys.OUTBOX,
        {
            keys.outbox_entry("evt_1", "sub:s1"): now_ms(now - 1),
            keys.outbox_entry("evt_2", "log"): now_ms(now - 2),
            keys.outbox_entry("evt_3", "log"): now_ms(now + 100),
        },
    )
    claim = await store.claim_deliveries(now, 10, LEASE_S)
    by_entry = {(c.event_id, c.destination): c for c in claim.claimed}
    assert set(by_entry) == {("evt_1", "sub:s1"), ("evt_2", "log")}
    assert by_entry["evt_1", "sub:s1"].body == b"{}" and not by_entry["evt_1", "sub:s1"].delivered
    assert by_entry["evt_2", "log"].delivered and by_entry["evt_2", "log"].body is None
    assert claim.looked and claim.next_due is not None and abs(claim.next_due - (now + 30)) < 1
    assert await redis.zscore(keys.OUTBOX, keys.outbox_entry("evt_1", "sub:s1")) == now_ms(now + LEASE_S)
    again = await store.claim_deliveries(now, 10, LEASE_S)
    assert again.claimed == []  # leased: another worker does not take it
    after_lease = await store.claim_deliveries(now + LEASE_S + 1, 10, LEASE_S)
    assert len(after_lease.claimed) == 2  # its worker died: due again


async def test_a_full_claim_does_not_look_further_and_a_retry_counts_a_try(redis: Redis) -> None:
    store = RedisStore(redis, retention_s=3600)
    now = time.time()
    await redis.zadd(keys.OUTBOX, {keys.outbox_entry(f"evt_{i}", "log"): now_ms(now - 1) for i in range(3)})
    claim = await store.claim_deliveries(now, 2, LEASE_S)
    assert len(claim.claimed) == 2 and not claim.looked and claim.next_due is None
    await store.postpone_in_outbox("evt_0", "log", now - 0.5)
    retried = [c for c in (await store.claim_deliveries(now, 5, LEASE_S)).claimed if c.event_id == "evt_0"]
    assert retried[0].tries == 1


async def test_a_delivered_entry_leaves_the_outbox_with_its_mark_and_is_not_brought_back(
    redis: Redis,
) -> None:
    store = RedisStore(redis, retention_s=3600)
    now = time.time()
    await redis.set(keys.event("evt_1"), b"{}")
    await redis.zadd(keys.OUTBOX, {keys.outbox_entry("evt_1", "log"): now_ms(now - 1)})
    await store.postpone_in_outbox("evt_1", "log", now - 1)
    (claimed,) = (await store.claim_deliveries(now, 5, LEASE_S)).claimed
    await store.settle_delivered(claimed)
    assert await redis.zcard(keys.OUTBOX) == 0 and await store.was_delivered("evt_1", "log")
    assert await redis.exists(keys.outbox_tries("evt_1", "log")) == 0
    await store.postpone_in_outbox("evt_1", "log", now)  # a late retry of a settled delivery
    await store.hand_back([("evt_1", "log")], now)
    assert await redis.zcard(keys.OUTBOX) == 0
    assert await redis.exists(keys.outbox_tries("evt_1", "log")) == 0
