"""The control API itself: bodies, errors, and the client's typed answers."""

from __future__ import annotations

import httpx
import pytest

from mpc_simulator import ControlError, SimulatorControl

from .helpers import DOC_MEMBERS_ERRORS, IMPORT_ID, SLUG


async def test_health(control: SimulatorControl) -> None:
    health = await control.health()
    assert (health.status, health.imports, health.faults, health.requests) == ("ok", 0, 0, 0)


async def test_create_import_with_fresh_id(control: SimulatorControl) -> None:
    detail = await control.create_import(SLUG, bulks=[{"members_in_payload_number": 10}])
    assert len(detail.import_id) == 36
    assert detail.import_id.count("-") == 4
    assert [d.import_id for d in await control.list_imports()] == [detail.import_id]
    again = await control.create_import(SLUG)
    assert again.import_id != detail.import_id


async def test_create_import_refuses_an_existing_id(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    await control.put_import(SLUG, IMPORT_ID)
    response = await http.post("/_control/imports", json={"slug": SLUG, "import_id": IMPORT_ID})
    assert response.status_code == 409
    assert "error" in response.json()


async def test_patch_moves_status_counts_and_errors_at_once(control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11, "status": "working"}])
    bulk = await control.patch_bulk(
        SLUG,
        IMPORT_ID,
        11,
        status="finished",
        members_in_payload_number=13,
        members_created_number=10,
        members_updated_number=2,
        members_with_validation_errors_number=1,
        members_errors=DOC_MEMBERS_ERRORS,
        retries=0,
    )
    assert (bulk.status, bulk.members_created_number, bulk.members_errors) == (
        "finished",
        10,
        DOC_MEMBERS_ERRORS,
    )
    flips = (await control.flips()).items
    assert [(f.from_, f.to) for f in flips] == [(None, "working"), ("working", "finished")]
    assert await control.get_bulk(SLUG, IMPORT_ID, 11) == bulk


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PATCH", f"/_control/imports/{SLUG}/{IMPORT_ID}/bulks/11", {"status": "done"}, 400),
        ("PATCH", f"/_control/imports/{SLUG}/{IMPORT_ID}/bulks/11", {"retries": -1}, 400),
        ("PATCH", f"/_control/imports/{SLUG}/{IMPORT_ID}/bulks/11", {"id": 12}, 400),
        ("PATCH", f"/_control/imports/{SLUG}/{IMPORT_ID}/bulks/99", {"status": "working"}, 404),
        ("PATCH", f"/_control/imports/{SLUG}/{IMPORT_ID}/bulks/x", {"status": "working"}, 400),
        ("PATCH", f"/_control/imports/{SLUG}/nope/bulks/11", {"status": "working"}, 404),
        ("PUT", f"/_control/imports/{SLUG}/{IMPORT_ID}", {"bulks": [{"id": 1}, {"id": 1}]}, 400),
        ("PUT", f"/_control/imports/{SLUG}/{IMPORT_ID}", {"bulks": "x"}, 400),
        ("PUT", f"/_control/imports/{SLUG}/{IMPORT_ID}/bulks/11", {"id": 12}, 400),
        ("POST", f"/_control/imports/{SLUG}/nope/bulks", {}, 404),
        ("DELETE", f"/_control/imports/{SLUG}/nope", None, 404),
        ("DELETE", f"/_control/imports/{SLUG}/{IMPORT_ID}/bulks/99", None, 404),
        ("GET", f"/_control/imports/{SLUG}/nope", None, 404),
        ("GET", "/_control/requests?since=abc", None, 400),
        ("GET", "/_control/flips?limit=0", None, 400),
        ("POST", "/_control/scenarios", {"name": "nope"}, 404),
        ("POST", "/_control/scenarios", {"name": "demo", "params": {"time_scale": 0}}, 400),
        ("POST", "/_control/scenarios", {"name": "demo", "params": {"bogus": 1}}, 400),
        ("POST", "/_control/scenarios", {"name": "realistic", "params": {
            "imports": 1000, "bulks_per_import": 1000}}, 400),
        ("POST", "/_control/scenarios", {"name": "random_flips", "params": {"bulks": [
            {"slug": SLUG, "import_id": IMPORT_ID, "bulk_id": 99}]}}, 404),
        ("GET", "/_control/scenarios/7", None, 404),
        ("DELETE", "/_control/scenarios/x", None, 400),
        ("PUT", f"/_control/clubs/{SLUG}/token", {"tok": "x"}, 400),
        ("GET", "/_control/nothing", None, 404),
    ],
)  # fmt: skip
async def test_bad_input(
    http: httpx.AsyncClient,
    control: SimulatorControl,
    method: str,
    path: str,
    body: object,
    status: int,
) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 11}])
    response = (
        await http.request(method, path, json=body) if body is not None else await http.request(method, path)
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error, str)
    assert error


async def test_invalid_json_is_400(http: httpx.AsyncClient) -> None:
    response = await http.put(f"/_control/imports/{SLUG}/{IMPORT_ID}", content=b"{not json")
    assert response.status_code == 400
    assert "error" in response.json()


async def test_control_error_carries_the_message(control: SimulatorControl) -> None:
    with pytest.raises(ControlError) as caught:
        await control.get_import(SLUG, "missing")
    assert caught.value.status == 404
    assert "missing" in caught.value.message


async def test_url_unsafe_ids_round_trip(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    detail = await control.put_import(SLUG, "a b?c", bulks=[{"id": 3}])
    assert detail.import_id == "a b?c"
    assert (await control.get_import(SLUG, "a b?c")).bulks[0].id == 3


async def test_many_imports_are_created_in_one_call(control: SimulatorControl) -> None:
    count = await control.put_imports(
        [("club-a", f"imp-{n}", [{"id": n + 1, "status": "working"}]) for n in range(50)]
    )
    assert count == 50
    assert len(await control.list_imports()) == 50
    assert (await control.get_bulk("club-a", "imp-7", 8)).status == "working"
