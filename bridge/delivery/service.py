"""Running one delivery claimed from the outbox: hand the event to the destination's notifier,
record what happened.

Safe to repeat: a destination that already has the event is skipped, so a delivery claimed a
second time (a worker killed while it held it, its lease ran out) sends nothing twice, except in
the instant between a notifier's success and its record.

A delivery cancelled while it sends (a worker's drain ran out on SIGTERM, or the delivery
timeout) lets that send end and be recorded first, for up to ``in_flight_grace_s``: the
destination may already have it, and the next run must skip it rather than send it again. A
worker keeps that grace inside its drain window (:func:`bridge.worker.settings.in_flight_grace`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Final

from bridge.core.codec import decode_event
from bridge.delivery.model import Delivery, Notifier, SendResult, destination_kind
from bridge.logs import get_logger
from bridge.metrics import WorkerMetrics
from bridge.store.redis_store import ClaimedDelivery, RedisStore

RETRY_DEFAULT_S: Final = 5.0
IN_FLIGHT_GRACE_S: Final = 5.0
"""How long a cancelled job still lets its send in flight end and be recorded, at most."""
SINK_OF_KIND: Final = {"log": "log", "slack": "slack", "sub": "webhook"}
"""The ``sink`` label of the deliveries metric for each destination kind."""


class RetryLater(Exception):
    """The delivery runs again after ``defer_s`` (its outbox entry is due then already)."""

    def __init__(self, defer_s: float, detail: str) -> None:
        super().__init__(detail)
        self.defer_s = defer_s


class Deliveries:
    def __init__(
        self,
        store: RedisStore,
        notifiers: Mapping[str, Notifier],
        metrics: WorkerMetrics | None = None,
        logger: Any = None,
        in_flight_grace_s: float = IN_FLIGHT_GRACE_S,
    ) -> None:
        self._store = store
        self._grace_s = in_flight_grace_s
        self._notifiers = notifiers
        self._metrics = metrics or WorkerMetrics()
        self._log = logger or get_logger("bridge.delivery")

    async def run(self, claimed: ClaimedDelivery) -> SendResult:
        """Deliver what the claim read (the delivered mark and the event came with it)."""
        eid, destination, body = claimed.event_id, claimed.destination, claimed.body
        if claimed.delivered:
            await self._store.drop_from_outbox(eid, destination)
            return SendResult.delivered()
        notifier = self._notifiers.get(destination_kind(destination))
        if body is None or notifier is None:
            reason = (
                "event no longer stored" if body is None else "no notifier configured for this destination"
            )
            self._log.warning("delivery dropped", event_id=eid, destination=destination, reason=reason)
            await self._store.drop_from_outbox(eid, destination)
            return SendResult(outcome="failed", detail=reason)
        delivery = Delivery(
            destination=destination, event=decode_event(body), body=body, attempt=claimed.tries + 1
        )
        sending = asyncio.ensure_future(self._send(notifier, claimed, delivery))
        try:
            return await asyncio.shield(sending)
        except asyncio.CancelledError:
            if not sending.done():
                self._log.info("delivery cancelled mid-send: letting the send end", event_id=eid)
                await asyncio.wait([sending], timeout=self._grace_s)
                sending.cancel()
            if sending.done() and not sending.cancelled():
                sending.exception()  # retrieved: a RetryLater here is already recorded in the outbox
            raise

    async def _send(self, notifier: Notifier, claimed: ClaimedDelivery, delivery: Delivery) -> SendResult:
        """Send, then record what happened (delivered, retry later, failed for good)."""
        eid, destination = delivery.event.id, delivery.destination
        result = await notifier.send(delivery)
        self._metrics.delivery(SINK_OF_KIND.get(destination_kind(destination), "other"), result.outcome)
        if result.outcome == "delivered":
            await self._store.settle_delivered(claimed, record=result.record)
            return SendResult.delivered()  # the record is written: what is left is the outcome
        if result.outcome == "retry":
            defer_s = result.retry_after_s or RETRY_DEFAULT_S
            # The entry's score is when it is due: the delivery loops leave it alone until then.
            await self._store.postpone_in_outbox(eid, destination, time.time() + defer_s)
            raise RetryLater(defer_s, result.detail)
        self._log.warning(
            "delivery failed for good", event_id=eid, destination=destination, detail=result.detail
        )
        await self._store.drop_from_outbox(eid, destination)
        return result
