"""Bounded growth and bounded fan-out: caps per club and per watch, at the API, against a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
from litestar.testing import TestClient

from bridge.app import create_app
from bridge.config import load_settings
from tests.integration.conftest import SECRET_KEY

KEY: Final = "limits-test-key-0123456789abcdefghij"
AUTH: Final = {"Authorization": f"Bearer {KEY}"}
SLUG: Final = "infinity-mall"

ClientFactory = Callable[..., TestClient[Any]]


@pytest.fixture
def client_with(redis_url: str, redis: Any) -> Iterator[ClientFactory]:
    # `redis` flushes the database first.
    opened: list[TestClient[Any]] = []

    def make(**extra: str) -> TestClient[Any]:
        settings = load_settings(
            {"BRIDGE_REDIS_URL": redis_url, "BRIDGE_API_KEYS": KEY, "BRIDGE_SECRET_KEY": SECRET_KEY, **extra}
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        opened.append(client)
        return client

    try:
        yield make
    finally:
        for client in opened:
            client.__exit__(None, None, None)


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def test_a_watch_may_name_at_most_the_configured_number_of_bulks(client_with: ClientFactory) -> None:
    client = client_with(BRIDGE_WATCH_MAX_BULK_IDS="100")
    body = {"loyalty_club_slug": SLUG, "import_id": "imp-1"}
    too_many = client.post("/v1/watches", json={**body, "bulk_ids": list(range(1, 102))}, headers=AUTH)
    assert too_many.status_code == 422 and error_code(too_many) == "validation_error"
    assert "at most 100" in too_many.json()["error"]["message"]
    assert client.get("/v1/watches", headers=AUTH).json()["items"] == []  # nothing created
    enough = client.post("/v1/watches", json={**body, "bulk_ids": list(range(1, 101))}, headers=AUTH)
    assert enough.status_code == 201
    whole = client.post("/v1/watches", json={**body, "import_id": "imp-2"}, headers=AUTH)
    assert whole.status_code == 201  # a whole-import watch follows any number of bulks
