"""Shared constants and small helpers of the simulator tests."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from mpc_simulator import FlipEntry, Simulator, is_valid_transition

SLUG: Final = "infinity-mall"
TOKEN: Final = "test-default-token"
IMPORT_ID: Final = "89405ae3-2dd5-46cb-a13b-840bc588199b"
ISO_MS: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

BULK_KEYS: Final = [
    "id",
    "import_id",
    "request_number",
    "operation",
    "status",
    "members_in_payload_number",
    "members_created_number",
    "members_updated_number",
    "members_with_validation_errors_number",
    "retries",
    "members_errors",
    "created_at",
]
IMPORT_KEYS: Final = [
    "members_in_payload_number",
    "members_created_number",
    "members_updated_number",
    "members_with_validation_errors_number",
    "created_at",
    "bulks",
]
DOC_MEMBERS_ERRORS: Final = {
    "joe@example.com": {
        "properties": [
            {
                "error": {
                    "language": [
                        {
                            "error": "value_not_match",
                            "value": "pl",
                            "values": "en, no",
                            "property": "language",
                        }
                    ]
                }
            }
        ]
    }
}


def mpc_headers(slug: str = SLUG, token: str | None = TOKEN) -> dict[str, str]:
    """The headers the bridge sends to MPC."""
    headers = {
        "X-Product-Name": "mpc-import-bridge",
        "X-User-Agent": "mpc-import-bridge/test",
        "X-Loyalty-Club-Slug": slug,
    }
    if token is not None:
        headers["X-Client-Authorization"] = token
    return headers


def bulk_path(bulk_id: int | str, slug: str = SLUG, import_id: str = IMPORT_ID) -> str:
    return f"/v3/{slug}/members/imports/{import_id}/bulks/{bulk_id}"


def import_path(slug: str = SLUG, import_id: str = IMPORT_ID) -> str:
    return f"/v3/{slug}/members/imports/{import_id}"


def assert_valid_lifecycles(flips: Iterable[FlipEntry]) -> dict[tuple[str, str, int], list[str]]:
    """Every flip is a valid lifecycle step from the bulk's previous flip; returns each bulk's statuses."""
    last: dict[tuple[str, str, int], FlipEntry] = {}
    seen: dict[tuple[str, str, int], list[str]] = {}
    for flip in flips:
        key = (flip.slug, flip.import_id, flip.bulk_id)
        before = last.get(key)
        if before is None:
            assert flip.from_ is None and flip.to == "waiting" and flip.retries == 0, flip
        else:
            assert flip.from_ == before.to, (before, flip)
            assert is_valid_transition(before.to, before.retries, flip.to, flip.retries), (before, flip)
        last[key] = flip
        seen.setdefault(key, []).append(flip.to)
    return seen


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, interval_s: float = 0.02
) -> None:
    """Poll an async predicate until it is true (or fail after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


def flips_of(sim: Simulator) -> list[FlipEntry]:
    return list(sim.iter_flips())
