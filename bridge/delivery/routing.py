"""Which destinations an event goes to, decided when it is recorded (one outbox entry each)."""

from __future__ import annotations

from typing import Protocol

from bridge.core.model import Event, WatchSpec
from bridge.delivery.model import LOG, SLACK


class SubscriptionSource(Protocol):
    """The webhook subscriptions an event matches (their destinations, ``sub:<id>``)."""

    async def matching(self, event: Event) -> list[str]: ...


class DestinationResolver:
    def __init__(self, *, log: bool, slack: bool, subscriptions: SubscriptionSource | None = None) -> None:
        self._log = log
        self._slack = slack
        self._subscriptions = subscriptions

    async def destinations(self, watch: WatchSpec, event: Event) -> tuple[str, ...]:
        found: list[str] = []
        if self._log:
            found.append(LOG)
        if self._slack and watch.slack is not None:
            found.append(SLACK)
        if self._subscriptions is not None:
            found += await self._subscriptions.matching(event)
        return tuple(found)
