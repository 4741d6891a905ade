"""A worker's arq options, from :class:`~bridge.config.Settings`, and its health record's key
(:mod:`bridge.healthcheck` reads the record).

``workers.settings.WorkerSettings`` (for ``arq``) and ``bridge worker`` both get their options
from :func:`bridge.wiring.worker_options`, which calls :func:`arq_options` here.
"""

from __future__ import annotations

import socket
from typing import Any, Final

from arq import cron, func

from bridge.config import WORKER_HEALTH_INTERVAL_S, Settings
from bridge.core.codec import deserialize_job, serialize_job
from bridge.delivery.model import DELIVER_FUNCTION
from bridge.delivery.service import IN_FLIGHT_GRACE_S
from bridge.redis_url import arq_settings, connect, parse_redis_url
from bridge.slack.followup import FOLLOWUP_MAX_TRIES, SLACK_FOLLOWUP_FUNCTION
from bridge.store import keys
from bridge.worker.runtime import BuildRuntime, deliver, shutdown, slack_followup, startup, sweep

DELIVERY_MAX_TRIES: Final = 50
"""A ceiling far above any notifier's own schedule: notifiers decide when to give up."""
SWEEP_EVERY_S: Final = 10


def health_check_key(host: str | None = None) -> str:
    """This host's health key: one per pod or container, so a probe checks its own worker."""
    return keys.worker_health(host or socket.gethostname())


def in_flight_grace(settings: Settings) -> float:
    """The end of the drain window kept for deliveries cancelled mid-send to finish that send
    (half the window at most): arq stops waiting for jobs this long before the drain ends."""
    return min(IN_FLIGHT_GRACE_S, settings.worker_drain_s / 2)


def arq_options(settings: Settings, build_runtime: BuildRuntime) -> dict[str, Any]:
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
            ),
            func(
                slack_followup,
                name=SLACK_FOLLOWUP_FUNCTION,
                max_tries=FOLLOWUP_MAX_TRIES,
                keep_result=0,
                timeout=settings.delivery_timeout_s,
            ),
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
        "ctx": {"settings": settings, "build_runtime": build_runtime},
        "poll_delay": settings.worker_poll_delay_s,
        "max_jobs": settings.worker_max_jobs,
        # The drain ends with the grace a cancelled delivery gets to finish its send in flight.
        "job_completion_wait": settings.worker_drain_s - in_flight_grace(settings),
        "health_check_interval": WORKER_HEALTH_INTERVAL_S,
        "health_check_key": health_check_key(),
        "keep_result": 0,
        "handle_signals": True,
    }
