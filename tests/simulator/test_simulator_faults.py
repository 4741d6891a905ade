"""Injected faults: every kind, count / p / match semantics, and what the request log keeps."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from mpc_simulator import FAULT_KINDS, ControlError, FaultKind, RunningSimulator, SimulatorControl, start

from .helpers import IMPORT_ID, SLUG, bulk_path, import_path, mpc_headers


@pytest.fixture(autouse=True)
async def two_bulks(control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11, "status": "working"}, {"id": 12}])


@pytest.mark.parametrize(
    ("kind", "status"),
    [("500", 500), ("502", 502), ("401", 401), ("403", 403), ("404", 404)],
)
async def test_status_faults(
    http: httpx.AsyncClient, control: SimulatorControl, kind: FaultKind, status: int
) -> None:
    await control.add_fault(kind, count=1)
    response = await http.get(bulk_path(11), headers=mpc_headers())
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    assert body["error"]
    assert (await http.get(bulk_path(11), headers=mpc_headers())).status_code == 200


async def test_404_fault_speaks_like_mpc(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault(404, count=2)
    bulk = await http.get(bulk_path(11), headers=mpc_headers())
    assert bulk.json() == {"error": "Bulk with such ID wasn't found"}
    whole = await http.get(import_path(), headers=mpc_headers())
    assert whole.json() == {"error": "Import with such ID wasn't found"}


async def test_503_carries_retry_after(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("503", count=1, retry_after=7)
    response = await http.get(bulk_path(11), headers=mpc_headers())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert "error" in response.json()


async def test_429_carries_rate_limit_headers(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault(429, count=1, retry_after=3)
    response = await http.get(bulk_path(11), headers=mpc_headers())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert int(response.headers["ratelimit-remaining"]) < 0
    assert response.headers["ratelimit-cost"] == "1"
    assert response.headers["ratelimit-bucket"]
    assert "error" in response.json()


async def test_retry_after_may_be_an_http_date(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    await control.add_fault("503", retry_after=date)
    assert (await http.get(bulk_path(11), headers=mpc_headers())).headers["retry-after"] == date


@pytest.mark.parametrize("path", [bulk_path(11), import_path()])
async def test_malformed_is_a_200_with_invalid_json(
    http: httpx.AsyncClient, control: SimulatorControl, path: str
) -> None:
    whole = (await http.get(path, headers=mpc_headers())).content
    await control.add_fault("malformed", count=1)
    response = await http.get(path, headers=mpc_headers())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == whole[: len(whole) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_hang_delays_then_answers_normally(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("hang", count=1, hang_s=0.4)
    started = time.monotonic()
    response = await http.get(bulk_path(11), headers=mpc_headers())
    assert time.monotonic() - started >= 0.4
    assert response.status_code == 200
    assert response.json()["status"] == "working"
    started = time.monotonic()
    await http.get(bulk_path(11), headers=mpc_headers())
    assert time.monotonic() - started < 0.3
    entry = (await control.requests()).items[0]
    assert (entry.fault, entry.status, entry.duration_s >= 0.4) == ("hang", 200, True)


async def test_hang_past_the_client_timeout(server: RunningSimulator, control: SimulatorControl) -> None:
    await control.add_fault("hang", hang_s=5.0)
    async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(bulk_path(11), headers=mpc_headers())


async def test_disconnect_drops_the_connection(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("disconnect", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(bulk_path(11), headers=mpc_headers())
    assert (await http.get(bulk_path(11), headers=mpc_headers())).status_code == 200
    entry = (await control.requests()).items[0]
    assert (entry.fault, entry.status, entry.shown) == ("disconnect", None, {})
    assert (await control.counters()).by_status == {"dropped": 1, "200": 1}


async def test_disconnect_sends_not_a_byte(server: RunningSimulator, control: SimulatorControl) -> None:
    await control.add_fault("disconnect", count=1)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"GET {bulk_path(11)} HTTP/1.1\r\nHost: {host}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in mpc_headers().items())
        writer.write(head.encode() + b"\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5.0) == b""
    finally:
        writer.close()
        await writer.wait_closed()


async def test_truncated_cuts_the_body_short(server: RunningSimulator, control: SimulatorControl) -> None:
    await control.add_fault("truncated", count=1)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = f"GET {bulk_path(11)} HTTP/1.1\r\nHost: {host}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in mpc_headers().items())
        writer.write(head.encode() + b"\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 200")
    length = next(
        int(h.split(b":")[1]) for h in headers.split(b"\r\n") if h.lower().startswith(b"content-length")
    )
    assert 0 < len(body) < length
    entry = (await control.requests()).items[0]
    assert (entry.fault, entry.status, entry.shown) == ("truncated", 200, {})


async def test_nested_buries_members_errors_past_any_decoder(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.add_fault("nested", count=1)
    response = await http.get(bulk_path(1), headers=mpc_headers())
    assert response.status_code == 200
    assert response.content.count(b"[") >= 10_000
    assert response.content.endswith(b"]" * 10 + b"}}")


async def test_truncated_is_an_error_for_a_client(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("truncated", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(import_path(), headers=mpc_headers())
    assert (await http.get(import_path(), headers=mpc_headers())).status_code == 200


async def test_count_then_gone(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    fault = await control.add_fault("500", count=2)
    statuses = [(await http.get(bulk_path(11), headers=mpc_headers())).status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert fault.id not in [f.id for f in await control.list_faults()]


async def test_without_count_a_fault_stays(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("502")
    statuses = {(await http.get(bulk_path(11), headers=mpc_headers())).status_code for _ in range(5)}
    assert statuses == {502}
    [fault] = await control.list_faults()
    assert fault.hits == 5
    await control.clear_faults()
    assert (await http.get(bulk_path(11), headers=mpc_headers())).status_code == 200


async def test_match_limits_the_paths(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("500", match="/bulks/12")
    assert (await http.get(bulk_path(11), headers=mpc_headers())).status_code == 200
    assert (await http.get(import_path(), headers=mpc_headers())).status_code == 200
    assert (await http.get(bulk_path(12), headers=mpc_headers())).status_code == 500


async def test_probability_hits_a_fraction(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("503", p=0.3)
    statuses = [(await http.get(import_path(), headers=mpc_headers())).status_code for _ in range(200)]
    hits = statuses.count(503)
    assert 30 <= hits <= 90
    assert statuses.count(200) == 200 - hits
    assert (await control.counters()).by_fault == {"503": hits}


async def test_probability_with_count(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("500", p=0.5, count=3)
    statuses = [(await http.get(import_path(), headers=mpc_headers())).status_code for _ in range(60)]
    assert statuses.count(500) == 3


async def test_first_matching_fault_wins(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("429", match="/bulks/12", count=1)
    await control.add_fault("503", count=2)
    assert (await http.get(bulk_path(11), headers=mpc_headers())).status_code == 503
    assert (await http.get(bulk_path(12), headers=mpc_headers())).status_code == 429
    assert (await http.get(bulk_path(12), headers=mpc_headers())).status_code == 503
    assert (await http.get(bulk_path(12), headers=mpc_headers())).status_code == 200


async def test_faults_come_before_header_checks(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.add_fault("500", count=1)
    assert (await http.get(bulk_path(11))).status_code == 500
    assert (await http.get(bulk_path(11))).status_code == 470


async def test_request_log_names_the_fault(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    fault = await control.add_fault("429", count=1)
    await http.get(bulk_path(11), headers=mpc_headers())
    await http.get(bulk_path(11), headers=mpc_headers())
    first, second = (await control.requests()).items
    assert (first.status, first.fault, first.fault_id, first.shown) == (429, "429", fault.id, {})
    assert (second.status, second.fault, second.fault_id, second.shown) == (200, None, None, {11: "working"})


async def test_delete_one_fault(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    first = await control.add_fault("500")
    await control.add_fault("502")
    await control.delete_fault(first.id)
    assert (await http.get(bulk_path(11), headers=mpc_headers())).status_code == 502
    with pytest.raises(ControlError) as caught:
        await control.delete_fault(first.id)
    assert caught.value.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "418"},
        {"kind": "500", "p": 1.5},
        {"kind": "500", "count": 0},
        {"kind": "hang", "hang_s": -1},
        {"kind": "500", "unknown": True},
        {},
    ],
)
async def test_bad_faults_are_400(http: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await http.post("/_control/faults", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


async def test_stop_does_not_wait_for_a_hang() -> None:
    """A request hanging for minutes must not hold the simulator's shutdown."""
    running = await start(port=0)
    try:
        async with SimulatorControl(running.url) as own:
            await own.put_import(SLUG, IMPORT_ID, bulks=[{"id": 1}])
            await own.add_fault("hang", hang_s=600)
        async with httpx.AsyncClient(base_url=running.url, trust_env=False, timeout=10.0) as client:
            pending = asyncio.create_task(client.get(bulk_path(1), headers=mpc_headers(token="sim-token")))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await running.stop()
            assert time.monotonic() - started < 3.0
            with pytest.raises(httpx.HTTPError):
                await pending
    finally:
        await running.stop()


def test_fault_kinds_are_all_covered() -> None:
    assert set(FAULT_KINDS) == {
        "500",
        "502",
        "503",
        "429",
        "401",
        "403",
        "404",
        "malformed",
        "truncated",
        "nested",
        "hang",
        "disconnect",
    }
