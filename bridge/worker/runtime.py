"""What a worker process runs: its parts between startup and shutdown, and its arq jobs.

Deliveries are not arq jobs: the runtime's delivery loop (:mod:`bridge.delivery.loop`) claims
them from the outbox. arq runs

- ``slack_followup``: after a Slack command or click, the card and the person's answer;
- ``sweep`` (every 10 s, one worker at a time): now and then reschedules imports that got lost,
  and every 10 minutes drops the index entries of watches whose retention ran out.

The parts are built by :mod:`bridge.wiring` (``ctx["build_runtime"]``), so this module knows
what a worker does, not how its clients are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import msgspec
import structlog
from arq import Retry

from bridge.config import Settings
from bridge.delivery.loop import DeliveryLoop
from bridge.delivery.model import SLACK, Dispatch, Notifier
from bridge.delivery.service import IN_FLIGHT_GRACE_S, Deliveries
from bridge.logs import configure_logging, get_logger
from bridge.metrics import WorkerMetrics
from bridge.polling import Poller
from bridge.redis_url import parse_redis_url
from bridge.slack.followup import FollowUp, run_followup
from bridge.store.layout import ensure_layout
from bridge.store.redis_store import RedisStore

log = get_logger("bridge.worker")


class Runtime:
    """What a worker process holds between startup and shutdown."""

    def __init__(
        self,
        *,
        settings: Settings,
        redis: Any,
        store: RedisStore,
        poller: Poller,
        deliveries: Deliveries,
        delivery_loop: DeliveryLoop,
        metrics: WorkerMetrics,
        notifiers: Mapping[str, Notifier],
        closers: Sequence[Callable[[], Awaitable[Any]]] = (),
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.store = store
        self.poller = poller
        self.deliveries = deliveries
        self.delivery_loop = delivery_loop
        self.dispatch: Dispatch = delivery_loop.dispatch
        self.metrics = metrics
        self.notifiers = notifiers
        self._closers = closers
        """Closes the clients the wiring opened for this runtime (HTTP sessions and the like)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Task[tuple[list[str], list[str]]] | None = None
        self.failed = False
        """The poll loop ended by itself (an error): the worker stops, and must not exit 0."""

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.poller.run()),
            loop.create_task(self.metrics.run(self.redis)),
            loop.create_task(self.delivery_loop.run()),
        ]
        self._tasks[0].add_done_callback(functools.partial(self._loop_ended, "poll"))
        self._tasks[2].add_done_callback(functools.partial(self._loop_ended, "delivery"))

    def _loop_ended(self, name: str, task: asyncio.Task[None]) -> None:
        if self._stopping is not None or task.cancelled():
            return
        # A worker that no longer polls or delivers must not look healthy: stop it, and let the
        # orchestrator start a fresh one (what it held is handed back or its leases run out).
        log.error(f"{name} loop ended unexpectedly; stopping the worker", error=repr(task.exception()))
        self.failed = True
        os.kill(os.getpid(), signal.SIGTERM)

    def begin_stop(self, signal_name: str = "SIGTERM") -> asyncio.Task[tuple[list[str], list[str]]]:
        """Stop claiming imports and deliveries now; running polls and deliveries drain in the
        background, and notifiers stop waiting inside deliveries (idempotent)."""
        if self._stopping is None:
            for notifier in self.notifiers.values():
                stop = getattr(notifier, "begin_stop", None)
                if stop is not None:
                    stop()
            self._stopping = asyncio.get_running_loop().create_task(self._drain(signal_name))
        return self._stopping

    async def _drain(self, signal_name: str) -> tuple[list[str], list[str]]:
        drain_s = self.settings.worker_drain_s
        polls, deliveries = await asyncio.gather(
            self.poller.stop(drain_s),
            self.delivery_loop.stop(drain_s, in_flight_grace(self.settings), signal_name),
        )
        return polls, deliveries

    def _drained(self) -> tuple[list[str], list[str]]:
        stopping = self._stopping
        if stopping is None or not stopping.done() or stopping.cancelled() or stopping.exception():
            return [], []
        return stopping.result()

    def polls_cut_short(self) -> list[str]:
        """The imports whose polls the drain's deadline cut short (handed back to be polled again)."""
        return self._drained()[0]

    def deliveries_cut_short(self) -> list[str]:
        """The outbox entries whose deliveries the drain's deadline cut short (handed back)."""
        return self._drained()[1]

    async def check_notifiers(self) -> None:
        """Let notifiers that can check their credentials do so (logged, never fatal)."""
        for notifier in self.notifiers.values():
            check = getattr(notifier, "check", None)
            if check is not None:
                await check()

    async def close(self) -> None:
        await self.begin_stop()
        if self._tasks:
            poll_task, metrics_task, delivery_task = self._tasks
            await asyncio.gather(poll_task, return_exceptions=True)
            for task in (metrics_task, delivery_task):
                task.cancel()
            await asyncio.gather(metrics_task, delivery_task, return_exceptions=True)
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()


def in_flight_grace(settings: Settings) -> float:
    """The end of the drain window kept for deliveries cancelled mid-send to finish that send
    (half the window at most)."""
    return min(IN_FLIGHT_GRACE_S, settings.worker_drain_s / 2)


BuildRuntime = Callable[[Settings, Any], Runtime]
"""Makes a worker's :class:`Runtime` from its settings and Redis client
(:func:`bridge.wiring.build_runtime`)."""


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    configure_logging(settings.log_level, settings.log_format)  # arq's CLI configured its own meanwhile
    await ensure_layout(ctx["redis"], migrate_on_start=settings.migrate_on_start, report=_migrated)
    build: BuildRuntime = ctx["build_runtime"]
    runtime = build(settings, ctx["redis"])
    ctx["runtime"] = runtime
    runtime.start()
    await runtime.check_notifiers()
    log.info(
        "worker started",
        poll_concurrency=settings.poll_concurrency,
        poll_min_interval_s=settings.poll_min_interval_s,
        poll_max_interval_s=settings.poll_max_interval_s,
        mpc_base_url=settings.mpc_base,
        slack=settings.slack_mode,
        redis=parse_redis_url(settings.redis_url).redacted(),
    )


def _migrated(what: str) -> None:
    log.info("redis layout", change=what)


async def shutdown(ctx: dict[str, Any]) -> None:
    runtime: Runtime | None = ctx.get("runtime")
    if runtime is not None:
        await runtime.close()
        log.info("worker stopped", polls=runtime.poller.polls, events=runtime.poller.events)


async def slack_followup(ctx: dict[str, Any], job: Any) -> str:
    """arq job: after a Slack command or click, update the card, note who did it in its thread,
    answer the person through ``response_url`` (see :mod:`bridge.slack.followup`)."""
    runtime: Runtime = ctx["runtime"]
    spec = msgspec.convert(job, FollowUp)
    notifier = runtime.notifiers.get(SLACK)
    session = getattr(notifier, "session", None)
    with structlog.contextvars.bound_contextvars(job_id=ctx.get("job_id"), job_try=ctx.get("job_try")):
        if session is None:
            async with aiohttp.ClientSession() as own:
                result = await run_followup(
                    spec, notifier=notifier, session=own, slack_api_url=runtime.settings.slack_api_url
                )
        else:
            result = await run_followup(
                spec, notifier=notifier, session=session, slack_api_url=runtime.settings.slack_api_url
            )
        if result.outcome == "retry":
            log.info("slack follow-up retried later", reason=result.detail)
            raise Retry(defer=result.retry_after_s or 1.0)
        if result.outcome == "failed":
            log.info(
                "slack follow-up not done", reason=result.detail, action=spec.action, watch_id=spec.watch_id
            )
    return result.outcome


async def sweep(ctx: dict[str, Any]) -> None:
    """arq cron: reschedule imports that got lost, trim the watch indexes. (Deliveries need no
    repair: an entry held by a worker that died is due again when its lease ends.)"""
    runtime: Runtime = ctx["runtime"]
    now = time.time()
    rescheduled = 0
    if await runtime.store.orphan_check_due():
        rescheduled = await runtime.store.reschedule_orphans(now)
    if rescheduled:
        log.warning("sweeper repaired", imports_rescheduled=rescheduled)
    if await runtime.store.trim_due():
        trimmed = await runtime.store.trim_indexes()
        if trimmed:
            log.info("sweeper trimmed the watch indexes", entries_dropped=trimmed)
