"""The webhook notifier: one attempt per run of a delivery, logged, then delivered / retry / failed.

Each run loads the subscription (deleted: give up; disabled: give up, unless someone asked for
this delivery explicitly), signs the stored event body with the current secret (and the previous
one during its 24 h), checks the URL, POSTs, and appends the attempt to the delivery's log. A
failure is retried on the schedule (:mod:`bridge.webhooks.retry`) by answering ``retry``: the
delivery's outbox entry is due again then, and holds no worker slot while it waits. A 410
disables the subscription; so does failing continuously for 5 days. Repeating a run after it was
recorded sends nothing again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from bridge.crypto import SecretUnreadable
from bridge.delivery.model import Delivery, SendResult
from bridge.logs import get_logger
from bridge.webhooks.guard import REFUSAL_MESSAGE, Refused, UrlGuard
from bridge.webhooks.model import (
    Attempt,
    Subscription,
    WebhookDelivery,
    event_delivery_id,
    parse_destination,
)
from bridge.webhooks.payload import bounded_body
from bridge.webhooks.retry import RETRY_AFTER_STATUSES, RetryPolicy, read_retry_after
from bridge.webhooks.sender import HttpOutcome, WebhookSender
from bridge.webhooks.signing import secret_key, webhook_headers
from bridge.webhooks.store import Sealed, SecretsMissing, Signing, SubscriptionStore

GONE_STATUS: Final = 410
NOT_CONFIGURED_RETRY_S: Final = 60.0
"""A worker without (or with the wrong) ``BRIDGE_SECRET_KEY`` cannot sign: it asks again later, and
says so in its log, rather than dropping the event."""


class WebhookNotifier:
    def __init__(
        self,
        store: SubscriptionStore,
        sender: WebhookSender,
        guard: UrlGuard,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
        logger: Any = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._guard = guard
        self._policy = policy
        self._clock = clock
        self._draw = draw
        self._log = logger or get_logger("bridge.webhooks")

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def send(self, delivery: Delivery) -> SendResult:
        sid, explicit_id = parse_destination(delivery.destination)
        event = delivery.event
        now = self._clock()
        # Both reads in one round trip: one turn of a busy loop instead of two. The subscription's
        # hash holds its sealed secrets too: one read for both.
        did = explicit_id or event_delivery_id(event.id, sid)
        found, stored = await self._store.get_sealed_and_delivery(sid, did)
        record = stored or self._new_record(delivery, sid, did, explicit_id, now)
        if found is None:
            self._log.info("webhook dropped: subscription deleted", subscription_id=sid, event_id=event.id)
            return SendResult(outcome="failed", detail="subscription deleted")
        subscription, sealed = found
        if record.state != "pending":
            # Already settled by an earlier run of this delivery (killed before it could report).
            return SendResult(outcome="delivered" if record.state == "delivered" else "failed")
        if not subscription.enabled and not record.explicit:
            return await self._give_up(record, f"subscription disabled ({subscription.disabled_reason})")
        signing = self._signing(sid, sealed, now)
        if isinstance(signing, Exception):
            self._log.error(
                "webhook cannot be signed", subscription_id=sid, event_id=event.id, error=str(signing)
            )
            return SendResult(outcome="retry", retry_after_s=NOT_CONFIGURED_RETRY_S, detail=str(signing))
        if signing is None:
            return SendResult(outcome="failed", detail="subscription deleted")
        keys = [secret_key(signing.current)]
        if signing.previous is not None:
            keys.append(secret_key(signing.previous))
        body = bounded_body(delivery.body)
        headers = webhook_headers(keys, event.id, int(now), body)
        outcome = await self._attempt(subscription, headers, body)
        return await self._settle(subscription, record, outcome, now)

    def _signing(
        self, sid: str, sealed: Sealed, now: float
    ) -> Signing | None | SecretsMissing | SecretUnreadable:
        try:
            return self._store.open_signing(sid, sealed, now)
        except (SecretsMissing, SecretUnreadable) as exc:
            return exc

    @staticmethod
    def _new_record(
        delivery: Delivery, sid: str, did: str, explicit_id: str | None, now: float
    ) -> WebhookDelivery:
        return WebhookDelivery(
            id=did,
            subscription_id=sid,
            event_id=delivery.event.id,
            event_type=delivery.event.type,
            kind="event" if explicit_id is None else "redelivery",
            created_at=now,
        )

    async def _attempt(self, subscription: Subscription, headers: dict[str, str], body: bytes) -> HttpOutcome:
        url = subscription.doc.url
        try:
            target = self._guard.preflight(url)
        except Refused as refused:
            return HttpOutcome(duration_ms=0, error="blocked", detail=REFUSAL_MESSAGE, refusal=refused.reason)
        return await self._sender.post(target, url, headers, body)

    async def _settle(
        self, subscription: Subscription, record: WebhookDelivery, outcome: HttpOutcome, now: float
    ) -> SendResult:
        sid = subscription.id
        attempt = Attempt(
            at=now,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            error=outcome.error,
            detail=outcome.detail,
            response_body=outcome.response_body,
        )
        made = len(record.attempts) + 1
        context = {
            "subscription_id": sid,
            "delivery_id": record.id,
            "event_id": record.event_id,
            "attempt": made,
            "status": outcome.status_code,
            "error": outcome.error,
        }
        if outcome.refusal is not None:
            # Why the destination was refused: the operator's to know, not the API caller's.
            context["refused"] = outcome.refusal
        if attempt.succeeded:
            record.attempts.append(attempt)
            record.state, record.next_attempt_at = "delivered", None
            self._log.info("webhook delivered", duration_ms=outcome.duration_ms, **context)
            # The log and the subscription's health are written with the delivered mark, in one step.
            written = self._store.delivered_record(record, subscription, now)
            return SendResult(outcome="delivered", record=written)
        if outcome.status_code == GONE_STATUS:
            record.attempts.append(attempt)
            await self._store.disable(sid, "gone", now)
            self._log.warning("webhook receiver answered 410 Gone: subscription disabled", **context)
            return await self._give_up(record, "the receiver answered 410 Gone: subscription disabled")
        failing_since = await self._store.record_failure(sid, now)
        if self._policy.should_disable(failing_since, now):
            record.attempts.append(attempt)
            await self._store.disable(sid, "failing", now)
            self._log.warning("webhook subscription failing for too long: disabled", **context)
            return await self._give_up(record, "the subscription kept failing and was disabled")
        retry_after = (
            read_retry_after(outcome.retry_after, now)
            if outcome.status_code in RETRY_AFTER_STATUSES
            else None
        )
        wait = self._policy.wait(made, self._draw(), retry_after)
        if wait is None:
            record.attempts.append(attempt)
            # No detail in the log: error texts may quote the URL, and URLs may carry tokens.
            self._log.warning("webhook failed for good", **context)
            return await self._give_up(record, f"gave up after {made} attempts")
        next_at = self._clock() + wait  # the retry is due from when this run ends
        record.attempts.append(msgspec.structs.replace(attempt, next_attempt_at=next_at))
        record.next_attempt_at = next_at
        await self._store.save_delivery(record)
        self._log.info("webhook attempt failed, will retry", retry_in_s=round(wait, 3), **context)
        return SendResult(
            outcome="retry", retry_after_s=wait, detail=outcome.detail or str(outcome.status_code)
        )

    async def _give_up(self, record: WebhookDelivery, reason: str) -> SendResult:
        record.state, record.next_attempt_at, record.detail = "failed", None, reason
        await self._store.save_delivery(record)
        return SendResult(outcome="failed", detail=reason)
