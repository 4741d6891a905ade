"""The log notifier: every event as one structured log line."""

from __future__ import annotations

from typing import Any

from bridge.delivery.model import Delivery, SendResult
from bridge.logs import get_logger


class LogNotifier:
    def __init__(self, logger: Any = None) -> None:
        self._log = logger or get_logger("bridge.events")

    async def send(self, delivery: Delivery) -> SendResult:
        event = delivery.event
        data = event.data
        self._log.info(
            "event",
            type=event.type,
            event_id=data.event_id,
            watch_id=data.watch_id,
            loyalty_club_slug=data.loyalty_club_slug,
            import_id=data.import_id,
            bulk_id=data.bulk_id or None,
            sequence=data.sequence,
            status=data.status or None,
            previous_status=data.previous_status or None,
            outcome=data.outcome or None,
        )
        return SendResult.delivered()
