"""Which subscriptions an event goes to, cheaply: the poller asks for every new event.

A worker keeps every enabled subscription's filters in memory and reloads them only when
``bridge:subscriptions:version`` moved: one ``GET`` per event (events are rare next to polls),
so an event recorded after the API answered a subscription's creation goes to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from bridge.core.model import Event
from bridge.webhooks.model import SubscriptionDoc, destination, matches
from bridge.webhooks.store import SubscriptionStore

VERSION_CHECK_S: Final = 0.0
"""How stale a worker's subscription list may be (0: the version is read for every event). An
event is routed when it is recorded: a subscription created within this time before an event
could miss it."""


class SubscriptionIndex:
    """The ``SubscriptionSource`` of :mod:`bridge.delivery.routing`."""

    def __init__(
        self,
        store: SubscriptionStore,
        *,
        check_every_s: float = VERSION_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._check_every_s = check_every_s
        self._clock = clock
        self._version: int | None = None
        self._checked_at = float("-inf")
        self._table: list[tuple[str, SubscriptionDoc]] = []
        self._lock = asyncio.Lock()
        self.reloads = 0

    async def matching(self, event: Event) -> list[str]:
        """Destinations (``sub:<id>``) of the enabled subscriptions whose filters match."""
        await self._refresh()
        return [destination(sid) for sid, doc in self._table if matches(doc, event)]

    async def _refresh(self) -> None:
        if self._check_every_s and self._clock() - self._checked_at < self._check_every_s:
            return
        version = await self._store.version()
        self._checked_at = self._clock()
        if self._version is not None and version <= self._version:
            return
        async with self._lock:  # one reload at a time; the others find it done
            if self._version is not None and version <= self._version:
                return
            # Read after the version: a change in between shows as a newer version next time.
            self._table = await self._store.routing_table()
            self._version = version
            self.reloads += 1
