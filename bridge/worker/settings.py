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
from bridge.redis_url import arq_settings, connect, parse_redis_url
from bridge.slack.followup import FOLLOWUP_MAX_TRIES, SLACK_FOLLOWUP_FUNCTION
from bridge.store import keys
from bridge.worker.runtime import BuildRuntime, in_flight_grace, shutdown, slack_followup, startup, sweep

SWEEP_EVERY_S: Final = 10
DELIVERY_LEASE_MARGIN_S: Final = 10.0
"""A claimed delivery's lease outlasts its timeout and in-flight grace by this much (as arq's
in-progress key outlasts a job's timeout by 10 s)."""


def health_check_key(host: str | None = None) -> str:
    """This host's health key: one per pod or container, so a probe checks its own worker."""
    return keys.worker_health(host or socket.gethostname())


def delivery_lease_s(settings: Settings) -> float:
    """How long a claimed delivery stays with its worker: longer than it can run, so only a worker
    that died leaves it to be claimed again."""
    return settings.delivery_timeout_s + in_flight_grace(settings) + DELIVERY_LEASE_MARGIN_S


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
                slack_followup,
                name=SLACK_FOLLOWUP_FUNCTION,
                max_tries=FOLLOWUP_MAX_TRIES,
                keep_result=0,
                timeout=settings.delivery_timeout_s,
            ),
        ],
        # Every job, the sweeper included, gets the delivery timeout: arq locks a started job for
        # its longest function timeout + 10 s, and a function without one would count as arq's
        # default (300 s), keeping a killed worker's follow-ups locked five minutes.
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
        # The drain ends with the grace a cancelled job gets to finish its send in flight (the
        # delivery loop drains in the same window, see Runtime.begin_stop).
        "job_completion_wait": settings.worker_drain_s - in_flight_grace(settings),
        "health_check_interval": WORKER_HEALTH_INTERVAL_S,
        "health_check_key": health_check_key(),
        "keep_result": 0,
        "handle_signals": True,
    }
