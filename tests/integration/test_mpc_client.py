"""The MPC client against the simulator over HTTP: shapes, headers and every outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bridge import __version__
from bridge.config import MPC_RETRY_AFTER_MAX_S
from bridge.http import Fetcher, build_transport
from bridge.upstream.mpc import MAX_BODY_BYTES, MpcClient, StaticTokens
from mpc_simulator import RunningSimulator, SimulatorControl
from tests.integration.conftest import MPC_TOKEN, SLUG

IMPORT = "imp-client"


@pytest.fixture
async def mpc(simulator: RunningSimulator) -> AsyncIterator[MpcClient]:
    http = Fetcher(build_transport(), timeout=httpx.Timeout(0.5, connect=0.5), max_body_bytes=MAX_BODY_BYTES)
    try:
        yield MpcClient(
            http,
            base_url=simulator.url + "/",
            tokens=StaticTokens(MPC_TOKEN),
            product_name="bridge-tests",
            deadline_s=1.0,
        )
    finally:
        await http.aclose()


async def test_a_bulk_decodes_with_every_documented_field(mpc: MpcClient, control: SimulatorControl) -> None:
    errors = {"joe@example.com": {"properties": [{"error": {"language": [{"error": "value_not_match"}]}}]}}
    await control.put_import(
        SLUG,
        IMPORT,
        [
            {
                "id": 11,
                "status": "finished",
                "members_in_payload_number": 13,
                "members_created_number": 10,
                "members_updated_number": 2,
                "members_with_validation_errors_number": 1,
                "members_errors": errors,
            }
        ],
    )
    answer = await mpc.get_bulk(SLUG, IMPORT, 11)
    assert answer.ok and answer.status == 200
    bulk = answer.value
    assert bulk is not None
    assert (bulk.id, bulk.import_id, bulk.status, bulk.members_created_number) == (11, IMPORT, "finished", 10)
    assert bulk.members_errors == errors


@pytest.mark.parametrize("legacy", [False, True])
async def test_an_import_decodes_in_both_spellings_of_its_payload_total(
    mpc: MpcClient, control: SimulatorControl, legacy: bool
) -> None:
    await control.put_import(
        SLUG,
        IMPORT,
        [
            {"id": 1, "members_in_payload_number": 7},
            {"id": 2, "status": "working", "members_in_payload_number": 5},
        ],
        legacy_totals=legacy,
    )
    answer = await mpc.get_import(SLUG, IMPORT)
    assert answer.value is not None
    assert answer.value.payload_total == 12
    assert [(b.id, b.status) for b in answer.value.bulks] == [(1, "waiting"), (2, "working")]


async def test_every_request_carries_token_club_product_and_user_agent(
    mpc: MpcClient, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 11}])
    await mpc.get_bulk(SLUG, IMPORT, 11)
    await mpc.get_import(SLUG, IMPORT)
    for entry in (await control.requests()).items:
        assert (entry.status, entry.token) == (200, "match")
        assert entry.user_agent == f"mpc-import-bridge/{__version__}"
        assert entry.product_name == "bridge-tests"


@pytest.mark.parametrize(
    ("fault", "kind", "status", "retry_after"),
    [
        ("404", "not_found", 404, None),
        ("401", "unauthorized", 401, None),
        ("403", "unauthorized", 403, None),
        ("429", "rate_limited", 429, 7.0),
        ("503", "server_error", 503, 7.0),
        ("500", "server_error", 500, None),
        ("502", "server_error", 502, None),
        ("malformed", "malformed", 200, None),
        ("nested", "malformed", 200, None),
        ("truncated", "connection", None, None),
        ("hang", "timeout", None, None),
    ],
)
async def test_every_upstream_problem_is_one_closed_outcome(
    mpc: MpcClient,
    control: SimulatorControl,
    fault: str,
    kind: str,
    status: int | None,
    retry_after: float | None,
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 11}])
    await control.add_fault(fault, count=1, retry_after=7, hang_s=2.0)  # type: ignore[arg-type]
    answer = await mpc.get_bulk(SLUG, IMPORT, 11)
    assert answer.value is None and answer.failure is not None
    assert (answer.failure.kind, answer.status, answer.failure.retry_after) == (kind, status, retry_after)
    assert MPC_TOKEN not in answer.failure.detail


@pytest.mark.parametrize(
    "header",
    [
        "Mon, 01 Jan 10000000000000000000 00:00:00 GMT",
        "4" * 400,
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "-9",
        "nan",
    ],
)
async def test_a_hostile_retry_after_is_bounded_never_raised(
    mpc: MpcClient, control: SimulatorControl, header: str
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 11}])
    await control.add_fault("429", count=2, retry_after=header)
    for answer in (await mpc.get_bulk(SLUG, IMPORT, 11), await mpc.get_import(SLUG, IMPORT)):
        assert answer.failure is not None and answer.failure.kind == "rate_limited"
        retry_after = answer.failure.retry_after
        assert retry_after is None or 0.0 <= retry_after <= MPC_RETRY_AFTER_MAX_S


async def test_a_dropped_connection_is_a_connection_failure(
    mpc: MpcClient, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 11}])
    await control.add_fault("disconnect", p=1.0)
    answer = await mpc.get_bulk(SLUG, IMPORT, 11)
    assert answer.failure is not None and answer.failure.kind == "connection"


async def test_an_unknown_bulk_and_import_are_not_found(mpc: MpcClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 11}])
    bulk = await mpc.get_bulk(SLUG, IMPORT, 12)
    imp = await mpc.get_import(SLUG, "no-such-import")
    assert bulk.failure is not None and bulk.failure.kind == "not_found"
    assert imp.failure is not None and imp.failure.kind == "not_found"
    assert "wasn't found" in bulk.failure.detail


async def test_a_wrong_token_is_unauthorized_and_no_token_never_calls_mpc(
    simulator: RunningSimulator, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT, [{"id": 11}])
    http = Fetcher(build_transport(), timeout=httpx.Timeout(2.0), max_body_bytes=MAX_BODY_BYTES)
    try:
        wrong = MpcClient(
            http, base_url=simulator.url, tokens=StaticTokens("nope"), product_name="p", deadline_s=2
        )
        none = MpcClient(
            http, base_url=simulator.url, tokens=StaticTokens(None), product_name="p", deadline_s=2
        )
        assert (await wrong.get_bulk(SLUG, IMPORT, 11)).failure.kind == "unauthorized"  # type: ignore[union-attr]
        answer = await none.get_bulk(SLUG, IMPORT, 11)
    finally:
        await http.aclose()
    assert answer.failure is not None and answer.failure.kind == "unauthorized"
    assert len((await control.requests()).items) == 1
