"""arq jobs (the sweeper, Slack follow-ups) claimed in one round trip, on a real Redis."""

from __future__ import annotations

from arq import constants as arq_constants
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from bridge.store import scripts

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
