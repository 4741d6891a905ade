"""docs/webhooks.md's Python snippets, run in order against real deliveries from a running bridge.

The guide's code is what a receiver's developers copy: if it stops working against the bridge,
this test fails.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from bridge_tools.webhook_receiver import Received, Reply
from mpc_simulator import SimulatorControl
from tests.integration.conftest import API_KEY, SLUG, eventually
from tests.integration.stack import AUTH, Stack

pytestmark = pytest.mark.slow
GUIDE: Final = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SNIPPET: Final = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
IMPORT = "imp-guide"
FILTER: Final = ["bulk.started", "bulk.finished", "bulk.failed", "import.completed"]
"""``bulk.discovered`` is left out: the guide's catch-up must step over it."""


def run_guide() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "webhooks_guide"}
    snippets = SNIPPET.findall(GUIDE.read_text())
    assert len(snippets) >= 5, "the guide lost its snippets"
    for number, source in enumerate(snippets, 1):
        exec(compile(source, f"{GUIDE.name} snippet {number}", "exec"), namespace)  # noqa: S102
    return namespace


def test_every_snippet_of_the_guide_runs() -> None:
    guide = run_guide()
    for name in ("verify_with_standardwebhooks", "verify_with_svix", "Inbox", "events_after", "WatchLog"):
        assert callable(guide[name]), name


async def _deliveries(stack: Stack, count: int) -> list[Received]:
    async def unique() -> list[Received] | None:
        ok = {r.webhook_id: r for r in stack.receiver.received if 200 <= r.status < 300 and r.webhook_id}
        return list(ok.values()) if len(ok) >= count else None

    found: list[Received] = await eventually(unique, 30, f"{count} deliveries")
    return found


async def test_the_guides_code_verifies_deduplicates_orders_and_catches_up_real_deliveries(
    stack: Stack, control: SimulatorControl
) -> None:
    guide = run_guide()
    api = httpx.AsyncClient(base_url=stack.api_url, headers=AUTH)
    # The receiver fails the first attempts: real retries, so real duplicates and late arrivals.
    stack.receiver.script("hooks", [Reply(status=503), Reply(status=500)])
    created = (
        await api.post("/v1/subscriptions", json={"url": stack.receiver.url(), "event_types": FILTER})
    ).json()
    secret = created["secret"]
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    watch = (await api.post("/v1/watches", json={"loyalty_club_slug": SLUG, "import_id": IMPORT})).json()
    route = f"/v1/watches/{watch['id']}/events"

    async def timeline_has(count: int) -> bool:
        return len((await api.get(route, params={"limit": 500})).json()["items"]) >= count

    await eventually(lambda: timeline_has(2), 20, "two bulk.discovered")
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await control.patch_bulk(SLUG, IMPORT, 2, status="working")
    await eventually(lambda: timeline_has(4), 20, "two bulk.started")
    await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_created_number=3)
    await control.patch_bulk(SLUG, IMPORT, 2, status="failed", retries=5)
    await eventually(lambda: timeline_has(7), 20, "finished, failed, import.completed")
    received = await _deliveries(stack, 5)
    timeline = (await api.get(route, params={"limit": 500})).json()["items"]
    assert [i["position"] for i in timeline] == list(range(1, 8))

    # Verifying: both libraries accept every real delivery, and refuse a tampered one.
    for record in stack.receiver.received:
        if record.webhook_id is None:
            continue
        assert guide["verify_with_standardwebhooks"](secret, record.headers, record.body)["data"]["watch_id"]
        assert guide["verify_with_svix"](secret, record.headers, record.body)["type"] in FILTER
    tampered = received[0].body.replace(b'"sequence"', b'"sequencE"')
    for verify in (guide["verify_with_standardwebhooks"], guide["verify_with_svix"]):
        with pytest.raises(Exception, match=r"(?i)signature"):
            verify(secret, received[0].headers, tampered)

    # Idempotency: every attempt (the failed ones were retried with the same webhook-id) and a
    # replay of each, handled once per event.
    inbox = guide["Inbox"]()
    attempts = [r for r in stack.receiver.received if r.webhook_id] + received
    handled = [r.headers["webhook-id"] for r in attempts if inbox.first_time(r.headers)]
    assert sorted(handled) == sorted(r.headers["webhook-id"] for r in received)
    assert len(attempts) > len(handled)

    # Ordering and catching up: deliveries applied in reverse arrival order, one of them lost.
    payloads = sorted((r.json() for r in received), key=lambda p: p["data"]["position"], reverse=True)
    lost = next(p for p in payloads if p["type"] == "bulk.finished")
    log = guide["WatchLog"](FILTER)
    for payload in payloads:
        if payload is not lost:
            log.receive(payload)
    assert log.has_gap() and log.applied == []  # position 3 needs 1 and 2 first (filtered out)
    after = await asyncio.to_thread(guide["events_after"], stack.api_url, API_KEY, watch["id"], log.position)
    log.catch_up(after)
    assert not log.has_gap() and log.position == 7
    expected = [i for i in timeline if i["type"] in FILTER]
    assert [p["data"]["event_id"] for p in log.applied] == [i["event_id"] for i in expected]
    assert [p["type"] for p in log.applied][-1] == "import.completed"

    # A test event: signed like the others, with no watch and no position.
    sent = await api.post(f"/v1/subscriptions/{created['id']}/test")
    assert sent.status_code == 202

    async def test_event() -> Received | None:
        return next((r for r in stack.receiver.received if r.json()["type"] == "webhook.test"), None)

    record = await eventually(test_event, 20, "the test event")
    payload = guide["verify_with_standardwebhooks"](secret, record.headers, record.body)
    assert payload["data"]["watch_id"] == "" and "position" not in payload["data"]
    await api.aclose()
