"""Request log, flip log, counters and reset: contents, paging, bounds, and no token anywhere."""

from __future__ import annotations

import asyncio
import time

import httpx

from mpc_simulator import RunningSimulator, SimulatorControl, start
from mpc_simulator.state import DEFAULT_REQUEST_LOG_SIZE

from .helpers import IMPORT_ID, SLUG, TOKEN, bulk_path, import_path, mpc_headers

SECRET = "club-secret-9f8e7d6c"
WRONG = "wrong-secret-1a2b3c4d"


async def test_request_log_entry(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11, "status": "working"}, {"id": 12}])
    before = time.time()
    await http.get(bulk_path(11), headers=mpc_headers())
    await http.get(import_path(), headers=mpc_headers())
    await http.get(bulk_path(11), headers=mpc_headers(token="nope"))
    await http.get(bulk_path(11), headers=mpc_headers(token=None))
    page = await control.requests()
    assert [e.seq for e in page.items] == [1, 2, 3, 4]
    assert (page.first_seq, page.last_seq) == (1, 4)
    bulk, whole, bad, missing = page.items
    assert bulk.method == "GET"
    assert bulk.path == bulk_path(11)
    assert (bulk.kind, bulk.slug, bulk.import_id) == ("bulk", SLUG, IMPORT_ID)
    assert (bulk.status, bulk.token, bulk.fault, bulk.shown) == (200, "match", None, {11: "working"})
    assert before <= bulk.t <= time.time()
    assert bulk.t_mono <= whole.t_mono
    assert bulk.duration_s >= 0
    assert (whole.kind, whole.shown) == ("import", {11: "working", 12: "waiting"})
    assert (bad.status, bad.token, bad.shown) == (401, "mismatch", {})
    assert (missing.status, missing.token) == (401, "missing")


async def test_request_log_paging(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    for _ in range(5):
        await http.get(import_path(), headers=mpc_headers())
    page = await control.requests(since=3)
    assert [e.seq for e in page.items] == [4, 5]
    assert [e.seq for e in (await control.requests(since=1, limit=2)).items] == [2, 3]
    assert (await control.requests(since=5)).items == []


async def test_request_log_is_a_bounded_ring() -> None:
    assert DEFAULT_REQUEST_LOG_SIZE == 100_000
    running = await start(request_log_size=3)
    try:
        async with httpx.AsyncClient(base_url=running.url, trust_env=False) as http:
            for _ in range(7):
                await http.get(import_path(), headers=mpc_headers(token="sim-token"))
        async with SimulatorControl(running.url) as control:
            page = await control.requests()
            assert [e.seq for e in page.items] == [5, 6, 7]
            assert (page.first_seq, page.last_seq) == (5, 7)
            assert [e.seq for e in (await control.requests(since=1)).items] == [5, 6, 7]
            assert (await control.counters()).requests == 7
    finally:
        await running.stop()


async def test_token_never_logged_or_returned(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11}])
    await control.set_club_token(SLUG, SECRET)
    await control.add_fault("500", count=1)
    for token in (SECRET, WRONG, TOKEN, SECRET):
        await http.get(bulk_path(11), headers=mpc_headers(token=token))
        await http.get(import_path(), headers=mpc_headers(token=token))
    await http.get("/elsewhere", headers=mpc_headers(token=SECRET))
    await control.patch_bulk(SLUG, IMPORT_ID, 11, status="working")
    tokens = [e.token for e in (await control.requests()).items]
    assert tokens == [
        "match",
        "match",
        "mismatch",
        "mismatch",
        "mismatch",
        "mismatch",
        "match",
        "match",
        "match",
    ]
    for route in ("requests", "flips", "counters", "health", "imports", "faults", "scenarios"):
        text = (await http.get(f"/_control/{route}")).text
        assert SECRET not in text
        assert WRONG not in text
        assert TOKEN not in text


async def test_flip_log(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11}])
    before = time.time()
    await control.patch_bulk(SLUG, IMPORT_ID, 11, status="working")
    await control.patch_bulk(SLUG, IMPORT_ID, 11, members_in_payload_number=5)  # no status change
    await control.patch_bulk(SLUG, IMPORT_ID, 11, status="waiting_for_retry", retries=1)
    page = await control.flips()
    created, started, retrying = page.items
    assert (created.from_, created.to, created.source) == (None, "waiting", "control")
    assert (started.seq, started.from_, started.to, started.retries) == (2, "waiting", "working", 0)
    assert (retrying.from_, retrying.to, retrying.retries) == ("working", "waiting_for_retry", 1)
    assert (retrying.slug, retrying.import_id, retrying.bulk_id) == (SLUG, IMPORT_ID, 11)
    assert before <= started.t <= retrying.t <= time.time()
    assert started.t_mono <= retrying.t_mono
    assert [f.seq for f in (await control.flips(since=2)).items] == [3]
    raw = (await http.get("/_control/flips", params={"since": 1})).json()
    assert raw["items"][0]["from"] == "waiting"
    assert set(raw["items"][0]) == {
        "seq",
        "t",
        "t_mono",
        "slug",
        "import_id",
        "bulk_id",
        "from",
        "to",
        "retries",
        "source",
    }
    assert (await control.counters()).flips == 3


async def test_counters(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11}])
    await control.add_fault("503", count=1)
    await http.get(bulk_path(11), headers=mpc_headers())
    await http.get(bulk_path(11), headers=mpc_headers())
    await http.get(import_path(), headers=mpc_headers())
    await http.get(bulk_path(99), headers=mpc_headers())
    await http.get("/nothing/here")
    counters = await control.counters()
    assert counters.requests == 5
    assert counters.by_kind == {"bulk": 3, "import": 1, "other": 1}
    assert counters.by_status == {"503": 1, "200": 2, "404": 2}
    assert counters.by_fault == {"503": 1}


async def test_reset(server: RunningSimulator, http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11}])
    await control.set_club_token(SLUG, SECRET)
    await control.add_fault("500", match="never")
    await http.get(import_path(), headers=mpc_headers(token=SECRET))
    scenario = await control.start_scenario("random_flips", rate=1.0)
    await control.reset()
    assert await control.list_imports() == []
    assert await control.list_faults() == []
    assert await control.list_scenarios() == []
    assert server.scenarios.list_scenarios() == []
    assert (await control.requests()).items == []
    assert (await control.flips()).items == []
    counters = await control.counters()
    assert (counters.requests, counters.flips, counters.by_status) == (0, 0, {})
    assert scenario.state == "running"
    # Tokens are back to the start-up configuration; sequence numbers keep growing.
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11}])
    assert (await http.get(import_path(), headers=mpc_headers())).status_code == 200
    assert (await control.requests()).items[0].seq == 2


async def test_a_request_arrives_when_its_first_bytes_are_read_not_when_its_handler_runs(
    server: RunningSimulator, control: SimulatorControl
) -> None:
    """Two requests on one kept-alive connection: the first is sent in two parts 0.3 s apart (its
    handler can only run after the second part), the second 0.3 s after the first's answer was
    read. The first is logged as arriving with its first part; the second with its own bytes,
    not with anything read before."""
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11}])
    head = "".join(f"{name}: {value}\r\n" for name, value in mpc_headers().items())
    request = f"GET {import_path()} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(PAUSE_S)
        writer.write(b"\r\n")
        await _read_answer(reader)
        await asyncio.sleep(PAUSE_S)
        writer.write(request + b"\r\n")
        await _read_answer(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    first, second = (await control.requests()).items
    assert (first.status, second.status) == (200, 200)
    assert first.duration_s >= PAUSE_S
    assert second.duration_s < PAUSE_S
    assert second.t_mono - second.duration_s - (first.t_mono - first.duration_s) >= 2 * PAUSE_S


PAUSE_S = 0.3


async def _read_answer(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
    await reader.readexactly(int({k.lower(): v for k, v in fields.items()}[b"content-length"]))
