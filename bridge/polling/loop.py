"""The poll loop of a worker process: claim due imports, observe, plan, commit, dispatch.

It runs beside arq's job loop in every worker (arq carries deliveries and their retries; one arq
job per poll would cost about 23 Redis commands). Imports are claimed from a Redis schedule in
batches with a lease, so any number of workers share the load and no import is polled by two of
them at once; a worker that dies leaves leases that run out, and its imports are polled again,
computing the same event ids. Commits of polls that finish together go to Redis in one pipeline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

from redis.exceptions import RedisError

from bridge.core.pacing import LAG_PROBE_EVERY_S, Pacing, initial_limit, next_limit
from bridge.core.wake import sleep_until_set
from bridge.delivery.model import Dispatch
from bridge.logs import get_logger
from bridge.metrics import WorkerMetrics
from bridge.polling.observe import Observer
from bridge.polling.plan import Planner
from bridge.redis_url import outage_wait_s
from bridge.store.redis_store import Claim, ClaimedTracker, CommitPlan, CommitResult, RedisStore
from bridge.store.turn import Batcher

CLAIM_BATCH_MAX: Final = 256
"""Imports claimed in one round trip."""
PREFETCH_FACTOR: Final = 2.0
"""Imports claimed ahead: up to this many times the concurrency, running and waiting together."""
CRASHED_POLL_RETRY_S: Final = 30.0
"""A poll that failed on something unexpected (a bug, not MPC) hands its import back due this much
later: no hot loop on a poison import, and no wait for the lease either."""


class Poller:
    def __init__(
        self,
        *,
        store: RedisStore,
        observer: Observer,
        planner: Planner,
        concurrency: int,
        dispatch: Dispatch,
        idle_look_s: float,
        clock: Callable[[], float] = time.time,
        metrics: WorkerMetrics | None = None,
        logger: Any = None,
    ) -> None:
        self._store = store
        self._observer = observer
        self._planner = planner
        self._dispatch = dispatch
        self._idle_look_s = idle_look_s
        """Longest sleep between two looks at the schedule when nothing wakes the loop (imports whose
        lease ran out, a wake-up lost while Redis was away). A new watch, "poll now" and imports
        another worker hands back wake it at once (:meth:`wake`)."""
        self._clock = clock
        self._metrics = metrics or WorkerMetrics()
        self._log = logger or get_logger("bridge.poller")
        self._committer: Batcher[CommitPlan, CommitResult] = Batcher(store.commit_many, CLAIM_BATCH_MAX)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ready: collections.deque[ClaimedTracker] = collections.deque()
        """Claimed ahead, not started yet (their leases run)."""
        self._pacing = Pacing(ceiling=concurrency)
        self._limit = initial_limit(self._pacing)
        """Polls at once now (see :mod:`bridge.core.pacing`)."""
        self._wake = asyncio.Event()
        self._busy = asyncio.Event()
        """Set when a poll starts: the lag probe sleeps while none runs or waits to."""
        self._claim_not_before = 0.0
        """Nothing is due before this (epoch s) as far as the last claim saw: until then a finished
        poll does not send a claim that would find nothing. At most ``idle_look_s`` after
        that claim, so imports made due elsewhere (a new watch) are still seen that soon."""
        self._claiming: asyncio.Future[Claim] | None = None
        """The claim round trip under way, if any: a stop waits for it and hands its imports back."""
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
        """Adapt the number of polls at once to the loop's lag, every :data:`LAG_PROBE_EVERY_S`
        while polls run or wait to (an idle worker does not wake twenty times a second for it)."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._tasks and not self._ready:
                self._busy.clear()
                await self._busy.wait()
            started, cpu_started = loop.time(), time.process_time()
            await asyncio.sleep(LAG_PROBE_EVERY_S)
            elapsed = loop.time() - started
            self._metrics.loop_lag(elapsed - LAG_PROBE_EVERY_S)
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
            await self._sleep(self._idle_look_s)  # a finished poll wakes us
            return redis_failures
        now = self._clock()
        if not self._ready and now < self._claim_not_before:
            await self._sleep(self._claim_not_before - now)
            return redis_failures
        limit = min(room, CLAIM_BATCH_MAX)
        # Those that start at once (free slots, nothing claimed ahead before them) take their first
        # request's token in the claim; those that wait in line take theirs when they start.
        starting = self._limit - len(self._tasks) - len(self._ready)
        budget = self._observer.claim_budget(min(starting, limit))
        self._claiming = asyncio.ensure_future(self._store.claim(now, limit, budget))
        try:
            claim = await self._claiming
        except (RedisError, OSError) as exc:
            redis_failures += 1
            delay = outage_wait_s(redis_failures)
            self._log.warning("redis unavailable, poller waits", error=repr(exc), retry_in_s=delay)
            await self._sleep(delay)
            return redis_failures
        finally:
            self._claiming = None
        if self._stopping:
            return 0  # the stop took what this claim leased and hands it back
        self._ready.extend(claim.trackers)
        self._claim_not_before = 0.0
        if len(claim.trackers) < limit:  # every import due now was claimed
            self._claim_not_before = now + self._idle_look_s
            if claim.next_due is not None:
                self._claim_not_before = min(self._claim_not_before, claim.next_due)
        return 0

    def wake(self) -> None:
        """Look at the schedule now: something may have become due (a new watch)."""
        self._claim_not_before = 0.0
        self._wake.set()

    def _start_ready(self) -> None:
        while self._ready and len(self._tasks) < self._limit:
            self._spawn(self._ready.popleft())

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        await sleep_until_set(self._wake, seconds)

    def _spawn(self, tracker: ClaimedTracker) -> None:
        task = asyncio.get_running_loop().create_task(self._poll_guarded(tracker))
        self._tasks[tracker.tid] = task
        self._busy.set()

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
        claiming = self._claiming
        if claiming is not None:
            # Leased by a claim that was on its way when the stop came: never started, handed back.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                late = await asyncio.wait_for(asyncio.shield(claiming), timeout=drain_s)
                unstarted += [tracker.tid for tracker in late.trackers]
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
            # Nothing was committed. The import goes back to the schedule a little later (if Redis
            # cannot take it back now, its lease runs out instead).
            self._metrics.poll("crashed")
            self._log.exception("poll failed", tracker=tracker.tid, error=repr(exc))
            due = self._clock() + CRASHED_POLL_RETRY_S
            with contextlib.suppress(RedisError, OSError):
                await self._store.release([tracker.tid], due)
            self._claim_not_before = min(self._claim_not_before, due)

    async def poll(self, tracker: ClaimedTracker) -> CommitResult:
        """One full cycle for one claimed import."""
        slug, _, import_id = tracker.tid.partition("/")
        paused = self._observer.paused_until(slug)
        if paused is not None:
            # Claimed before the club was paused (ahead, or by a poll still running): not a single
            # request until the pause ends; the import is due again then.
            await self._store.release([tracker.tid], paused)
            self._claim_not_before = min(self._claim_not_before, paused)
            self._metrics.poll("rate_limited")
            return CommitResult(committed=False, inserted=())
        observation, retry_soon = await self._observer.observe(slug, import_id, tracker)
        plan = await self._planner.plan(tracker, observation, retry_soon, self._clock())
        failure = observation.failure
        result = await self._committer.submit(plan)
        self._claim_not_before = min(self._claim_not_before, plan.due)
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
