"""Asking MPC about one claimed import: which requests, and what their answers show.

A whole-import watch asks the import endpoint (one request shows every bulk's status) and fetches
a bulk only around its changes; named bulks are fetched one by one (:func:`plan_requests`). A
``Retry-After`` pauses the whole club, here and for every worker, the moment it arrives.

Every request first takes a token from the club's budget (:mod:`bridge.upstream.budget`; the takes
of polls running together go to Redis in one round trip). The first request's token of a poll the
loop starts at once came with its claim (:meth:`Observer.claim_budget`), one round trip fewer. A
poll that gets none sends nothing and is ``throttled``: due again when the next token comes. Bulk
fetches that got no token are left for the next poll, which starts at another bulk so none is left
behind for good. At most ``requests_per_poll`` requests of one poll are in flight at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from bridge.core.model import BulkGone, BulkListed, BulkObservation, BulkSeen, Failure, Observation
from bridge.core.schedule import FAILURE_FACTOR, Intervals, bulks_to_fetch, plan_requests
from bridge.metrics import WorkerMetrics
from bridge.store.redis_store import ClaimBudget, ClaimedTracker, RedisStore
from bridge.store.turn import Batcher
from bridge.upstream.budget import ClubBudget, Grant
from bridge.upstream.mpc import MpcResponse, UpstreamClient

BUDGET_BATCH: Final = 500
"""Budget takes sent to Redis in one round trip at most."""
UNAUTHORIZED_FIRST: Final = ("unauthorized", "credentials_unreadable", "rate_limited")
"""Failures that speak for the whole import even when other bulks answered."""
PAUSING_FAILURES: Final = frozenset({"rate_limited", "server_error"})
"""Answers (429, 503) whose ``Retry-After`` pauses every request for the club, not only this import."""


class Observer:
    def __init__(
        self,
        *,
        upstream: UpstreamClient,
        store: RedisStore,
        intervals: Intervals,
        metrics: WorkerMetrics,
        budget: ClubBudget | None = None,
        requests_per_poll: int = 1000,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._upstream = upstream
        self._store = store
        self._intervals = intervals
        self._metrics = metrics
        self._budget = None if budget is None else Batcher(budget.take, BUDGET_BATCH)
        self._claim_budget = None if budget is None else (budget.rate, budget.burst)
        self._requests_per_poll = requests_per_poll
        self._clock = clock
        self._draw = draw
        self._paused: dict[str, float] = {}
        """Club → until when MPC asked (``Retry-After``) not to be called; this worker's own view,
        kept beside the shared one in Redis that the claim step reads."""

    def claim_budget(self, takes: int) -> ClaimBudget | None:
        """What a claim needs to take the first request's token for the first ``takes`` imports it
        claims (``None``: no budget, or no take)."""
        if self._claim_budget is None or takes <= 0:
            return None
        rate, burst = self._claim_budget
        return ClaimBudget(rate=rate, burst=burst, takes=takes)

    def paused_until(self, slug: str) -> float | None:
        """Until when this club must not be called (``None``: it may)."""
        until = self._paused.get(slug)
        if until is not None and until <= self._clock():
            del self._paused[slug]
            return None
        return until

    async def observe(self, slug: str, import_id: str, tracker: ClaimedTracker) -> tuple[Observation, bool]:
        """Ask MPC what it needs to; returns the observation and whether to poll again soon
        (a request that could not be answered this time)."""
        plan = plan_requests(tracker.watches.values(), tracker.snapshots)
        if plan.use_import:
            grant = await self._first_take(slug, 1, tracker)
            if not grant.granted:
                return _throttled(grant), False
            return await self._observe_import(slug, import_id, tracker)
        if not plan.bulks:
            return Observation(bulks={}), False
        grant = await self._first_take(slug, len(plan.bulks), tracker)
        if not grant.granted:
            return _throttled(grant), False
        asked = self._share(plan.bulks, grant.granted)
        answers = await self._fetch_bulks(slug, import_id, asked)
        # The last request sent paces the next poll: no bulk is asked twice within the floor.
        sent_at = max((a.sent_at for a in answers if a.sent_at is not None), default=None)
        failures = [a.failure for a in answers if a.failure is not None and a.failure.kind != "not_found"]
        decisive = [f for f in failures if f.kind in UNAUTHORIZED_FIRST]
        if decisive or (failures and len(failures) == len(answers)):
            return Observation(failure=(decisive or failures)[0], sent_at=sent_at), False
        observed = {b: seen for b, a in zip(asked, answers, strict=True) if (seen := _bulk_observation(a))}
        return Observation(bulks=observed, sent_at=sent_at), bool(failures) or len(asked) < len(plan.bulks)

    async def _observe_import(
        self, slug: str, import_id: str, tracker: ClaimedTracker
    ) -> tuple[Observation, bool]:
        answer = await self._upstream.get_import(slug, import_id)
        await self._record("import", answer, slug)
        sent_at = answer.sent_at  # the import request paces the polls; bulk details follow it
        if answer.value is None:
            return Observation(failure=answer.failure, sent_at=sent_at), False
        listing = {b.id: b.status for b in answer.value.bulks}
        bulks: dict[int, BulkObservation] = {
            b.id: BulkListed(status=b.status, request_number=b.request_number) for b in answer.value.bulks
        }
        wanted = bulks_to_fetch(listing, tracker.watches.values(), tracker.snapshots)
        retry_soon = False
        if wanted and self.paused_until(slug) is not None:
            # Another poll of this club was told to wait meanwhile: these details come later.
            for bulk_id in wanted:
                bulks.pop(bulk_id, None)
            return Observation(bulks=bulks, listing=frozenset(listing), sent_at=sent_at), True
        asked = wanted
        if wanted:
            grant = await self._take(slug, len(wanted))
            asked = self._share(wanted, grant.granted)
            for bulk_id in set(wanted) - set(asked):
                bulks.pop(bulk_id, None)  # no budget left for its details: they come next poll
                retry_soon = True
        for bulk_id, fetched in zip(asked, await self._fetch_bulks(slug, import_id, asked), strict=True):
            seen = _bulk_observation(fetched)
            if seen is None:
                bulks.pop(bulk_id, None)  # unknown this time: asked again next poll
                retry_soon = True
            else:
                bulks[bulk_id] = seen
        return Observation(bulks=bulks, listing=frozenset(listing), sent_at=sent_at), retry_soon

    async def _first_take(self, slug: str, wanted: int, tracker: ClaimedTracker) -> Grant:
        """The tokens of a poll's first requests: the one its claim took, if it took one, and
        the rest from the budget."""
        if tracker.first_token is None or self._budget is None:
            return await self._take(slug, wanted)
        granted, next_token_s = tracker.first_token
        if not granted or wanted <= 1:
            return Grant(granted, next_token_s)
        more = await self._take(slug, wanted - 1)
        return Grant(1 + more.granted, more.next_token_s)

    async def _take(self, slug: str, wanted: int) -> Grant:
        if self._budget is None:
            return Grant(wanted, 0.0)
        return await self._budget.submit((slug, wanted))

    def _share(self, bulk_ids: Iterable[int], granted: int) -> list[int]:
        """The bulks that got a token: all of them, or ``granted`` from a random place on, so
        that a budget shorter than the list still reaches every bulk over a few polls."""
        ids = list(bulk_ids)
        if granted >= len(ids):
            return ids
        start = int(self._draw() * len(ids))
        return sorted((ids[start:] + ids[:start])[:granted])

    async def _fetch_bulks(
        self, slug: str, import_id: str, bulk_ids: Iterable[int]
    ) -> list[MpcResponse[Any]]:
        ids = list(bulk_ids)
        if len(ids) == 1:
            return [await self._get_bulk(slug, import_id, ids[0])]
        slots = asyncio.Semaphore(self._requests_per_poll)

        async def one(bulk_id: int) -> MpcResponse[Any]:
            async with slots:
                return await self._get_bulk(slug, import_id, bulk_id)

        return list(await asyncio.gather(*(one(b) for b in ids)))

    async def _get_bulk(self, slug: str, import_id: str, bulk_id: int) -> MpcResponse[Any]:
        answer = await self._upstream.get_bulk(slug, import_id, bulk_id)
        await self._record("bulk", answer, slug)
        return answer

    async def _record(self, endpoint: str, answer: MpcResponse[Any], slug: str) -> None:
        """Count an answer; a ``Retry-After`` in it pauses the club at once, here and for every
        worker (not when this poll ends: its other requests may take a while yet)."""
        failure = answer.failure
        outcome = failure.kind if failure is not None else "ok"
        self._metrics.upstream(endpoint, outcome, answer.elapsed_s)
        if failure is None or failure.kind not in PAUSING_FAILURES:
            return
        wait = failure.retry_after
        if wait is None and failure.kind == "rate_limited":
            wait = self._intervals.min_s * FAILURE_FACTOR  # a 429 without Retry-After
        if wait is not None:
            until = self._clock() + min(wait, self._intervals.retry_after_max_s)
            if until > self._paused.get(slug, 0.0):
                self._paused[slug] = until
                await self._store.pause_club(slug, until)


def _throttled(grant: Grant) -> Observation:
    return Observation(
        failure=Failure(
            kind="throttled", detail="the club's request budget is spent", retry_after=grant.next_token_s
        )
    )


def _bulk_observation(answer: MpcResponse[Any]) -> BulkObservation | None:
    if answer.value is not None:
        return BulkSeen(bulk=answer.value)
    if answer.failure is not None and answer.failure.kind == "not_found":
        return BulkGone()
    return None
