"""A worker process: arq runs the delivery jobs and the sweeper; the poll loop runs beside it.

``workers.settings.WorkerSettings`` (for ``arq``) and ``bridge worker`` both use
:func:`worker_settings`, which turns :class:`~bridge.config.Settings` into arq's options.

``bridge worker`` runs :class:`BridgeWorker`, which also makes shutdown prompt and bounded: on
SIGTERM the poll loop stops claiming at once and drains beside arq's delivery jobs, both within
``BRIDGE_WORKER_DRAIN_S``; whatever is still running is handed back, and the process exits at the
latest ``WORKER_EXIT_MARGIN_S`` later. Under ``arq workers.settings.WorkerSettings`` arq drains its
jobs first and the poll loop learns of the signal only then (``on_shutdown``): up to twice the
drain. Production images run ``bridge worker``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from typing import Any, Final

import httpx
import msgspec
import structlog
from arq import Retry, cron, func
from arq import constants as arq_constants
from arq.connections import RedisSettings
from arq.utils import timestamp_ms
from arq.worker import Worker
from redis.exceptions import RedisError

from bridge.config import WORKER_EXIT_MARGIN_S, WORKER_HEALTH_INTERVAL_S, Settings
from bridge.core.diff import Rules
from bridge.core.schedule import Intervals
from bridge.credentials import CachedCredentials, CredentialStore
from bridge.crypto import SecretBox
from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.model import DELIVER_FUNCTION, DeliveryJob
from bridge.delivery.registry import build_notifiers, build_resolver, close_notifiers
from bridge.delivery.service import IN_FLIGHT_GRACE_S, Deliveries, RetryLater
from bridge.exits import EXIT_DRAIN_CUT_SHORT, EXIT_FAILURE, EXIT_OK, EXIT_STOP_TIMEOUT
from bridge.http import Fetcher, build_transport
from bridge.jobcodec import deserialize_job, serialize_job
from bridge.logs import configure_logging, get_logger
from bridge.metrics import WorkerMetrics
from bridge.poller import Poller, PollerConfig
from bridge.redis_url import arq_settings, connect, outage_wait_s, parse_redis_url
from bridge.slack.factory import open_session, slack_mode
from bridge.store import keys
from bridge.store.redis_store import RedisStore
from bridge.upstream.mpc import MAX_BODY_BYTES, ClubCredentials, MpcClient

CLAIM_JOB_SCRIPT: Final = """
-- arq's claim of a due job (Worker.start_jobs), as one atomic step.
-- KEYS: in-progress key, queue; ARGV: job id, now (ms), in-progress timeout (ms)
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""
DELIVERY_MAX_TRIES: Final = 50
"""A ceiling far above any notifier's own schedule: notifiers decide when to give up."""
SWEEP_EVERY_S: Final = 10
OUTBOX_GRACE_S: Final = 30.0
"""An outbox entry this old without a job is re-dispatched (the poller normally does it at once)."""
SWEEP_BATCH: Final = 1000
UPSTREAM_CONNECTIONS_PER_POLL: Final = 2
LEFT_LOGGED_MAX: Final = 20
"""Ids of cut-short polls and jobs named in the ``drain cut short`` log line (the counts are all)."""

__all__ = [
    "BridgeWorker",
    "Runtime",
    "deserialize_job",
    "health_check_key",
    "redis_settings",
    "serialize_job",
    "worker_settings",
]

log = get_logger("bridge.worker")


def redis_settings(url: str) -> RedisSettings:
    """arq's connection settings for ``url`` (any form :mod:`bridge.redis_url` accepts)."""
    return arq_settings(url)


def health_check_key(host: str | None = None) -> str:
    """This host's health key: one per pod or container, so a probe checks its own worker."""
    return keys.worker_health(host or socket.gethostname())


def _upstream(settings: Settings, redis: Any) -> tuple[Fetcher, MpcClient]:
    connections = settings.poll_concurrency * UPSTREAM_CONNECTIONS_PER_POLL
    http = Fetcher(
        build_transport(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        ),
        timeout=httpx.Timeout(settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s),
        max_body_bytes=MAX_BODY_BYTES,
    )
    mpc = MpcClient(
        http,
        base_url=settings.mpc_base,
        tokens=CachedCredentials(
            CredentialStore(redis, SecretBox(settings.require_secret_key())),
            ClubCredentials(token=settings.mpc_token.reveal()) if settings.mpc_token else None,
        ),
        product_name=settings.mpc_product_name,
        deadline_s=settings.upstream_connect_timeout_s + settings.upstream_timeout_s,
    )
    return http, mpc


def in_flight_grace(settings: Settings) -> float:
    """The end of the drain window kept for deliveries cancelled mid-send to finish that send
    (half the window at most): arq stops waiting for jobs this long before the drain ends."""
    return min(IN_FLIGHT_GRACE_S, settings.worker_drain_s / 2)


def poller_config(settings: Settings) -> PollerConfig:
    return PollerConfig(
        intervals=Intervals(
            min_s=settings.poll_min_interval_s,
            max_s=settings.poll_max_interval_s,
            retry_after_max_s=settings.retry_after_max_s,
        ),
        concurrency=settings.poll_concurrency,
        rules=Rules(failing_after=settings.upstream_failing_after),
        unmasked_errors=settings.slack_show_pii and slack_mode(settings) is not None,
    )


class Runtime:
    """What a worker process holds between startup and shutdown."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.settings = settings
        self.store = RedisStore(redis, retention_s=settings.retention_s, lease_s=settings.poll_lease_s)
        self.dispatcher = Dispatcher(redis)
        self.http, self.mpc = _upstream(settings, redis)
        self.redis = redis
        self.metrics = WorkerMetrics()
        self.slack_http = open_session(settings)
        self.notifiers = build_notifiers(settings, store=self.store, redis=redis, slack_http=self.slack_http)
        self.deliveries = Deliveries(
            self.store, self.notifiers, metrics=self.metrics, in_flight_grace_s=in_flight_grace(settings)
        )
        self.poller = Poller(
            store=self.store,
            upstream=self.mpc,
            config=poller_config(settings),
            dispatch=self.dispatcher.dispatch,
            resolver=build_resolver(settings, store=self.store, redis=redis),
            metrics=self.metrics,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Task[list[str]] | None = None
        self.failed = False
        """The poll loop ended by itself (an error): the worker stops, and must not exit 0."""

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.poller.run()), loop.create_task(self.metrics.run(self.redis))]
        self._tasks[0].add_done_callback(self._poll_loop_ended)

    def _poll_loop_ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping is not None or task.cancelled():
            return
        # A worker that no longer polls must not look healthy: stop it, and let the orchestrator
        # start a fresh one (its imports are handed back or their leases run out).
        log.error("poll loop ended unexpectedly; stopping the worker", error=repr(task.exception()))
        self.failed = True
        os.kill(os.getpid(), signal.SIGTERM)

    def begin_stop(self) -> asyncio.Task[list[str]]:
        """Stop claiming imports now; running polls drain in the background (idempotent)."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(
                self.poller.stop(self.settings.worker_drain_s)
            )
        return self._stopping

    def polls_cut_short(self) -> list[str]:
        """The imports whose polls the drain's deadline cut short (handed back to be polled again)."""
        stopping = self._stopping
        if stopping is None or not stopping.done() or stopping.cancelled() or stopping.exception():
            return []
        return stopping.result()

    async def check_notifiers(self) -> None:
        """Let notifiers that can check their credentials do so (logged, never fatal)."""
        for notifier in self.notifiers.values():
            check = getattr(notifier, "check", None)
            if check is not None:
                await check()

    async def close(self) -> None:
        await self.begin_stop()
        poll_task, metrics_task = self._tasks or (None, None)
        if poll_task is not None:
            await asyncio.gather(poll_task, return_exceptions=True)
        if metrics_task is not None:
            metrics_task.cancel()
            await asyncio.gather(metrics_task, return_exceptions=True)
        await self.http.aclose()
        await close_notifiers(self.notifiers)
        if self.slack_http is not None:
            await self.slack_http.close()


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    configure_logging(settings.log_level, settings.log_format)  # arq's CLI configured its own meanwhile
    runtime = Runtime(settings, ctx["redis"])
    ctx["runtime"] = runtime
    runtime.start()
    await runtime.check_notifiers()
    log.info(
        "worker started",
        poll_concurrency=settings.poll_concurrency,
        poll_min_interval_s=settings.poll_min_interval_s,
        poll_max_interval_s=settings.poll_max_interval_s,
        mpc_base_url=settings.mpc_base,
        slack=slack_mode(settings),
        redis=parse_redis_url(settings.redis_url).redacted(),
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    runtime: Runtime | None = ctx.get("runtime")
    if runtime is not None:
        await runtime.close()
        log.info("worker stopped", polls=runtime.poller.polls, events=runtime.poller.events)


async def deliver(ctx: dict[str, Any], job: Any) -> str:
    """arq job: deliver one event to one destination (safe to run twice)."""
    runtime: Runtime = ctx["runtime"]
    spec = msgspec.convert(job, DeliveryJob)
    with structlog.contextvars.bound_contextvars(
        job_id=ctx.get("job_id"),
        job_try=ctx.get("job_try"),
        event_id=spec.event_id,
        destination=spec.destination,
    ):
        try:
            result = await runtime.deliveries.run(spec, attempt=ctx.get("job_try", 1))
        except RetryLater as retry:
            log.info("delivery retried later", retry_in_s=round(retry.defer_s, 3), reason=str(retry))
            raise Retry(defer=retry.defer_s) from None
    return result.outcome


async def sweep(ctx: dict[str, Any]) -> None:
    """arq cron: re-create delivery jobs that went missing, reschedule imports that got lost."""
    runtime: Runtime = ctx["runtime"]
    now = time.time()
    entries = await runtime.store.outbox_older_than(now - OUTBOX_GRACE_S, SWEEP_BATCH)
    created = 0
    for event_id, destination in entries:
        created += await runtime.dispatcher.dispatch(event_id, [destination])
    rescheduled = 0
    if await runtime.store.orphan_check_due():
        rescheduled = await runtime.store.reschedule_orphans(now)
    if created or rescheduled:
        log.warning("sweeper repaired", jobs_recreated=created, imports_rescheduled=rescheduled)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """arq ``Worker`` keyword arguments for these settings.

    The Redis client is ours (:func:`bridge.redis_url.connect`: Sentinel, retries with back-off);
    ``redis_settings`` is still given for ``arq --check``.
    """
    settings.require_secret_key()
    target = parse_redis_url(settings.redis_url)
    return {
        "functions": [
            func(
                deliver,
                name=DELIVER_FUNCTION,
                max_tries=DELIVERY_MAX_TRIES,
                keep_result=0,
                timeout=settings.delivery_timeout_s,
            )
        ],
        # Every job, the sweeper included, gets the delivery timeout: arq locks a started job for
        # its longest function timeout + 10 s, and a function without one would count as arq's
        # default (300 s), keeping a killed worker's deliveries locked five minutes.
        "cron_jobs": [
            cron(
                sweep,
                second=set(range(0, 60, SWEEP_EVERY_S)),
                unique=True,
                run_at_startup=True,
                timeout=settings.delivery_timeout_s,
            )
        ],
        "job_timeout": settings.delivery_timeout_s,
        "redis_settings": arq_settings(target),
        "redis_pool": connect(target),
        "queue_name": keys.QUEUE,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "poll_delay": settings.worker_poll_delay_s,
        "max_jobs": settings.worker_max_jobs,
        # The drain ends with the grace a cancelled delivery gets to finish its send in flight.
        "job_completion_wait": settings.worker_drain_s - in_flight_grace(settings),
        "health_check_interval": WORKER_HEALTH_INTERVAL_S,
        "health_check_key": health_check_key(),
        "keep_result": 0,
        "handle_signals": True,
    }


class BridgeWorker(Worker):
    """arq's ``Worker`` as ``bridge worker`` runs it.

    - SIGTERM/SIGINT stop the poll loop's claiming at once, so polls and deliveries drain in the
      same window (arq alone tells the poll loop only after its own drain, in ``on_shutdown``).
    - The process exits at most ``BRIDGE_WORKER_DRAIN_S`` + ``WORKER_EXIT_MARGIN_S`` after the
      signal, even when Redis is gone and handing back cannot finish (leases cover that).
    - A Redis outage (failover, restart) makes the job loop wait and retry instead of crashing,
      and a worker started while Redis is down waits for it instead of exiting (which would
      crash-loop it under an orchestrator's growing back-off long after Redis is back).
    - :meth:`exit_code` says how the stop went: 0 when everything drained, 3 when the deadline
      cut polls or delivery jobs short (logged as ``drain cut short``, with what was left).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis_failures = 0
        self._watchdog: threading.Timer | None = None
        self._claim_job: Any = None
        """:data:`CLAIM_JOB_SCRIPT`, registered on the pool at the first claim."""
        self._jobs_cut_short: list[str] = []
        self._handed_back = True
        """False when Redis was gone while stopping: what ran comes back only when its lease ends."""
        self._cut_short = False

    def handle_sig(self, signum: signal.Signals) -> None:
        self._stop_polling()
        # No drain window for jobs (BRIDGE_WORKER_DRAIN_S=0): arq cancels the running ones now.
        self._jobs_cut_short = [job_id for job_id, task in self.tasks.items() if not task.done()]
        super().handle_sig(signum)

    async def _sleep_until_tasks_complete(self) -> None:
        # arq waits for this within the drain window and cancels it at the window's end, before it
        # cancels the jobs still running (they stay queued and run again).
        try:
            await super()._sleep_until_tasks_complete()
        except asyncio.CancelledError:
            self._jobs_cut_short = [job_id for job_id, task in self.tasks.items() if not task.done()]
            raise

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self._stop_polling()
        super().handle_sig_wait_for_completion(signum)

    def _stop_polling(self) -> None:
        runtime: Runtime | None = self.ctx.get("runtime")
        if runtime is not None:
            runtime.begin_stop()
        if self._watchdog is None:
            drain_s = runtime.settings.worker_drain_s if runtime is not None else 0.0
            self._watchdog = threading.Timer(drain_s + WORKER_EXIT_MARGIN_S, _exit_now)
            self._watchdog.daemon = True
            self._watchdog.start()

    async def main(self) -> None:
        await self._wait_for_redis()
        await super().main()

    async def _wait_for_redis(self) -> None:
        failures = 0
        while True:
            try:
                await self.pool.ping()
            except (RedisError, OSError) as exc:
                failures += 1
                delay = outage_wait_s(failures)
                log.warning("redis unavailable at start, worker waits", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
            else:
                return

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            self._redis_failures += 1
            delay = outage_wait_s(self._redis_failures)
            log.warning("redis unavailable, job loop waits", error=repr(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
        else:
            self._redis_failures = 0

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim and start due jobs, all at once, one Redis round trip each.

        arq claims the jobs one after another, each with WATCH, EXISTS, ZSCORE and MULTI/EXEC:
        four round trips in a row per job, on a loop the poller keeps busy, so the tenth job of a
        burst waited for forty (``make bench``, latency: most of the bridge's own part). The same
        check-and-set runs here as one script per job, the jobs concurrently. A slot taken for a
        job that does not start (claimed elsewhere, or Redis failing) is given back.
        """
        free = self.max_jobs - self.job_counter
        if free > 0 and job_ids:
            await asyncio.gather(*(self._start_job(job_id.decode()) for job_id in job_ids[:free]))

    async def _start_job(self, job_id: str) -> None:
        await self.sem.acquire()
        self.job_counter += 1
        started = False
        try:
            if self._claim_job is None:
                self._claim_job = self.pool.register_script(CLAIM_JOB_SCRIPT)
            score = await self._claim_job(
                keys=[arq_constants.in_progress_key_prefix + job_id, self.queue_name],
                args=[job_id, timestamp_ms(), int(self.in_progress_timeout_s * 1000)],
                client=self.pool,
            )
            if score is not None:
                task = self.loop.create_task(self.run_job(job_id, int(score)))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task
                started = True
        finally:
            if not started:
                self.job_counter -= 1
                self.sem.release()

    async def close(self) -> None:
        try:
            await super().close()
        except (RedisError, OSError) as exc:
            # arq stops at its first Redis error, before on_shutdown: stop the poll loop and close
            # the MPC client anyway. What could not be handed back comes back when its lease ends.
            log.warning("redis unreachable while stopping; leases hand back the rest", error=repr(exc))
            self._handed_back = False
            runtime: Runtime | None = self.ctx.get("runtime")
            if runtime is not None:
                await runtime.close()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._report_stop()

    def _report_stop(self) -> None:
        runtime: Runtime | None = self.ctx.get("runtime")
        polls = runtime.polls_cut_short() if runtime is not None else []
        jobs = self._jobs_cut_short
        if not (polls or jobs or not self._handed_back):
            return
        self._cut_short = True
        log.error(
            "drain cut short",
            drain_s=runtime.settings.worker_drain_s if runtime is not None else None,
            polls_cut_short=len(polls),
            imports=polls[:LEFT_LOGGED_MAX],
            jobs_cut_short=len(jobs),
            jobs=jobs[:LEFT_LOGGED_MAX],
            handed_back=self._handed_back,
            exit_code=EXIT_DRAIN_CUT_SHORT,
        )

    def exit_code(self) -> int:
        """The process's exit code once :meth:`run` returned (see :mod:`bridge.exits`)."""
        runtime: Runtime | None = self.ctx.get("runtime")
        if runtime is not None and runtime.failed:
            return EXIT_FAILURE
        return EXIT_DRAIN_CUT_SHORT if self._cut_short else EXIT_OK


def _exit_now() -> None:
    log.error("worker did not stop within its drain and margin; exiting", exit_code=EXIT_STOP_TIMEOUT)
    os._exit(EXIT_STOP_TIMEOUT)
