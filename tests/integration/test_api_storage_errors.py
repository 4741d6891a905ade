"""The API when Redis refuses it: a clear 503 with Retry-After, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from bridge.app import create_app
from bridge.config import load_settings
from bridge_tools.processes import (
    LOOPBACK,
    Process,
    free_port,
    redis_answers,
    wait_until,
)
from bridge_tools.redis_binary import redis_server_binary
from tests.integration.conftest import SECRET_KEY

KEY = "storage-test-key-0123456789abcdefgh"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[int]:
    """A real redis-server that wants a password the API does not have."""
    port = free_port()
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--requirepass",
        "x",
    ]
    proc = Process(argv, tmp_path / "redis.log").start()
    try:
        wait_until(lambda: redis_answers(port) or "Ready to accept" in proc.output(), 15, "redis-server")
        yield port
    finally:
        proc.stop()


def test_a_redis_error_is_a_503_storage_unavailable_with_retry_after(locked_redis: int) -> None:
    url = f"redis://{LOOPBACK}:{locked_redis}/0"
    settings = load_settings(
        {"BRIDGE_REDIS_URL": url, "BRIDGE_API_KEYS": KEY, "BRIDGE_SECRET_KEY": SECRET_KEY}
    )
    with TestClient(create_app(settings)) as client:
        answer: Any = client.get("/v1/watches", headers={"Authorization": f"Bearer {KEY}"})
        ready = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "storage_unavailable"
    assert int(answer.headers["retry-after"]) > 0
    assert ready.status_code == 503
