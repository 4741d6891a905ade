"""Shared fixtures: a real redis-server (ours, on a free loopback port), clean databases, and the
payload contract: every webhook payload a test's receivers get must validate against its
published schema, or the test fails.

``BRIDGE_TEST_REDIS_URL`` points the suite at an existing Redis instead; its database is
flushed before every test that uses it. The Sentinel, chaos and process tests start servers of
their own all the same, so a session without a usable ``redis-server`` stops before the first test.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bridge_tools.payload_contract import PayloadContract
from bridge_tools.processes import redis_server
from bridge_tools.redis_binary import RedisServerUnavailable, redis_server_found
from bridge_tools.webhook_receiver import WebhookReceiver

pytest_plugins = ["tests.integration.stack"]
"""A running API and worker (``stack``) for the tests of the published contract."""

CHECKED_IN_SESSION: Counter[str] = Counter()
"""Payloads validated against their published schema in this run, per event type."""


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


@pytest.fixture(autouse=True)
def payload_contract() -> Iterator[PayloadContract]:
    """Every payload an in-process webhook receiver gets during the test is validated."""
    contract = PayloadContract()
    WebhookReceiver.observers.append(contract.observe)
    try:
        yield contract
    finally:
        WebhookReceiver.observers.remove(contract.observe)
        CHECKED_IN_SESSION.update(contract.checked)
    failure = contract.failure()
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CHECKED_IN_SESSION:
        types = ", ".join(f"{t} ({n})" for t, n in sorted(CHECKED_IN_SESSION.items()))
        terminalreporter.write_line(
            f"{CHECKED_IN_SESSION.total()} webhook payloads validated against their published schemas, "
            f"{len(CHECKED_IN_SESSION)} event types: {types}"
        )
