"""The HTTP API in this process (Litestar's test client) against a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from bridge.app import create_app
from bridge.config import load_settings
from bridge_tools.processes import free_port
from tests.integration.conftest import SECRET_KEY

KEY = "test-key-1-0123456789abcdefghijklmn"
SECOND_KEY = "second-key-0123456789abcdefghijklmn"
AUTH = {"Authorization": f"Bearer {KEY}"}
WATCH = {"loyalty_club_slug": "infinity-mall", "import_id": "89405ae3-2dd5-46cb-a13b-840bc588199b"}


@pytest.fixture
def client(redis_url: str, redis: Any) -> Iterator[TestClient[Any]]:
    # `redis` flushes the database first.
    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_API_KEYS": f"{KEY},{SECOND_KEY}",
            "BRIDGE_SECRET_KEY": SECRET_KEY,
        }
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    error: dict[str, Any] = body["error"]
    return error


def test_health_routes_need_no_key(client: TestClient[Any]) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "redis": "ok"}


def test_readyz_is_503_while_redis_is_unreachable() -> None:
    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "BRIDGE_API_KEYS": KEY,
            "BRIDGE_SECRET_KEY": SECRET_KEY,
        }
    )
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/livez").status_code == 200
        response = test_client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": KEY},
        {"Authorization": "Basic dGVzdA=="},
        {"Authorization": "Bearer "},
    ],
)
def test_v1_routes_answer_401_json_without_a_valid_key(
    client: TestClient[Any], headers: dict[str, str]
) -> None:
    for method, path in (("GET", "/v1/watches"), ("POST", "/v1/watches"), ("GET", "/v1/watches/wch_x")):
        response = client.request(method, path, headers=headers, json=WATCH)
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_configured_key_works(client: TestClient[Any]) -> None:
    assert client.get("/v1/watches", headers={"Authorization": f"Bearer {SECOND_KEY}"}).status_code == 200


def test_creating_the_same_watch_twice_answers_201_then_200_with_the_same_watch(
    client: TestClient[Any],
) -> None:
    first = client.post("/v1/watches", json={**WATCH, "bulk_ids": [12, 11]}, headers=AUTH)
    again = client.post("/v1/watches", json={**WATCH, "bulk_ids": [11, 12]}, headers=AUTH)
    other = client.post("/v1/watches", json={**WATCH, "bulk_ids": [11]}, headers=AUTH)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    body = first.json()
    assert body["state"] == "active" and body["bulk_ids"] == [12, 11]
    assert [b["bulk_id"] for b in body["bulks"]] == [11, 12]
    assert body["bulks"][0]["status"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**WATCH, "loyalty_club_slug": "Infinity Mall"}, "loyalty_club_slug"),
        ({**WATCH, "loyalty_club_slug": "infinity-mall\n"}, "loyalty_club_slug"),
        ({**WATCH, "import_id": ""}, "import_id"),
        ({**WATCH, "import_id": "x" * 65}, "import_id"),
        ({**WATCH, "import_id": "../etc"}, "import_id"),
        ({**WATCH, "bulk_ids": []}, "bulk_ids"),
        ({**WATCH, "bulk_ids": [0]}, "bulk_ids"),
        ({**WATCH, "bulk_ids": [1, 1]}, "bulk_ids"),
        ({**WATCH, "bulk_ids": list(range(1, 1002))}, "bulk_ids"),
        ({**WATCH, "bulk_ids": ["1"]}, "bulk_ids"),
        ({**WATCH, "surprise": True}, "surprise"),
        ({**WATCH, "slack": {"channel": "not a channel"}}, "slack"),
        ({**WATCH, "stall_after_s": 1}, "stall_after_s"),
        ({"import_id": "x"}, "loyalty_club_slug"),
    ],
)
def test_invalid_watches_are_422_naming_the_field_and_change_nothing(
    client: TestClient[Any], body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/watches", json=body, headers=AUTH)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert field in str(error["details"]) or field in error["message"]
    assert client.get("/v1/watches", headers=AUTH).json()["items"] == []


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"\xff\xfe\x00", "application/json", 400, "invalid_json"),
        (b'{"loyalty_club_slug": "\xff\xfe", "import_id": "i"}', "application/json", 400, "invalid_json"),
        (b'{"\xc3\x28": 1}', "application/json", 400, "invalid_json"),
        (
            '{"loyalty_club_slug": "é"}'.encode("latin-1"),
            "application/json; charset=latin-1",
            400,
            "invalid_json",
        ),
        (b"[1, 2]", "application/json", 422, "validation_error"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "application/json", 400, "invalid_json"),
        (b"x" * (65 * 1024), "application/json", 413, "request_entity_too_large"),
    ],
)
def test_unreadable_bodies_get_a_4xx_json_error(
    client: TestClient[Any], content: bytes, content_type: str, status: int, code: str
) -> None:
    response = client.post("/v1/watches", content=content, headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == status
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/watches"), ("POST", "/v1/subscriptions"), ("PUT", "/v1/clubs/infinity-mall/credentials")],
)
def test_a_body_that_is_not_utf8_is_400_on_every_route(
    client: TestClient[Any], method: str, path: str
) -> None:
    body = b'{"url": "https://example.com/\xff", "token": "\xed\xa0\x80", "loyalty_club_slug": "\xc3\x28"}'
    response = client.request(
        method, path, content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


def test_framework_errors_use_the_error_shape(client: TestClient[Any]) -> None:
    assert error_of(client.get("/nowhere"))["code"] == "not_found"
    assert client.put("/v1/watches", headers=AUTH).status_code == 405
    assert error_of(client.put("/v1/watches", headers=AUTH))["code"] == "method_not_allowed"
    missing = client.get("/v1/watches/wch_000000000000000000000000", headers=AUTH)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


def test_list_filters_by_club_and_state_with_cursor_pagination(client: TestClient[Any]) -> None:
    ids = [
        client.post("/v1/watches", json={**WATCH, "import_id": f"imp-{n}"}, headers=AUTH).json()["id"]
        for n in range(5)
    ]
    client.post("/v1/watches", json={**WATCH, "loyalty_club_slug": "other-club"}, headers=AUTH)
    client.delete(f"/v1/watches/{ids[0]}", headers=AUTH)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"loyalty_club_slug": "infinity-mall", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/watches", params=params, headers=AUTH).json()
        seen += [w["id"] for w in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    stopped = client.get("/v1/watches", params={"state": "stopped"}, headers=AUTH).json()["items"]
    assert [w["id"] for w in stopped] == [ids[0]]
    assert (
        error_of(client.get("/v1/watches", params={"state": "sleepy"}, headers=AUTH))["details"][0]["key"]
        == "state"
    )
    assert client.get("/v1/watches", params={"cursor": "garbage"}, headers=AUTH).status_code == 422


def test_stopping_a_watch_is_idempotent(client: TestClient[Any]) -> None:
    watch_id = client.post("/v1/watches", json=WATCH, headers=AUTH).json()["id"]
    first = client.delete(f"/v1/watches/{watch_id}", headers=AUTH)
    second = client.delete(f"/v1/watches/{watch_id}", headers=AUTH)
    assert first.status_code == second.status_code == 200
    assert first.json()["state"] == second.json()["state"] == "stopped"
    assert first.json()["ended_at"] is not None
    # Stopped, the same request is a new watch.
    assert client.post("/v1/watches", json=WATCH, headers=AUTH).status_code == 201


def test_an_empty_timeline_is_an_empty_page(client: TestClient[Any]) -> None:
    watch_id = client.post("/v1/watches", json=WATCH, headers=AUTH).json()["id"]
    assert client.get(f"/v1/watches/{watch_id}/events", headers=AUTH).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert client.get("/v1/watches/wch_000000000000000000000000/events", headers=AUTH).status_code == 404


def test_the_openapi_document_declares_bearer_auth_and_every_route(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["BearerApiKey"]["scheme"] == "bearer"
    assert {
        "/v1/watches",
        "/v1/watches/{watch_id}",
        "/v1/watches/{watch_id}/events",
        "/livez",
        "/readyz",
    } <= set(document["paths"])


def test_the_openapi_document_links_created_resources_to_their_operations(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    operations = {
        operation["operationId"]: (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    watch_links = document["paths"]["/v1/watches"]["post"]["responses"]["201"]["links"]
    targets = {operations[link["operationId"]] for link in watch_links.values()}
    assert ("get", "/v1/watches/{watch_id}") in targets and ("delete", "/v1/watches/{watch_id}") in targets
    assert all(link["parameters"] == {"watch_id": "$response.body#/id"} for link in watch_links.values())
    test_links = document["paths"]["/v1/subscriptions/{subscription_id}/test"]["post"]["responses"]["202"][
        "links"
    ]
    assert ("post", "/v1/deliveries/{delivery_id}/redeliver") in {
        operations[link["operationId"]] for link in test_links.values()
    }


def test_club_credentials_are_write_only_and_encrypted_at_rest(
    client: TestClient[Any], redis_url: str
) -> None:
    import redis as sync_redis

    response = client.put(
        "/v1/clubs/infinity-mall/credentials",
        json={"token": "s3cr3t-mpc-token", "product_name": "CRM"},
        headers=AUTH,
    )
    assert response.status_code == 204 and response.content == b""
    raw: dict[bytes, bytes] = sync_redis.Redis.from_url(redis_url).hgetall("bridge:credentials")  # type: ignore[assignment]
    assert list(raw) == [b"infinity-mall"]
    assert b"s3cr3t-mpc-token" not in raw[b"infinity-mall"]
    for path in ("/v1/clubs/infinity-mall/credentials", "/v1/clubs/infinity-mall"):
        assert client.get(path, headers=AUTH).status_code in (404, 405)


@pytest.mark.parametrize(
    "body",
    [
        {"token": ""},
        {"token": "with space"},
        {"token": "x" * 5000},
        {"token": 5},
        {},
        {"token": "t", "extra": 1},
        {"token": "t", "product_name": ""},
    ],
)
def test_bad_credentials_are_422_and_never_echo_the_token(
    client: TestClient[Any], body: dict[str, Any]
) -> None:
    response = client.put("/v1/clubs/infinity-mall/credentials", json=body, headers=AUTH)
    assert response.status_code == 422
    assert "with space" not in response.text


def test_credentials_for_a_bad_slug_are_refused(client: TestClient[Any]) -> None:
    response = client.put("/v1/clubs/Bad_Slug/credentials", json={"token": "t"}, headers=AUTH)
    assert response.status_code == 422


def samples_of(families: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def sample(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def _worker_counts(redis: Any) -> None:
    from bridge.metrics import WorkerMetrics

    worker = WorkerMetrics()
    worker.poll("ok")
    worker.poll("timeout")
    worker.upstream("bulk", "ok", 0.02)
    worker.upstream("bulk", "ok", 3.0)
    worker.event("bulk.started")
    worker.delivery("log", "delivered")
    worker.loop_lag(0.004)
    worker.loop_lag(0.002)
    worker.loop_lag(-0.001)  # a timer that fired early counts as no lag
    await worker.flush(redis)


PROMETHEUS_3_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
"""What Prometheus 3 sends when it scrapes."""


async def test_metrics_export_http_worker_totals_and_gauges(client: TestClient[Any], redis: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.get("/v1/watches", headers=AUTH)
    client.post("/v1/watches", json=WATCH, headers=AUTH)
    await _worker_counts(redis)
    response = client.get("/metrics")
    assert response.status_code == 200
    # The Prometheus text format, named once (a second charset was appended before).
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = samples_of(text_string_to_metric_families(response.text))
    assert found[sample("bridge_polls_total", outcome="ok")] == 1
    assert found[sample("bridge_polls_total", outcome="timeout")] == 1
    bucket = "bridge_upstream_request_duration_seconds_bucket"
    assert found[sample(bucket, endpoint="bulk", le="0.005")] == 0  # lower buckets are there, empty
    assert found[sample(bucket, endpoint="bulk", le="0.025")] == 1
    assert found[sample(bucket, endpoint="bulk", le="5.0")] == 2
    assert found[sample(bucket, endpoint="bulk", le="+Inf")] == 2
    assert found[sample("bridge_upstream_request_duration_seconds_count", endpoint="bulk")] == 2
    assert found[sample("bridge_upstream_request_duration_seconds_sum", endpoint="bulk")] == pytest.approx(
        3.02
    )
    assert found[sample("bridge_events_total", type="bulk.started")] == 1
    assert found[sample("bridge_deliveries_total", sink="log", outcome="delivered")] == 1
    assert found[sample("bridge_loop_lag_seconds_count")] == 3
    assert found[sample("bridge_loop_lag_seconds_sum")] == pytest.approx(0.006)
    assert found[sample("bridge_active_watches")] == 1
    assert found[sample("bridge_queue_depth")] == 0
    assert any(
        name == "bridge_requests_total" and ("path", "/v1/watches") in labels for name, labels in found
    )
    assert "wch_" not in response.text  # no per-watch labels


def test_the_metrics_text_parses_as_prometheus_exposition(client: TestClient[Any]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client.get("/livez")
    families = {f.name: f.type for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families["bridge_polls"] == "counter"
    assert families["bridge_outbox_depth"] == "gauge"
    assert families["bridge_upstream_request_duration_seconds"] == "histogram"


@pytest.mark.parametrize(
    "accept",
    [PROMETHEUS_3_ACCEPT, "application/openmetrics-text; version=1.0.0", "application/openmetrics-text"],
)
async def test_openmetrics_is_served_when_the_scraper_asks_for_it(
    client: TestClient[Any], redis: Any, accept: str
) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    client.get("/livez")
    await _worker_counts(redis)
    response = client.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert content_type.count("charset") == 1
    assert response.text.endswith("# EOF\n") and response.text.count("# EOF") == 1
    # The OpenMetrics parser is strict: one EOF, counters as _total, cumulative buckets, +Inf.
    families = list(text_string_to_metric_families(response.text))  # type: ignore[no-untyped-call]
    types = {f.name: f.type for f in families}
    assert types["bridge_polls"] == "counter" and types["bridge_queue_depth"] == "gauge"
    assert types["bridge_upstream_request_duration_seconds"] == "histogram"
    assert types["bridge_loop_lag_seconds"] == "summary"
    found = samples_of(families)
    assert found[sample("bridge_polls_total", outcome="ok")] == 1
    assert found[sample("bridge_upstream_request_duration_seconds_bucket", endpoint="bulk", le="+Inf")] == 2


def test_metrics_without_redis_still_parse(redis_url: str) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    settings = load_settings(
        {
            "BRIDGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "BRIDGE_API_KEYS": KEY,
            "BRIDGE_SECRET_KEY": SECRET_KEY,
        }
    )
    with TestClient(create_app(settings)) as test_client:
        response = test_client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    names = {f.name for f in text_string_to_metric_families(response.text)}  # type: ignore[no-untyped-call]
    assert "bridge_requests" in names and "bridge_polls" not in names


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_that_is_not_json_is_415(client: TestClient[Any], content_type: str) -> None:
    headers = {**AUTH, "Content-Type": content_type} if content_type else AUTH
    response = client.post(
        "/v1/watches", content=b'{"loyalty_club_slug": "a", "import_id": "b"}', headers=headers
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_the_interactive_docs_render_from_local_assets(client: TestClient[Any]) -> None:
    page = client.get("/schema").text
    assert "/schema/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert client.get("/schema/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/schema/openapi.yaml").status_code == 200
