"""The poll loop of a worker process: claim due imports, ask MPC, diff, commit, dispatch.

It runs beside arq's job loop in every worker (arq carries deliveries and their retries; one arq
job per poll would cost ~23 Redis commands, SPEC "Performance budget"). Imports are claimed from
a Redis schedule in batches with a lease, so any number of workers share the load and no import
is polled by two of them at once; a worker that dies leaves leases that run out, and its imports
are polled again, computing the same event ids. Commits of polls that finish together go to
Redis in one pipeline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Generic, TypeVar

import msgspec
from redis.exceptions import RedisError

from bridge.core import diff as diffing
from bridge.core import member_errors
from bridge.core.model import (
    ACTIVE_STATUSES,
    BulkGone,
    BulkListed,
    BulkObservation,
    BulkSeen,
    Event,
    Observation,
    WatchSnapshot,
    WatchSpec,
)
from bridge.core.pacing import LAG_PROBE_EVERY_S, Pacing, initial_limit, next_limit
from bridge.core.schedule import FAILURE_FACTOR, Intervals, bulks_to_fetch, next_delay, plan_requests
from bridge.delivery.model import SLACK
from bridge.delivery.routing import DestinationResolver
from bridge.logs import get_logger
from bridge.metrics import WorkerMetrics
from bridge.redis_url import outage_wait_s
from bridge.store.redis_store import ClaimedTracker, CommitPlan, CommitResult, NewEvent, RedisStore
from bridge.upstream.mpc import MpcResponse, UpstreamClient

CLAIM_BATCH_MAX: Final = 256
"""Imports claimed in one round trip."""
PREFETCH_FACTOR: Final = 2.0
"""Imports claimed ahead: up to this many times the concurrency, running and waiting together."""
IDLE_SLEEP_MAX_S: Final = 0.25
"""Longest sleep between two looks at the schedule (a new watch is due at once)."""
UNAUTHORIZED_FIRST: Final = ("unauthorized", "rate_limited")
PAUSING_FAILURES: Final = frozenset({"rate_limited", "server_error"})
"""Answers (429, 503) whose ``Retry-After`` pauses every request for the club, not only this import."""
UNMASKED_ERROR_TYPES: Final = frozenset({"bulk.finished", "bulk.failed"})
"""The events whose errors summary Slack may show unmasked (``BRIDGE_SLACK_SHOW_PII``)."""

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Collects items submitted during one turn of the event loop and flushes them together."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]], max_batch: int) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


class PollerConfig(msgspec.Struct, frozen=True, kw_only=True):
    intervals: Intervals
    concurrency: int
    rules: diffing.Rules
    unmasked_errors: bool = False
    """Store an unmasked errors summary beside events going to Slack (``BRIDGE_SLACK_SHOW_PII``)."""


class Poller:
    def __init__(
        self,
        *,
        store: RedisStore,
        upstream: UpstreamClient,
        config: PollerConfig,
        dispatch: Callable[[str, Iterable[str]], Awaitable[int]],
        resolver: DestinationResolver,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        metrics: WorkerMetrics | None = None,
        logger: Any = None,
    ) -> None:
        self._store = store
        self._upstream = upstream
        self._config = config
        self._dispatch = dispatch
        self._resolver = resolver
        self._clock = clock
        self._jitter = jitter
        self._metrics = metrics or WorkerMetrics()
        self._log = logger or get_logger("bridge.poller")
        self._committer: Batcher[CommitPlan, CommitResult] = Batcher(store.commit_many, CLAIM_BATCH_MAX)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ready: collections.deque[ClaimedTracker] = collections.deque()
        """Claimed ahead, not started yet (their leases run)."""
        self._pacing = Pacing(ceiling=config.concurrency)
        self._limit = initial_limit(self._pacing)
        """Polls at once now (see :mod:`bridge.core.pacing`)."""
        self._wake = asyncio.Event()
        self._paused: dict[str, float] = {}
        """Club → until when MPC asked (``Retry-After``) not to be called; this worker's own view,
        kept beside the shared one in Redis that the claim step reads."""
        self._stopping = False
        self.polls = 0
        self.events = 0

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Poll until :meth:`stop`.

        Due imports are claimed ahead, up to :data:`PREFETCH_FACTOR` times the concurrency, and
        started as slots free up: one claim round trip serves many polls, instead of one claim
        per finished poll. The concurrency adapts to the loop's lag (:mod:`bridge.core.pacing`).
        """
        redis_failures = 0
        pacer = asyncio.get_running_loop().create_task(self._pace())
        try:
            while not self._stopping:
                redis_failures = await self._turn(redis_failures)
        finally:
            pacer.cancel()
            await asyncio.gather(pacer, return_exceptions=True)

    async def _pace(self) -> None:
        """Adapt the number of polls at once to the loop's lag, every :data:`LAG_PROBE_EVERY_S`."""
        loop = asyncio.get_running_loop()
        while True:
            started, cpu_started = loop.time(), time.process_time()
            await asyncio.sleep(LAG_PROBE_EVERY_S)
            elapsed = loop.time() - started
            self._limit = next_limit(
                self._limit,
                lag_s=elapsed - LAG_PROBE_EVERY_S,
                cpu_share=(time.process_time() - cpu_started) / elapsed,
                wanting=bool(self._ready) and len(self._tasks) >= self._limit,
                pacing=self._pacing,
            )

    async def _turn(self, redis_failures: int) -> int:
        """Start what may start, claim more when few are left; the count of Redis failures in a row."""
        self._start_ready()
        room = int(self._limit * PREFETCH_FACTOR) - len(self._tasks) - len(self._ready)
        if len(self._ready) >= max(1, self._limit // 2) or room <= 0:
            await self._sleep(IDLE_SLEEP_MAX_S)  # a finished poll wakes us
            return redis_failures
        limit = min(room, CLAIM_BATCH_MAX)
        try:
            claim = await self._store.claim(self._clock(), limit)
        except (RedisError, OSError) as exc:
            redis_failures += 1
            delay = outage_wait_s(redis_failures)
            self._log.warning("redis unavailable, poller waits", error=repr(exc), retry_in_s=delay)
            await self._sleep(delay)
            return redis_failures
        self._ready.extend(claim.trackers)
        if len(claim.trackers) < limit and not self._ready:
            wait = IDLE_SLEEP_MAX_S
            if claim.next_due is not None:
                wait = min(wait, max(0.0, claim.next_due - self._clock()))
            await self._sleep(wait)
        return 0

    def _start_ready(self) -> None:
        while self._ready and len(self._tasks) < self._limit:
            self._spawn(self._ready.popleft())

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _spawn(self, tracker: ClaimedTracker) -> None:
        task = asyncio.get_running_loop().create_task(self._poll_guarded(tracker))
        self._tasks[tracker.tid] = task

        def done(_: asyncio.Task[None], tid: str = tracker.tid) -> None:
            self._tasks.pop(tid, None)
            self._wake.set()

        task.add_done_callback(done)

    async def stop(self, drain_s: float) -> list[str]:
        """Stop claiming; let running polls finish for ``drain_s``, then hand the rest back
        (with the claimed ones not started yet). Returns the imports whose polls the deadline cut
        short: empty after a clean drain."""
        self._stopping = True
        self._wake.set()
        unstarted = [tracker.tid for tracker in self._ready]
        self._ready.clear()
        running = list(self._tasks.values())
        pending: set[asyncio.Task[None]] = set()
        if running:
            _, pending = await asyncio.wait(running, timeout=drain_s)
        cut_short = [tid for tid, task in self._tasks.items() if task in pending]
        left = unstarted + cut_short
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if left or running:
            with contextlib.suppress(RedisError, OSError):
                released = await self._store.release(left, self._clock())
                self._log.info("poller stopped", finished=len(running) - len(pending), handed_back=released)
        return cut_short

    # ------------------------------------------------------------------ one import

    async def _poll_guarded(self, tracker: ClaimedTracker) -> None:
        try:
            await self.poll(tracker)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one import's trouble must not stop the loop
            # The lease runs out and the import is polled again; nothing was committed.
            self._log.exception("poll failed", tracker=tracker.tid, error=repr(exc))

    async def poll(self, tracker: ClaimedTracker) -> CommitResult:
        """One full cycle for one claimed import."""
        slug, _, import_id = tracker.tid.partition("/")
        paused = self._paused_until(slug)
        if paused is not None:
            # Claimed before the club was paused (ahead, or by a poll still running): not a single
            # request until the pause ends; the import is due again then.
            await self._store.release([tracker.tid], paused)
            self._metrics.poll("rate_limited")
            return CommitResult(committed=False, inserted=())
        observation, busy_hint = await self._observe(slug, import_id, tracker)
        now = self._clock()
        plan = await self._plan(tracker, observation, busy_hint, now)
        failure = observation.failure
        result = await self._committer.submit(plan)
        self.polls += 1
        self._metrics.poll(failure.kind if failure is not None else "ok")
        if not result.committed:
            self._metrics.superseded()
            self._log.info("poll superseded by another worker", tracker=tracker.tid)
            return result
        if result.inserted:
            await self._dispatch_new(plan, result)
        return result

    async def _dispatch_new(self, plan: CommitPlan, result: CommitResult) -> None:
        inserted = set(result.inserted)
        for new in plan.events:
            if new.event.id in inserted:
                self._metrics.event(new.event.type)
            if new.event.id in inserted and new.destinations:
                self.events += 1
                try:
                    await self._dispatch(new.event.id, new.destinations)
                except (RedisError, OSError) as exc:
                    # The outbox has it: the sweeper creates the job.
                    self._log.warning(
                        "dispatch deferred to the sweeper", event_id=new.event.id, error=repr(exc)
                    )

    async def _observe(self, slug: str, import_id: str, tracker: ClaimedTracker) -> tuple[Observation, bool]:
        """Ask MPC what it needs to; returns the observation and whether to poll again soon
        (a request that could not be answered this time)."""
        plan = plan_requests(tracker.watches.values(), tracker.snapshots)
        if plan.use_import:
            answer = await self._upstream.get_import(slug, import_id)
            await self._record("import", answer, slug)
            if answer.value is None:
                return Observation(failure=answer.failure), False
            listing = {b.id: b.status for b in answer.value.bulks}
            bulks: dict[int, BulkObservation] = {
                b.id: BulkListed(status=b.status, request_number=b.request_number) for b in answer.value.bulks
            }
            wanted = bulks_to_fetch(listing, tracker.watches.values(), tracker.snapshots)
            retry_soon = False
            if wanted and self._paused_until(slug) is not None:
                # Another poll of this club was told to wait meanwhile: these details come later.
                for bulk_id in wanted:
                    bulks.pop(bulk_id, None)
                return Observation(bulks=bulks, listing=frozenset(listing)), True
            for bulk_id, fetched in zip(
                wanted, await self._fetch_bulks(slug, import_id, wanted), strict=True
            ):
                seen = _bulk_observation(fetched)
                if seen is None:
                    bulks.pop(bulk_id, None)  # unknown this time: asked again next poll
                    retry_soon = True
                else:
                    bulks[bulk_id] = seen
            return Observation(bulks=bulks, listing=frozenset(listing)), retry_soon
        answers = await self._fetch_bulks(slug, import_id, plan.bulks)
        failures = [a.failure for a in answers if a.failure is not None and a.failure.kind != "not_found"]
        decisive = [f for f in failures if f.kind in UNAUTHORIZED_FIRST]
        if decisive or (failures and len(failures) == len(answers)):
            return Observation(failure=(decisive or failures)[0]), False
        observed = {
            b: seen for b, a in zip(plan.bulks, answers, strict=True) if (seen := _bulk_observation(a))
        }
        return Observation(bulks=observed), bool(failures)

    async def _fetch_bulks(
        self, slug: str, import_id: str, bulk_ids: Iterable[int]
    ) -> list[MpcResponse[Any]]:
        ids = list(bulk_ids)
        if len(ids) == 1:
            return [await self._get_bulk(slug, import_id, ids[0])]
        return list(await asyncio.gather(*(self._get_bulk(slug, import_id, b) for b in ids)))

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
            wait = self._config.intervals.min_s * FAILURE_FACTOR  # a 429 without Retry-After
        if wait is not None:
            until = self._clock() + min(wait, self._config.intervals.retry_after_max_s)
            if until > self._paused.get(slug, 0.0):
                self._paused[slug] = until
                await self._store.pause_club(slug, until)

    def _paused_until(self, slug: str) -> float | None:
        """Until when this club must not be called (``None``: it may)."""
        until = self._paused.get(slug)
        if until is not None and until <= self._clock():
            del self._paused[slug]
            return None
        return until

    async def _plan(
        self, tracker: ClaimedTracker, observation: Observation, retry_soon: bool, now: float
    ) -> CommitPlan:
        snapshots: dict[str, WatchSnapshot] = {}
        ended: dict[str, WatchSnapshot] = {}
        events: list[NewEvent] = []
        changed = False
        busy = retry_soon
        unmasked: dict[int, bytes] = {}
        for wid, watch in sorted(tracker.watches.items()):
            result = diffing.diff(watch, tracker.snapshots.get(wid), observation, now, self._config.rules)
            snapshots[wid] = result.snapshot
            if result.snapshot.state != "active":
                ended[wid] = result.snapshot
            for event in result.events:
                destinations = await self._destinations(watch, event)
                events.append(
                    NewEvent(
                        watch_id=wid,
                        event=event,
                        destinations=destinations,
                        unmasked_errors=self._unmasked_errors(event, destinations, observation, unmasked),
                    )
                )
            changed = changed or bool(result.events) or _changed_at(result.snapshot, now)
            busy = busy or _busy(result.snapshot, watch)
        delay, poll_state = next_delay(
            tracker.poll_state,
            failure=observation.failure,
            changed=changed,
            busy=busy,
            intervals=self._config.intervals,
            jitter=self._jitter(),
        )
        poll_state = msgspec.structs.replace(poll_state, last_polled=now)
        return CommitPlan(
            tid=tracker.tid,
            version=tracker.version,
            now=now,
            due=now + delay,
            poll_state=poll_state,
            snapshots=snapshots,
            events=events,
            ended=ended,
        )

    async def _destinations(self, watch: WatchSpec, event: Event) -> tuple[str, ...]:
        return await self._resolver.destinations(watch, event)

    def _unmasked_errors(
        self, event: Event, destinations: tuple[str, ...], observation: Observation, cache: dict[int, bytes]
    ) -> bytes:
        """The bulk's errors with identifiers unmasked, for Slack only, only when configured.

        The event keeps its masked summary (it is also the webhook payload); this side record
        lives briefly beside it (see ``RedisStore``) and Slack deletes it once posted.
        """
        bulk_id = event.data.bulk_id
        if (
            not self._config.unmasked_errors
            or event.type not in UNMASKED_ERROR_TYPES
            or SLACK not in destinations
            or not isinstance(bulk_id, int)
        ):
            return b""
        if bulk_id not in cache:
            seen = observation.bulks.get(bulk_id)
            errors = seen.bulk.members_errors if isinstance(seen, BulkSeen) else None
            if errors:
                groups, omitted = member_errors.summarize(errors, mask=False)
                summary = member_errors.ErrorSummary(groups=groups, omitted=omitted)
                cache[bulk_id] = member_errors.encode_summary(summary)
            else:
                cache[bulk_id] = b""
        return cache[bulk_id]


def _bulk_observation(answer: MpcResponse[Any]) -> BulkObservation | None:
    if answer.value is not None:
        return BulkSeen(bulk=answer.value)
    if answer.failure is not None and answer.failure.kind == "not_found":
        return BulkGone()
    return None


def _changed_at(snapshot: WatchSnapshot, now: float) -> bool:
    return any(b.last_changed == now for b in snapshot.bulks.values())


def _busy(snapshot: WatchSnapshot, watch: WatchSpec) -> bool:
    """MPC's job works on one of the watch's bulks: poll at the minimum interval."""
    return snapshot.state == "active" and any(
        b.status in ACTIVE_STATUSES and not b.missing for b in snapshot.bulks.values()
    )
