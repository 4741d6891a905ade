"""Which subscriptions an event goes to, cheaply: the poller asks for every new event.

A worker keeps every enabled subscription's filters in memory and reloads them when
``bridge:subscriptions:version`` moved. The counter is read at most once per
:data:`VERSION_CHECK_S` (events recorded together share one read), so a subscription created or
changed through the API is seen by every worker within that time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from bridge.core.model import Event
from bridge.webhooks.model import SubscriptionDoc, destination, matches
from bridge.webhooks.store import SubscriptionStore

VERSION_CHECK_S: Final = 0.05
"""How stale a worker's subscription list may be. An event is routed when it is recorded, so a
subscription created this long before an event might miss it: short against anything a person
or a client does between creating a subscription and the events it wants."""


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
        if self._clock() - self._checked_at < self._check_every_s:
            return
        async with self._lock:
            if self._clock() - self._checked_at < self._check_every_s:
                return  # another caller checked while this one waited
            version = await self._store.version()
            if version != self._version:
                # Read the table after the version: a change in between is caught next time.
                self._table = await self._store.routing_table()
                self._version = version
                self.reloads += 1
            self._checked_at = self._clock()
