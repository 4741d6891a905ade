"""examples/receiver.py end to end: a real bridge (API and worker processes) and the MPC simulator
produce the deliveries; on their way to the reference receiver some are duplicated, reordered and
dropped. The receiver must apply exactly the events its subscription matches, in position order,
each once, catching up through the API for what it never got."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from bridge_tools.processes import LOOPBACK, Process, free_port, wait_until
from bridge_tools.webhook_receiver import Received
from mpc_simulator import SimulatorControl
from tests.integration.conftest import API_KEY, SLUG, eventually
from tests.integration.stack import AUTH, Stack

pytestmark = pytest.mark.slow
RECEIVER: Final = Path(__file__).resolve().parents[2] / "examples" / "receiver.py"
START_TIMEOUT_S: Final = 15.0
IMPORT = "imp-reference"
FILTER: Final = ["bulk.started", "bulk.finished", "bulk.failed", "import.completed"]


class Reference:
    def __init__(self, url: str, process: Process) -> None:
        self.url = url
        self.process = process


@pytest.fixture
def start_reference(tmp_path: Path) -> Iterator[Any]:
    started: list[Process] = []

    def start(secret: str, api_url: str) -> Reference:
        port = free_port()
        argv = [sys.executable, str(RECEIVER), "--port", str(port), "--secret", secret, "--api-url", api_url]
        argv += ["--api-key", API_KEY, "--event-types", ",".join(FILTER)]
        process = Process(argv, tmp_path / "reference.log").start()
        started.append(process)
        url = f"http://{LOOPBACK}:{port}"

        def ready() -> bool:
            try:
                return httpx.get(url + "/applied", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return not process.alive()

        wait_until(ready, START_TIMEOUT_S, "the reference receiver")
        assert process.alive(), process.output()
        return Reference(url, process)

    try:
        yield start
    finally:
        for process in started:
            assert process.stop() == 0, process.output()


def faulty(deliveries: list[Received]) -> tuple[list[Received], Received]:
    """Every delivery twice over, in reverse order, except one lost on the way: a
    ``bulk.finished`` (with events after it, so the receiver can see the gap)."""
    ordered = sorted(deliveries, key=lambda r: r.json()["data"]["position"])
    lost = next(r for r in ordered if r.json()["type"] == "bulk.finished")
    kept = [r for r in ordered if r is not lost]
    return list(reversed(kept)) + kept[::2], lost


async def test_the_reference_receiver_applies_each_event_once_in_order_despite_faults(
    stack: Stack, control: SimulatorControl, start_reference: Any
) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=AUTH) as api:
        created = (
            await api.post("/v1/subscriptions", json={"url": stack.receiver.url(), "event_types": FILTER})
        ).json()
        reference = await asyncio.to_thread(start_reference, created["secret"], stack.api_url)
        await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
        watch = (await api.post("/v1/watches", json={"loyalty_club_slug": SLUG, "import_id": IMPORT})).json()
        route = f"/v1/watches/{watch['id']}/events"

        async def timeline(count: int) -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await api.get(route, params={"limit": 500})).json()["items"]
            return items if len(items) >= count else None

        await eventually(lambda: timeline(2), 20, "two bulk.discovered")
        await control.patch_bulk(SLUG, IMPORT, 1, status="working")
        await control.patch_bulk(SLUG, IMPORT, 2, status="working")
        await eventually(lambda: timeline(4), 20, "two bulk.started")
        await control.patch_bulk(SLUG, IMPORT, 1, status="finished", members_created_number=3)
        await control.patch_bulk(SLUG, IMPORT, 2, status="failed", retries=5)
        events = await eventually(lambda: timeline(7), 20, "finished, failed, import.completed")

        async def delivered() -> list[Received] | None:
            found = [r for r in stack.receiver.received if r.webhook_id]
            return found if len(found) >= 5 else None

        deliveries = await eventually(delivered, 20, "the subscription's five deliveries")
        sent, lost = faulty(deliveries)
        async with httpx.AsyncClient(base_url=reference.url) as relay:
            for record in sent:
                answer = await relay.post("/", content=record.body, headers=_forwarded(record.headers))
                assert answer.status_code == 204, answer.status_code
            forged = await relay.post(
                "/", content=sent[0].body.replace(b"bulk", b"BULK"), headers=_forwarded(sent[0].headers)
            )
            assert forged.status_code == 401
            applied = (await relay.get("/applied")).json()

    expected = [e["event_id"] for e in events if e["type"] in FILTER]
    assert applied == {watch["id"]: expected}
    assert lost.json()["data"]["event_id"] in expected  # caught up from the API, never delivered
    log = reference.process.output()
    assert log.count("applied ") == len(expected)


def _forwarded(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("webhook-") or k == "content-type"}
