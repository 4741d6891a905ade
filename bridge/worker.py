"""A worker process: arq runs the delivery jobs and the sweeper; the poll loop runs beside it.

``workers.settings.WorkerSettings`` (for ``arq``) and ``bridge worker`` both use
:func:`worker_settings`, which turns :class:`~bridge.config.Settings` into arq's options.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import httpx
import msgspec
import structlog
from arq import Retry, cron, func
from arq.connections import RedisSettings

from bridge.config import Settings
from bridge.core.diff import Rules
from bridge.core.schedule import Intervals
from bridge.credentials import CachedCredentials, CredentialStore
from bridge.crypto import SecretBox
from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.model import DELIVER_FUNCTION, DeliveryJob
from bridge.delivery.registry import build_notifiers, build_resolver, close_notifiers
from bridge.delivery.service import Deliveries, RetryLater
from bridge.http import Fetcher, build_transport
from bridge.logs import configure_logging, get_logger
from bridge.metrics import WorkerMetrics
from bridge.poller import Poller, PollerConfig
from bridge.slack.factory import open_session, slack_mode
from bridge.store import keys
from bridge.store.redis_store import RedisStore
from bridge.upstream.mpc import MAX_BODY_BYTES, ClubCredentials, MpcClient

DELIVERY_MAX_TRIES: Final = 50
"""A ceiling far above any notifier's own schedule: notifiers decide when to give up."""
DELIVERY_TIMEOUT_S: Final = 60
SWEEP_EVERY_S: Final = 10
OUTBOX_GRACE_S: Final = 30.0
"""An outbox entry this old without a job is re-dispatched (the poller normally does it at once)."""
SWEEP_BATCH: Final = 1000
HEALTH_CHECK_INTERVAL_S: Final = 30
UPSTREAM_CONNECTIONS_PER_POLL: Final = 2

log = get_logger("bridge.worker")

_job_encoder: Final = msgspec.msgpack.Encoder(enc_hook=repr)


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq's job and result envelope as msgpack; anything not msgpack-able becomes its repr."""
    return _job_encoder.encode(data)


def deserialize_job(raw: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.msgpack.decode(raw)
    return decoded


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 10
    settings.conn_timeout = 2
    return settings


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
        self.deliveries = Deliveries(self.store, self.notifiers, metrics=self.metrics)
        self.poller = Poller(
            store=self.store,
            upstream=self.mpc,
            config=poller_config(settings),
            dispatch=self.dispatcher.dispatch,
            resolver=build_resolver(settings, store=self.store, redis=redis),
            metrics=self.metrics,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.poller.run()), loop.create_task(self.metrics.run(self.redis))]

    async def check_notifiers(self) -> None:
        """Let notifiers that can check their credentials do so (logged, never fatal)."""
        for notifier in self.notifiers.values():
            check = getattr(notifier, "check", None)
            if check is not None:
                await check()

    async def close(self) -> None:
        await self.poller.stop(self.settings.worker_drain_s)
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
    rescheduled = await runtime.store.reschedule_orphans(now)
    if created or rescheduled:
        log.warning("sweeper repaired", jobs_recreated=created, imports_rescheduled=rescheduled)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """arq ``Worker`` keyword arguments for these settings."""
    settings.require_secret_key()
    return {
        "functions": [
            func(
                deliver,
                name=DELIVER_FUNCTION,
                max_tries=DELIVERY_MAX_TRIES,
                keep_result=0,
                timeout=DELIVERY_TIMEOUT_S,
            )
        ],
        "cron_jobs": [cron(sweep, second=set(range(0, 60, SWEEP_EVERY_S)), unique=True, run_at_startup=True)],
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": keys.QUEUE,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "poll_delay": settings.worker_poll_delay_s,
        "max_jobs": settings.worker_max_jobs,
        "job_completion_wait": int(settings.worker_drain_s),
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "keep_result": 0,
        "handle_signals": True,
    }
