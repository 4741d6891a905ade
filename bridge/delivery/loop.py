"""The delivery loop of a worker: the outbox is the delivery queue.

Every pending delivery is an outbox entry (``event|destination``), written with its event by the
commit script or by ``record_explicit``; its score is when it is next due. The loop claims due
entries in batches, as many as it has free slots (``BRIDGE_WORKER_MAX_JOBS``), with one script
that also moves each one's score to the end of a lease: a worker killed while it holds a delivery
leaves it to be claimed again when the lease ends. A delivery asked to retry later gets the retry's
time as its score; a delivered or failed one leaves the outbox.

The loop sleeps until something happens: deliveries this process recorded (:meth:`dispatch`), a
message on the queue's wake channel (another process recorded some), a slot freed while due
entries wait, or the earliest score in the outbox (a retry, a lease) coming due; without any of
these it still looks every ``poll_delay_s``.

On stop it claims nothing more; running deliveries get the drain window to end, and what still
runs at its end is cancelled and handed back (due again at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any, Final

import structlog
from redis.exceptions import RedisError

from bridge.core.wake import sleep_until_set
from bridge.delivery.service import Deliveries, RetryLater
from bridge.logs import get_logger
from bridge.redis_url import outage_wait_s
from bridge.store import keys
from bridge.store.redis_store import ClaimedDelivery, RedisStore

CLAIM_MAX: Final = 500
"""Most deliveries claimed by one script run (its arguments must fit Lua's stack)."""
REFILL_SHARE: Final = 8
"""While due entries wait, a freed slot wakes the loop only once this share of the slots is free
(a claim per finished delivery would cost more Redis commands than the delivery itself)."""
LOOK_MIN_S: Final = 0.005
"""Shortest sleep before an entry falls due (one due in a microsecond is claimed now)."""
CRASHED_RETRY_S: Final = 30.0
"""A delivery that ended on an unexpected error (or its timeout) is due again this much later."""

log = get_logger("bridge.worker")


class DeliveryLoop:
    """Claims due deliveries from the outbox and runs them, up to ``max_jobs`` at a time."""

    def __init__(
        self,
        *,
        store: RedisStore,
        deliveries: Deliveries,
        redis: Any,
        max_jobs: int,
        lease_s: float,
        timeout_s: float,
        poll_delay_s: float,
    ) -> None:
        self._store = store
        self._deliveries = deliveries
        self._redis = redis
        self._max_jobs = max_jobs
        self._lease_s = lease_s
        self._timeout_s = timeout_s
        self._poll_delay_s = poll_delay_s
        self._refill_at = max(1, max_jobs // REFILL_SHARE)
        self._wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], ClaimedDelivery] = {}
        self._backlog = False
        """The last claim took as many as it could: more may be due (a freed slot may take one)."""
        self._stopping = False
        self.delivered = 0
        """Deliveries this loop ran to an end (any outcome)."""

    @property
    def free(self) -> int:
        return self._max_jobs - len(self._running)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running(self) -> int:
        return len(self._running)

    def wake(self) -> None:
        """Look at the outbox now (new entries were written, or one may be due)."""
        self._wake.set()

    async def dispatch(self, event_id: str, destinations: Iterable[str]) -> int:
        """Deliveries of ``event_id`` were recorded in this process: this loop takes them at once;
        what it has no free slot for is announced to the other workers' loops."""
        del event_id
        count = len(set(destinations))
        if count == 0:
            return 0
        self._wake.set()
        if self._stopping or self.free < count:
            await announce(self._redis)
        return count

    async def run(self) -> None:
        """Claim and start deliveries until :meth:`stop`."""
        failures = 0
        while not self._stopping:
            self._wake.clear()  # what happens during the claim wakes the next one at once
            sleep_s = self._poll_delay_s
            free = min(self.free, CLAIM_MAX)
            if free > 0:
                now = time.time()
                try:
                    claim = await self._store.claim_deliveries(now, free, self._lease_s)
                except (RedisError, OSError) as exc:
                    failures += 1
                    delay = outage_wait_s(failures)
                    log.warning("redis unavailable, delivery loop waits", error=repr(exc), retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                if self.stopping:  # stopped during the claim: what it took goes back at once
                    await self._hand_back(claim.claimed)
                    return
                for claimed in claim.claimed:
                    self._start(claimed)
                self._backlog = not claim.looked
                if self._backlog and self.free > 0:
                    continue
                if claim.next_due is not None:
                    sleep_s = min(sleep_s, max(claim.next_due - time.time(), LOOK_MIN_S))
            await sleep_until_set(self._wake, sleep_s)

    def _start(self, claimed: ClaimedDelivery) -> None:
        task = asyncio.get_running_loop().create_task(self._run_one(claimed))
        self._running[task] = claimed
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        if self._backlog and self.free >= self._refill_at:
            self._wake.set()

    async def _run_one(self, claimed: ClaimedDelivery) -> None:
        # The task's own context (a copy made when it was created): bound here, gone with it.
        structlog.contextvars.bind_contextvars(
            event_id=claimed.event_id, destination=claimed.destination, attempt=claimed.tries + 1
        )
        try:
            async with asyncio.timeout(self._timeout_s):  # no task of its own, unlike wait_for
                await self._deliveries.run(claimed)
        except RetryLater as retry:
            log.info("delivery retried later", retry_in_s=round(retry.defer_s, 3), reason=str(retry))
            self._look_again_in(retry.defer_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a timeout, Redis, a notifier's bug: try later
            log.error("delivery crashed; due again later", error=repr(exc), retry_in_s=CRASHED_RETRY_S)
            with contextlib.suppress(RedisError, OSError):  # else its lease ends anyway
                await self._store.postpone_in_outbox(
                    claimed.event_id, claimed.destination, time.time() + CRASHED_RETRY_S
                )
            self._look_again_in(CRASHED_RETRY_S)
        finally:
            self.delivered += 1

    def _look_again_in(self, delay_s: float) -> None:
        """A delivery of this loop's was postponed: it is due again then, and the loop's sleep was
        planned while it was still leased (nothing else announces it)."""
        asyncio.get_running_loop().call_later(max(delay_s, LOOK_MIN_S), self._wake.set)

    async def stop(self, drain_s: float, grace_s: float, signal_name: str = "SIGTERM") -> list[str]:
        """Claim nothing more; let running deliveries end within ``drain_s`` (the last ``grace_s``
        of it for sends in flight when cancelled); hand back what is still running. Returns the
        outbox entries cut short."""
        self._stopping = True
        self._wake.set()
        log.info(f"deliveries: shutdown on {signal_name} ◆ {self.running} to be completed")
        if self._running:
            await asyncio.wait(list(self._running), timeout=max(drain_s - grace_s, 0.0))
        left = {task: claimed for task, claimed in self._running.items() if not task.done()}
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
            await self._hand_back(left.values())
        return [keys.outbox_entry(c.event_id, c.destination) for c in left.values()]

    async def _hand_back(self, claimed: Iterable[ClaimedDelivery]) -> None:
        try:
            await self._store.hand_back([(c.event_id, c.destination) for c in claimed], time.time())
        except (RedisError, OSError) as exc:
            log.warning("deliveries not handed back; their leases return them", error=repr(exc))


async def announce(redis: Any) -> None:
    """Tell the delivery loops of every worker that the outbox has new entries (best effort: a loop
    that misses it still looks every ``poll_delay_s``)."""
    try:
        await redis.publish(keys.QUEUE_WAKE_CHANNEL, b"")
    except (RedisError, OSError):
        return
