"""The published contract: the OpenAPI document's webhooks, the event catalog, ordering by position.

A receiver's developers build from the document alone, so it must be valid, say only what the API
does, and publish every payload's schema, generated from the types that encode it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from litestar.testing import TestClient
from openapi_spec_validator import validate
from redis.asyncio import Redis

from bridge.app import create_app
from bridge.config import load_settings
from bridge.core.catalog import EVENT_CATALOG
from bridge.core.model import EVENT_TYPES, SlackTarget, WatchSpec
from bridge.store import keys
from bridge.webhooks.actions import make_test_event
from bridge.webhooks.model import destination
from bridge.webhooks.signing import HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP
from bridge_tools.payload_contract import PayloadContract
from bridge_tools.webhook_receiver import WebhookReceiver
from mpc_simulator import SimulatorControl
from tests.integration.conftest import SECRET_KEY, SLUG, Pipeline, outbox
from tests.integration.webhooks_helpers import Webhooks

KEY = "contract-key-0123456789abcdefghijklmn"
AUTH = {"Authorization": f"Bearer {KEY}"}
IMPORT = "imp-contract"
HOOK = "http://127.0.0.1:9/hooks/crm"


@pytest.fixture
def client(redis_url: str, redis: Redis) -> Iterator[TestClient[Any]]:
    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_API_KEYS": KEY,
            "BRIDGE_SECRET_KEY": SECRET_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
        }
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def document(client: TestClient[Any]) -> dict[str, Any]:
    served: dict[str, Any] = client.get("/schema/openapi.json").json()
    return served


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_event_type_is_a_webhook_with_its_schema_headers_and_a_valid_example(
    document: dict[str, Any],
) -> None:
    webhooks = document["webhooks"]
    assert list(webhooks) == list(EVENT_CATALOG) and set(webhooks) == set(EVENT_TYPES)
    components = document["components"]["schemas"]
    for event_type, item in webhooks.items():
        post = item["post"]
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header" and p["required"]}
        assert headers == {HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE}
        body = post["requestBody"]["content"]["application/json"]
        name = body["schema"]["$ref"].rsplit("/", 1)[1]
        # The published component is the schema of the type that encodes the payload.
        schema = {**components[name], "$defs": components}
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(_local_refs(schema))
        validator.validate(body["example"])
        assert body["example"]["type"] == event_type
        assert components[name]["properties"]["type"] == {"enum": [event_type]}


def _local_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Point ``#/components/schemas/X`` at ``#/$defs/X`` so the component validates on its own."""
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def test_the_catalog_lists_each_type_with_description_schema_and_example(client: TestClient[Any]) -> None:
    answer = client.get("/v1/event-types", headers=AUTH)
    assert answer.status_code == 200
    page = answer.json()
    assert page["next_cursor"] is None
    assert [item["type"] for item in page["items"]] == list(EVENT_CATALOG)
    for item in page["items"]:
        assert item["description"] and "\n" not in item["description"]
        Draft202012Validator.check_schema(item["schema"])
        Draft202012Validator(item["schema"]).validate(item["example"])
    assert client.get("/v1/event-types").status_code == 401


def test_the_catalog_the_webhooks_and_the_filter_check_read_one_list(client: TestClient[Any]) -> None:
    for event_type in EVENT_CATALOG:
        created = client.post(
            "/v1/subscriptions",
            json={"url": HOOK, "event_types": [event_type]},
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
    refused = client.post(
        "/v1/subscriptions",
        json={"url": HOOK, "event_types": ["bulk.finsihed"]},
        headers=AUTH,
    )
    assert refused.status_code == 422


def test_only_answers_the_api_gives_are_documented_in_its_error_envelope(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                text = str(response)
                assert "Validation Exception" not in text and "status_code" not in text, (
                    method,
                    path,
                    status,
                )
                if status.startswith("4") and path.startswith("/v1"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)


def test_component_names_read_like_the_domain(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])
    assert {"Watch", "WatchPage", "TimelinePage", "Subscription", "Delivery", "BulkFinished"} <= names
    assert all(name.isidentifier() and "_" not in name for name in names), sorted(names)
    titles = {name: schema.get("title", name) for name, schema in document["components"]["schemas"].items()}
    assert all(title == name for name, title in titles.items()), titles


async def test_the_timeline_gives_positions_and_resumes_after_one(
    pipeline: Pipeline, control: SimulatorControl, client: TestClient[Any]
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 1}, {"id": 2}])
    now = time.time()
    watch = WatchSpec(
        id="wch_00000000000000000000cccc",
        loyalty_club_slug=SLUG,
        import_id=IMPORT,
        created_at=now,
        expires_at=now + 3600,
        slack=SlackTarget(channel="C0123456789"),
    )
    await pipeline.create(watch)
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="working")
    await control.patch_bulk(SLUG, IMPORT, 2, status="finished", members_created_number=3)
    await pipeline.poll_due()
    await control.patch_bulk(SLUG, IMPORT, 1, status="failed", retries=5)
    await pipeline.poll_due()
    stored = await pipeline.events(watch.id)
    assert [e.data.position for e in stored] == list(range(1, len(stored) + 1)) and len(stored) >= 6

    route = f"/v1/watches/{watch.id}/events"
    items = client.get(route, headers=AUTH).json()["items"]
    assert (
        [i["position"] for i in items]
        == [i["data"]["position"] for i in items]
        == list(range(1, len(stored) + 1))
    )
    later = client.get(route, params={"after": 3, "limit": 2}, headers=AUTH).json()
    assert [i["position"] for i in later["items"]] == [4, 5]
    rest = client.get(route, params={"cursor": later["next_cursor"]}, headers=AUTH).json()
    assert [i["position"] for i in rest["items"]] == list(range(6, len(stored) + 1))
    assert client.get(route, params={"after": len(stored)}, headers=AUTH).json() == {
        "items": [],
        "next_cursor": None,
    }
    both = client.get(route, params={"after": 5, "cursor": "2"}, headers=AUTH).json()["items"]
    assert both[0]["position"] == 6  # the later of the two
    for hostile in ("-1", "NaN", "99999999999999999999", "1.5", ""):
        answer = client.get(route, params={"after": hostile}, headers=AUTH)
        assert answer.status_code in (400, 422) and set(answer.json()) == {"error"}, hostile


async def test_every_in_process_receiver_reports_what_it_gets_to_the_payload_contract(
    payload_contract: PayloadContract,
) -> None:
    async with WebhookReceiver() as receiver, httpx.AsyncClient() as http:
        good = EVENT_CATALOG["bulk.finished"].example_json()
        await http.post(receiver.url(), json=good, headers={HEADER_ID: "evt_1"})
        await http.post(receiver.url(), json={**good, "type": "bulk.exploded"}, headers={HEADER_ID: "evt_2"})
    assert payload_contract.checked == {"bulk.finished": 1}
    assert payload_contract.violations == ["event type 'bulk.exploded' is sent but not published"]
    payload_contract.violations.clear()  # seen: this test passes; any other would fail here


async def test_every_event_type_reaches_a_receiver_and_validates_against_its_published_schema(
    pipeline_factory: Any, control: SimulatorControl, redis: Redis, payload_contract: PayloadContract
) -> None:
    pipeline: Pipeline = pipeline_factory(BRIDGE_UPSTREAM_FAILING_AFTER="3")
    webhooks = Webhooks(redis)
    async with WebhookReceiver() as receiver:
        sid, _ = await webhooks.subscribe(receiver.url())
        now = time.time()
        # A named bulk: failing, recovered, started, stalled, expired.
        await control.put_import(SLUG, "imp-named", [{"id": 5}])
        named = await pipeline.create(
            WatchSpec(
                id="wch_0000000000000000000000a1",
                loyalty_club_slug=SLUG,
                import_id="imp-named",
                created_at=now,
                expires_at=now + 3.0,
                bulk_ids=(5,),
                stall_after_s=0.2,
            )
        )
        await pipeline.poll_due()
        await control.add_fault("503", count=3, retry_after=0)
        for _ in range(4):
            await pipeline.poll_due()
        await control.patch_bulk(SLUG, "imp-named", 5, status="working")
        await pipeline.poll_due()
        await asyncio.sleep(0.3)
        await pipeline.poll_due()
        # A whole import with progress: every bulk event and the completion.
        await control.put_import(SLUG, "imp-whole", [{"id": 1}, {"id": 2}, {"id": 3}])
        whole = await pipeline.create(
            WatchSpec(
                id="wch_0000000000000000000000a2",
                loyalty_club_slug=SLUG,
                import_id="imp-whole",
                created_at=now,
                expires_at=now + 3600,
                notify_progress=True,
            )
        )
        await pipeline.poll_due()
        for bulk_id, change in (
            (1, {"status": "working"}),
            (1, {"members_created_number": 4}),
            (1, {"status": "finished", "members_created_number": 10}),
            (2, {"status": "waiting_for_retry", "retries": 1}),
            (2, {"status": "failed", "retries": 5}),
        ):
            await control.patch_bulk(SLUG, "imp-whole", bulk_id, **change)
            await pipeline.poll_due()
        await control.delete_bulk(SLUG, "imp-whole", 3)
        await pipeline.poll_due()
        await asyncio.sleep(max(0.0, named.expires_at - time.time()))
        await pipeline.poll_due()
        assert (await pipeline.types(whole.id))[-1] == "import.completed"
        assert (await pipeline.types(named.id))[-1] == "watch.expired"
        for entry in await outbox(redis):
            event_id, dest = keys.split_outbox_entry(entry.decode())
            if dest == destination(sid):
                await webhooks.run(event_id, dest)
        subscription = await webhooks.store.get(sid)
        assert subscription is not None
        await webhooks.deliver(make_test_event(subscription, time.time()), sid)
    await webhooks.close()
    assert set(payload_contract.checked) == set(EVENT_CATALOG), payload_contract.checked
    assert payload_contract.violations == []
