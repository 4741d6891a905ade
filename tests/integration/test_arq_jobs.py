"""arq jobs in one round trip: the dispatcher's enqueue and the worker's claim, on a real Redis."""

from __future__ import annotations

from arq import constants as arq_constants
from arq.connections import ArqRedis
from arq.jobs import deserialize_job_raw
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from bridge.core.codec import deserialize_job, serialize_job
from bridge.delivery.model import DELIVER_FUNCTION, DeliveryJob, job_id
from bridge.store import keys, scripts
from bridge.worker.arq_compat import JOB_EXPIRES_S, ArqQueue

QUEUE = "bridge:test-queue"
TIMEOUT_MS = 10_000


async def claim(redis: Redis, job_id: str, now: int) -> bytes | None:
    script = scripts.register(redis, "arq_claim_job")
    result: bytes | None = await script(
        keys=[arq_constants.in_progress_key_prefix + job_id, QUEUE], args=[job_id, now, TIMEOUT_MS]
    )
    return result


async def test_a_due_job_is_claimed_once_with_its_score(redis: Redis) -> None:
    now = timestamp_ms()
    await redis.zadd(QUEUE, {"job-a": now - 5})
    assert await claim(redis, "job-a", now) == str(now - 5).encode()
    assert await redis.pttl(arq_constants.in_progress_key_prefix + "job-a") > TIMEOUT_MS - 1000
    assert await claim(redis, "job-a", now) is None  # in progress: another worker must not start it


async def test_a_deferred_or_finished_job_is_not_claimed(redis: Redis) -> None:
    now = timestamp_ms()
    await redis.zadd(QUEUE, {"job-later": now + 60_000})
    assert await claim(redis, "job-later", now) is None
    assert await claim(redis, "job-gone", now) is None
    assert await redis.exists(arq_constants.in_progress_key_prefix + "job-later") == 0


async def test_dispatch_writes_what_arq_enqueue_job_writes_once_per_job(redis: Redis) -> None:
    arq = ArqRedis(
        connection_pool=redis.connection_pool, job_serializer=serialize_job, job_deserializer=deserialize_job
    )
    dispatcher = ArqQueue(arq)
    assert await dispatcher.dispatch("evt_1", ["log", "sub:sub_1", "log"]) == 2
    assert await dispatcher.dispatch("evt_1", ["log", "sub:sub_2"]) == 1  # the log job exists already
    assert await dispatcher.dispatch("evt_1", []) == 0
    queued = {m.decode() for m in await redis.zrange(keys.QUEUE, 0, -1)}
    assert queued == {job_id("evt_1", d) for d in ("log", "sub:sub_1", "sub:sub_2")}
    ours = await redis.get(arq_constants.job_key_prefix + job_id("evt_1", "sub:sub_1"))
    await arq.enqueue_job(
        DELIVER_FUNCTION, DeliveryJob(event_id="evt_1", destination="sub:sub_1"), _job_id="reference"
    )
    theirs = await redis.get(arq_constants.job_key_prefix + "reference")
    *job, enqueued_ms = deserialize_job_raw(ours, deserializer=deserialize_job)
    *reference, _ = deserialize_job_raw(theirs, deserializer=deserialize_job)
    assert job == reference and job[0] == DELIVER_FUNCTION
    assert abs(enqueued_ms - timestamp_ms()) < 60_000
    ttl_ms = await redis.pttl(arq_constants.job_key_prefix + job_id("evt_1", "log"))
    assert JOB_EXPIRES_S * 1000 - 60_000 < ttl_ms <= JOB_EXPIRES_S * 1000
