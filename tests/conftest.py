"""Shared fixtures: a real redis-server (ours, on a free loopback port) and clean databases.

``BRIDGE_TEST_REDIS_URL`` points the suite at an existing Redis instead; its database is
flushed before every test that uses it. The Sentinel, chaos and process tests start servers of
their own all the same, so a session without a usable ``redis-server`` stops before the first test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bridge_tools.processes import redis_server
from bridge_tools.redis_binary import RedisServerUnavailable, redis_server_found


def pytest_collection(session: pytest.Session) -> None:
    """No ``redis-server`` >= 7 to start: stop before collecting, with one line saying what was
    found and what to install, instead of failing deep inside the tests that start one."""
    try:
        redis_server_found()
    except RedisServerUnavailable as exc:
        pytest.exit(str(exc), returncode=pytest.ExitCode.INTERRUPTED)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("BRIDGE_TEST_REDIS_URL")
    if given:
        yield given
        return
    workdir: Path = tmp_path_factory.mktemp("redis")
    with redis_server(workdir) as (_, port):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
