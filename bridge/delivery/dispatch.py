"""From the outbox to arq: one job per (event, destination), keyed so it exists at most once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from bridge.delivery.model import DELIVER_FUNCTION, DeliveryJob, job_id
from bridge.store import keys

JOB_EXPIRES_S: Final = 7 * 86_400
"""arq drops a job not started within this long; the sweeper re-creates it from the outbox."""


class Dispatcher:
    def __init__(self, queue: Any) -> None:
        self._queue = queue
        """An ``arq.connections.ArqRedis`` created with the msgspec serializer."""

    async def dispatch(self, event_id: str, destinations: Iterable[str]) -> int:
        """Enqueue a delivery job per destination; returns how many were new."""
        created = 0
        for destination in destinations:
            job = await self._queue.enqueue_job(
                DELIVER_FUNCTION,
                DeliveryJob(event_id=event_id, destination=destination),
                _job_id=job_id(event_id, destination),
                _queue_name=keys.QUEUE,
                _expires=JOB_EXPIRES_S,
            )
            created += job is not None
        return created
