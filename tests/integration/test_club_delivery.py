"""End to end: a subscription made with club A's key receives club A's events and none of club
B's, while both clubs' imports run through a real worker process (the API in this process, the
MPC simulator and the webhook receiver as real HTTP servers on 127.0.0.1)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import standardwebhooks
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from bridge.app import create_app
from bridge.config import load_settings
from bridge.store import keys
from bridge_tools.processes import Process
from bridge_tools.webhook_receiver import WebhookReceiver
from mpc_simulator import RunningSimulator, SimulatorControl
from tests.integration.conftest import FAST_ENV, MPC_TOKEN, eventually
from tests.integration.webhooks_helpers import FERNET_KEY, LOOPBACK_NET

pytestmark = pytest.mark.slow
ADMIN_KEY: Final = "club-delivery-admin-0123456789abcdef"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_KEY}"}
CLUB_A: Final = "club-a"
CLUB_B: Final = "club-b"
IMPORT: Final = "imp-clubs"
HOOK_A: Final = "hooks/club-a"
HOOK_ALL: Final = "hooks/all"
WAIT_S: Final = 30.0


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as running:
        yield running


@pytest.fixture
async def api(redis_url: str, redis: Redis) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_API_KEYS": ADMIN_KEY,
            "BRIDGE_SECRET_KEY": FERNET_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": LOOPBACK_NET,
        }
    )
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def created(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_club_a_subscription_receives_only_club_as_events_while_both_imports_run(
    api: AsyncTestClient[Any],
    redis: Redis,
    redis_url: str,
    simulator: RunningSimulator,
    control: SimulatorControl,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    async def new_key(club: str) -> dict[str, str]:
        key = await created(
            await api.post(
                "/v1/api-keys", json={"name": club, "clubs": [club], "role": "editor"}, headers=ADMIN
            )
        )
        return {"Authorization": f"Bearer {key['key']}"}

    editor_a, editor_b = await new_key(CLUB_A), await new_key(CLUB_B)
    sub_a = await created(
        await api.post("/v1/subscriptions", json={"url": receiver.url(HOOK_A)}, headers=editor_a)
    )
    assert sub_a["clubs"] == [CLUB_A]
    # The control: an admin's subscription to every club's events, on its own path.
    sub_all = await created(
        await api.post("/v1/subscriptions", json={"url": receiver.url(HOOK_ALL)}, headers=ADMIN)
    )
    assert sub_all["clubs"] is None
    receiver.set_secrets(HOOK_A, [sub_a["secret"]])

    for club, bulk in ((CLUB_A, 1), (CLUB_B, 2)):
        await control.put_import(club, IMPORT, [{"id": bulk}])
    watch_a = await created(
        await api.post(
            "/v1/watches", json={"loyalty_club_slug": CLUB_A, "import_id": IMPORT}, headers=editor_a
        )
    )
    watch_b = await created(
        await api.post(
            "/v1/watches", json={"loyalty_club_slug": CLUB_B, "import_id": IMPORT}, headers=editor_b
        )
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(FAST_ENV)
    env.update(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_MPC_BASE_URL": simulator.url,
            "BRIDGE_MPC_TOKEN": MPC_TOKEN,
            "BRIDGE_API_KEYS": ADMIN_KEY,
            "BRIDGE_SECRET_KEY": FERNET_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": LOOPBACK_NET,
            "BRIDGE_NOTIFY_LOG": "false",
            "BRIDGE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    worker = Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
    try:

        def seen(event_type: str, club: str) -> bool:
            return any(
                r.json()["type"] == event_type and r.json()["data"]["loyalty_club_slug"] == club
                for r in receiver.requests(HOOK_ALL)
            )

        async def both(event_type: str) -> None:
            async def check() -> bool:
                return seen(event_type, CLUB_A) and seen(event_type, CLUB_B)

            await eventually(check, WAIT_S, f"{event_type} of both clubs at the control subscription")

        # Both imports run side by side: each bulk is discovered, starts, then finishes.
        await both("bulk.discovered")
        for club, bulk in ((CLUB_A, 1), (CLUB_B, 2)):
            await control.patch_bulk(club, IMPORT, bulk, status="working")
        await both("bulk.started")
        for club, bulk in ((CLUB_A, 1), (CLUB_B, 2)):
            await control.patch_bulk(club, IMPORT, bulk, status="finished", members_created_number=bulk)
        # Arrival order is not promised: a bulk's finish can arrive after its import's completion.
        await both("import.completed")
        await both("bulk.finished")

        async def a_completed() -> bool:
            return any(r.json()["type"] == "import.completed" for r in receiver.requests(HOOK_A))

        await eventually(a_completed, WAIT_S, "club A's import.completed at club A's subscription")
    finally:
        worker.stop()

    everything = [r.json() for r in receiver.requests(HOOK_ALL)]
    of_a = [e for e in everything if e["data"]["loyalty_club_slug"] == CLUB_A]
    of_b = [e for e in everything if e["data"]["loyalty_club_slug"] == CLUB_B]
    assert {e["data"]["watch_id"] for e in of_b} == {watch_b["id"]}
    assert {"bulk.discovered", "bulk.started", "bulk.finished", "import.completed"} <= {
        e["type"] for e in of_b
    }

    got = receiver.requests(HOOK_A)
    assert got and all(r.verified for r in got)
    for received in got:
        standardwebhooks.Webhook(sub_a["secret"]).verify(received.body, received.headers)
    assert {r.json()["data"]["loyalty_club_slug"] for r in got} == {CLUB_A}
    assert sorted(r.json()["data"]["event_id"] for r in got) == sorted(e["data"]["event_id"] for e in of_a)
    assert {r.json()["data"]["watch_id"] for r in got} == {watch_a["id"]}

    # Nothing of B's was ever routed to A's subscription, not even waiting in the outbox.
    b_events = {e["data"]["event_id"] for e in of_b}
    outbox = [entry.decode() for entry in await redis.zrange(keys.OUTBOX, 0, -1)]
    assert not [
        entry for entry in outbox if keys.split_outbox_entry(entry)[0] in b_events and sub_a["id"] in entry
    ]
    deliveries = await created(
        await api.get(f"/v1/subscriptions/{sub_a['id']}/deliveries", headers=editor_a), 200
    )
    assert {d["event_id"] for d in deliveries["items"]}.isdisjoint(b_events)
    assert len(deliveries["items"]) == len(of_a)
    # And club A's key cannot see the control subscription that carried B's events.
    hidden = await api.get(f"/v1/subscriptions/{sub_all['id']}", headers=editor_a)
    assert hidden.status_code == 404
