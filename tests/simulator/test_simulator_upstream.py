"""The two MPC endpoints: shapes, header checks, 404s, caching and the legacy spelling."""

from __future__ import annotations

import httpx
import pytest

from mpc_simulator import SimulatorControl

from .helpers import (
    BULK_KEYS,
    DOC_MEMBERS_ERRORS,
    IMPORT_ID,
    IMPORT_KEYS,
    ISO_MS,
    SLUG,
    TOKEN,
    bulk_path,
    import_path,
    mpc_headers,
)

BULK_TYPES: dict[str, type] = {
    "id": int,
    "import_id": str,
    "request_number": int,
    "operation": str,
    "status": str,
    "members_in_payload_number": int,
    "members_created_number": int,
    "members_updated_number": int,
    "members_with_validation_errors_number": int,
    "retries": int,
    "members_errors": dict,
    "created_at": str,
}


@pytest.fixture
async def doc_import(control: SimulatorControl) -> None:
    """The documentation's example bulk (id 11) and two more, given out of request order."""
    await control.put_import(
        SLUG,
        IMPORT_ID,
        bulks=[
            {
                "id": 11,
                "request_number": 1,
                "status": "finished",
                "members_in_payload_number": 13,
                "members_created_number": 10,
                "members_updated_number": 2,
                "members_with_validation_errors_number": 1,
                "members_errors": DOC_MEMBERS_ERRORS,
                "created_at": "2018-07-30T17:14:03.738Z",
            },
            {"id": 13, "request_number": 3, "members_in_payload_number": 5},
            {"id": 12, "request_number": 2, "status": "working", "members_in_payload_number": 1000},
        ],
        created_at="2018-07-30T17:14:00.000Z",
    )


@pytest.mark.usefixtures("doc_import")
async def test_bulk_is_the_documented_object(http: httpx.AsyncClient) -> None:
    response = await http.get(bulk_path(11), headers=mpc_headers())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == BULK_KEYS
    assert body == {
        "id": 11,
        "import_id": IMPORT_ID,
        "request_number": 1,
        "operation": "create",
        "status": "finished",
        "members_in_payload_number": 13,
        "members_created_number": 10,
        "members_updated_number": 2,
        "members_with_validation_errors_number": 1,
        "retries": 0,
        "members_errors": DOC_MEMBERS_ERRORS,
        "created_at": "2018-07-30T17:14:03.738Z",
    }


@pytest.mark.usefixtures("doc_import")
async def test_new_bulk_defaults(http: httpx.AsyncClient) -> None:
    body = (await http.get(bulk_path(13), headers=mpc_headers())).json()
    assert {key: type(value) for key, value in body.items()} == BULK_TYPES
    assert body["status"] == "waiting"
    assert body["members_errors"] == {}
    assert body["retries"] == 0
    assert body["members_created_number"] == body["members_updated_number"] == 0
    assert ISO_MS.match(body["created_at"])


@pytest.mark.usefixtures("doc_import")
async def test_import_lists_bulks_by_request_number_with_totals(http: httpx.AsyncClient) -> None:
    response = await http.get(import_path(), headers=mpc_headers())
    assert response.status_code == 200
    body = response.json()
    assert list(body) == IMPORT_KEYS
    assert body == {
        "members_in_payload_number": 13 + 1000 + 5,
        "members_created_number": 10,
        "members_updated_number": 2,
        "members_with_validation_errors_number": 1,
        "created_at": "2018-07-30T17:14:00.000Z",
        "bulks": [
            {"id": 11, "request_number": 1, "status": "finished"},
            {"id": 12, "request_number": 2, "status": "working"},
            {"id": 13, "request_number": 3, "status": "waiting"},
        ],
    }


async def test_request_number_defaults_to_position(
    http: httpx.AsyncClient, control: SimulatorControl
) -> None:
    detail = await control.put_import(SLUG, "imp-pos", bulks=[{}, {}, {"id": 77}])
    assert [b.request_number for b in detail.bulks] == [1, 2, 3]
    added = await control.add_bulk(SLUG, "imp-pos")
    assert added.request_number == 4
    ids = [
        b["id"]
        for b in (await http.get(import_path(import_id="imp-pos"), headers=mpc_headers())).json()["bulks"]
    ]
    assert ids == [b.id for b in detail.bulks] + [added.id]
    assert 77 in ids
    assert len(set(ids)) == 4


async def test_legacy_totals_spelling(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, "old", bulks=[{"members_in_payload_number": 7}], legacy_totals=True)
    body = (await http.get(import_path(import_id="old"), headers=mpc_headers())).json()
    assert "members_in_payload_number" not in body
    assert body["members_in_payloads_number"] == 7
    assert list(body)[1:] == IMPORT_KEYS[1:]


@pytest.mark.usefixtures("doc_import")
@pytest.mark.parametrize("missing", ["X-Product-Name", "X-User-Agent", "X-Loyalty-Club-Slug"])
@pytest.mark.parametrize("path", [bulk_path(11), import_path()])
async def test_missing_header_is_470(http: httpx.AsyncClient, missing: str, path: str) -> None:
    headers = mpc_headers()
    del headers[missing]
    response = await http.get(path, headers=headers)
    assert response.status_code == 470
    assert response.json() == {"error": f"Header {missing} is missing"}


@pytest.mark.usefixtures("doc_import")
async def test_header_checks_run_in_order(http: httpx.AsyncClient) -> None:
    # Everything missing: the first required header is named.
    response = await http.get(bulk_path(11))
    assert (response.status_code, response.json()) == (470, {"error": "Header X-Product-Name is missing"})
    # A missing header wins over a wrong slug and a wrong token.
    headers = mpc_headers(slug="other-club", token="wrong")
    del headers["X-User-Agent"]
    assert (await http.get(bulk_path(11), headers=headers)).status_code == 470
    # A wrong slug wins over a wrong token.
    response = await http.get(bulk_path(11), headers=mpc_headers(slug="other-club", token="wrong"))
    assert response.status_code == 471
    assert set(response.json()) == {"error"}
    # Then the token; the import's existence is checked only after all that.
    assert (await http.get(bulk_path(11), headers=mpc_headers(token="wrong"))).status_code == 401
    assert (await http.get(bulk_path(11), headers=mpc_headers(token=None))).status_code == 401
    unknown = bulk_path(11, import_id="nope")
    assert (await http.get(unknown, headers=mpc_headers(token="wrong"))).status_code == 401
    assert (await http.get(unknown, headers=mpc_headers())).status_code == 404


async def test_club_token_replaces_default(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 1}])
    await control.put_import("other-club", IMPORT_ID, bulks=[{"id": 1}])
    await control.set_club_token(SLUG, "club-own-token")
    mine, other = bulk_path(1), bulk_path(1, slug="other-club")
    assert (await http.get(mine, headers=mpc_headers(token=TOKEN))).status_code == 401
    assert (await http.get(mine, headers=mpc_headers(token="club-own-token"))).status_code == 200
    assert (await http.get(other, headers=mpc_headers("other-club", TOKEN))).status_code == 200
    assert (await http.get(other, headers=mpc_headers("other-club", "club-own-token"))).status_code == 401
    await control.set_club_token(SLUG, None)
    assert (await http.get(mine, headers=mpc_headers(token=TOKEN))).status_code == 200
    await control.set_default_token(None)  # any token at all
    assert (await http.get(mine, headers=mpc_headers(token="anything"))).status_code == 200
    assert (await http.get(mine, headers=mpc_headers(token=None))).status_code == 401


@pytest.mark.usefixtures("doc_import")
@pytest.mark.parametrize(
    ("path", "message"),
    [
        (bulk_path(11, import_id="no-such-import"), "Import with such ID wasn't found"),
        (import_path(import_id="no-such-import"), "Import with such ID wasn't found"),
        (import_path(slug="other-club"), "Import with such ID wasn't found"),
        (bulk_path(999), "Bulk with such ID wasn't found"),
        (bulk_path("abc"), "Bulk with such ID wasn't found"),
    ],
)
async def test_unknown_objects_are_404(http: httpx.AsyncClient, path: str, message: str) -> None:
    slug = path.split("/")[2]
    response = await http.get(path, headers=mpc_headers(slug=slug))
    assert response.status_code == 404
    assert response.json() == {"error": message}


async def test_unknown_path_is_json_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/v3/x/members", headers=mpc_headers())
    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}


@pytest.mark.usefixtures("doc_import")
async def test_changes_show_at_once(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    """Cached bodies are re-encoded after each change, on both endpoints."""
    assert (await http.get(bulk_path(12), headers=mpc_headers())).json()["status"] == "working"
    await control.patch_bulk(
        SLUG,
        IMPORT_ID,
        12,
        status="finished",
        members_created_number=990,
        members_updated_number=9,
        members_with_validation_errors_number=1,
        members_errors=DOC_MEMBERS_ERRORS,
    )
    body = (await http.get(bulk_path(12), headers=mpc_headers())).json()
    assert (body["status"], body["members_created_number"], body["members_errors"]) == (
        "finished",
        990,
        DOC_MEMBERS_ERRORS,
    )
    totals = (await http.get(import_path(), headers=mpc_headers())).json()
    assert totals["members_created_number"] == 1000
    assert totals["bulks"][1] == {"id": 12, "request_number": 2, "status": "finished"}
    # Personal data deleted after 24 h: members_errors comes back empty, the rest unchanged.
    await control.patch_bulk(SLUG, IMPORT_ID, 12, members_errors={})
    body = (await http.get(bulk_path(12), headers=mpc_headers())).json()
    assert (body["members_errors"], body["members_with_validation_errors_number"]) == ({}, 1)


@pytest.mark.usefixtures("doc_import")
async def test_deleted_bulk_answers_404(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    assert (await http.get(bulk_path(12), headers=mpc_headers())).status_code == 200
    await control.delete_bulk(SLUG, IMPORT_ID, 12)
    response = await http.get(bulk_path(12), headers=mpc_headers())
    assert (response.status_code, response.json()) == (404, {"error": "Bulk with such ID wasn't found"})
    listed = (await http.get(import_path(), headers=mpc_headers())).json()["bulks"]
    assert [b["id"] for b in listed] == [11, 13]


@pytest.mark.usefixtures("doc_import")
async def test_deleted_import_answers_404(http: httpx.AsyncClient, control: SimulatorControl) -> None:
    await control.delete_import(SLUG, IMPORT_ID)
    for path in (import_path(), bulk_path(11)):
        response = await http.get(path, headers=mpc_headers())
        assert (response.status_code, response.json()) == (404, {"error": "Import with such ID wasn't found"})


async def test_replacing_a_bulk_keeps_its_request_number(control: SimulatorControl) -> None:
    await control.put_import(SLUG, IMPORT_ID, bulks=[{"id": 5}, {"id": 6}])
    replaced = await control.put_bulk(SLUG, IMPORT_ID, 5, status="working", members_in_payload_number=3)
    assert (replaced.request_number, replaced.status, replaced.members_in_payload_number) == (1, "working", 3)
    detail = await control.get_import(SLUG, IMPORT_ID)
    assert [(b.id, b.request_number) for b in detail.bulks] == [(5, 1), (6, 2)]
