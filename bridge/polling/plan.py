"""From what a poll saw to what it writes: the diff of every watch on the import, each new event
with its destinations and attachments, and when the import is due again (one :class:`CommitPlan`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import msgspec

from bridge.core import diff as diffing
from bridge.core.model import ACTIVE_STATUSES, BulkSeen, Event, MpcBulk, Observation, WatchSnapshot, WatchSpec
from bridge.core.schedule import Intervals, next_due
from bridge.delivery.model import Attacher
from bridge.delivery.routing import DestinationResolver
from bridge.store.redis_store import ClaimedTracker, CommitPlan, NewEvent


class Planner:
    def __init__(
        self,
        *,
        resolver: DestinationResolver,
        intervals: Intervals,
        rules: diffing.Rules,
        attachers: Mapping[str, Attacher] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._resolver = resolver
        self._intervals = intervals
        self._rules = rules
        self._attachers = dict(attachers or {})
        """Destination → what it needs beside an event (see :class:`~bridge.delivery.model.Attacher`)."""
        self._jitter = jitter

    async def plan(
        self, tracker: ClaimedTracker, observation: Observation, retry_soon: bool, now: float
    ) -> CommitPlan:
        snapshots: dict[str, WatchSnapshot] = {}
        ended: dict[str, WatchSnapshot] = {}
        events: list[NewEvent] = []
        changed = False
        busy = retry_soon
        for wid, watch in sorted(tracker.watches.items()):
            result = diffing.diff(watch, tracker.snapshots.get(wid), observation, now, self._rules)
            snapshots[wid] = result.snapshot
            if result.snapshot.state != "active":
                ended[wid] = result.snapshot
            for event in result.events:
                destinations = await self._resolver.destinations(watch, event)
                events.append(
                    NewEvent(
                        watch_id=wid,
                        event=event,
                        destinations=destinations,
                        attachments=self._attachments(event, destinations, observation),
                    )
                )
            changed = changed or bool(result.events) or _changed_at(result.snapshot, now)
            busy = busy or _busy(result.snapshot, watch)
        due, poll_state = next_due(
            tracker.poll_state,
            failure=observation.failure,
            changed=changed,
            busy=busy,
            intervals=self._intervals,
            jitter=self._jitter(),
            now=now,
            sent_at=observation.sent_at,
        )
        return CommitPlan(
            tid=tracker.tid,
            version=tracker.version,
            now=now,
            due=due,
            poll_state=msgspec.structs.replace(poll_state, last_polled=now),
            snapshots=snapshots,
            events=events,
            ended=ended,
        )

    def _attachments(
        self, event: Event, destinations: tuple[str, ...], observation: Observation
    ) -> tuple[tuple[str, bytes], ...]:
        if not self._attachers:
            return ()
        bulk = _seen_bulk(event, observation)
        found = []
        for destination in destinations:
            attacher = self._attachers.get(destination)
            payload = attacher.attach(event, bulk) if attacher is not None else b""
            if payload:
                found.append((destination, payload))
        return tuple(found)


def _seen_bulk(event: Event, observation: Observation) -> MpcBulk | None:
    """The bulk as this poll fetched it, for the event about it (if it was fetched)."""
    bulk_id = event.data.bulk_id
    seen = observation.bulks.get(bulk_id) if isinstance(bulk_id, int) else None
    return seen.bulk if isinstance(seen, BulkSeen) else None


def _changed_at(snapshot: WatchSnapshot, now: float) -> bool:
    return any(b.last_changed == now for b in snapshot.bulks.values())


def _busy(snapshot: WatchSnapshot, watch: WatchSpec) -> bool:
    """MPC's job works on one of the watch's bulks: poll at the minimum interval."""
    return snapshot.state == "active" and any(
        b.status in ACTIVE_STATUSES and not b.missing for b in snapshot.bulks.values()
    )
