"""``/v1/api-keys``: managed keys limited to clubs and a role, made and revoked by an admin.

The key itself is in the answer to its creation and nowhere else: Redis keeps a keyed hash of it
(:mod:`bridge.store.apikeys`). A revoked key is refused by every API process within
:data:`bridge.api.auth.KEY_CACHE_TTL_S`.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import JSONBody, Parameter
from litestar.response import Response
from msgspec import Meta, Struct

from bridge.api.auth import PrincipalDep, audit, require_admin
from bridge.api.docs import WRITE_ERRORS, errors, scoped
from bridge.api.errors import ApiError, decode_strictly
from bridge.api.params import Cursor, Limit, offset_of
from bridge.api.schemas import PAGE_DEFAULT, SLUG_PATTERN, Page, encode_cursor
from bridge.core import patterns
from bridge.core.diff import iso_timestamp
from bridge.store.apikeys import KEY_ID_PATTERN, ApiKeyRecord, ApiKeyStore, ManagedRole

MAX_KEY_CLUBS: Final = 100
"""Clubs one managed key may hold."""
MAX_NAME_CHARS: Final = 100
NAME_PATTERN: Final = patterns.DISPLAY_NAME
"""A name is shown in lists and logs: no control characters (newlines included)."""

KeyId = Annotated[str, Parameter(description="API key id", pattern=KEY_ID_PATTERN)]
ClubSlug = Annotated[str, Meta(pattern=SLUG_PATTERN, examples=["infinity-mall"])]


class ApiKeyCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/api-keys``."""

    name: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_NAME_CHARS,
            pattern=NAME_PATTERN,
            description="who or what uses the key",
            examples=["Infinity Mall CRM team"],
        ),
    ]
    clubs: Annotated[
        list[ClubSlug],
        Meta(min_length=1, max_length=MAX_KEY_CLUBS, description="the clubs the key sees and changes"),
    ]
    role: Annotated[
        ManagedRole, Meta(description="`editor`: read and write its clubs' resources; `viewer`: read only")
    ]


class ApiKeyOut(Struct, kw_only=True):
    id: str
    name: str
    clubs: list[str]
    role: str
    created_at: str
    created_by: str
    """Id of the admin key that created it."""


class ApiKeyCreated(ApiKeyOut, kw_only=True):
    key: str
    """The bearer key (``bk_...``): shown in this answer only, stored as a keyed hash."""


def api_key_out(record: ApiKeyRecord) -> ApiKeyOut:
    return ApiKeyOut(
        id=record.id,
        name=record.name,
        clubs=list(record.clubs),
        role=record.role,
        created_at=iso_timestamp(record.created_at),
        created_by=record.created_by,
    )


def _invalid(key: str, message: str) -> ApiError:
    return ApiError(422, "validation_error", f"{key}: {message}", [{"key": key, "message": message}])


def _clubs(clubs: list[str]) -> tuple[str, ...]:
    # The slug pattern ends in `$`, which also matches before a final newline.
    if any(re.search(r"[\r\n]", club) for club in clubs):
        raise _invalid("clubs", "contains a newline")
    if len(set(clubs)) != len(clubs):
        raise _invalid("clubs", "names a club twice")
    return tuple(sorted(clubs))


def _store(request: Request[Any, Any, Any]) -> ApiKeyStore:
    store: ApiKeyStore = request.app.state.api_keys
    return store


class ApiKeyController(Controller):
    path = "/api-keys"
    tags = ["api-keys"]
    guards = [require_admin]

    @post(
        "/",
        summary="Create a managed key for some clubs; the answer carries the key (only time shown)",
        description=scoped("admin"),
        status_code=201,
        responses=errors(*WRITE_ERRORS),
    )
    async def create(
        self, request: Request[Any, Any, Any], data: JSONBody[ApiKeyCreate], principal: PrincipalDep
    ) -> Response[ApiKeyCreated]:
        data = decode_strictly(await request.body(), ApiKeyCreate)
        clubs = _clubs(data.clubs)
        record, key = await _store(request).create(
            name=data.name, clubs=clubs, role=data.role, created_by=principal.key_id, now=time.time()
        )
        audit(principal, "api_key.create", api_key_id=record.id, clubs=list(clubs), api_key_role=record.role)
        shown = api_key_out(record)
        return Response(ApiKeyCreated(**msgspec.structs.asdict(shown), key=key), status_code=201)

    @get(
        "/",
        summary="Managed keys, newest first (never the keys themselves)",
        description=scoped("admin"),
        responses=errors(400, 401, 403, 422),
    )
    async def list_keys(
        self, request: Request[Any, Any, Any], cursor: Cursor = None, limit: Limit = PAGE_DEFAULT
    ) -> Page[ApiKeyOut]:
        offset = offset_of(cursor)
        records = await _store(request).all()
        page = records[offset : offset + limit]
        more = len(records) > offset + limit
        return Page(
            items=[api_key_out(r) for r in page], next_cursor=encode_cursor(offset + limit) if more else None
        )

    @get(
        "/{key_id:str}",
        summary="A managed key (never the key itself)",
        description=scoped("admin"),
        responses=errors(401, 403, 404, 422),
    )
    async def show(self, request: Request[Any, Any, Any], key_id: KeyId) -> ApiKeyOut:
        record = await _store(request).get(key_id)
        if record is None:
            raise ApiError(404, "not_found", f"no API key {key_id}")
        return api_key_out(record)

    @delete(
        "/{key_id:str}",
        summary="Revoke a managed key: refused by every API process within a second",
        description=scoped("admin"),
        status_code=204,
        responses=errors(401, 403, 404, 422),
    )
    async def revoke(self, request: Request[Any, Any, Any], key_id: KeyId, principal: PrincipalDep) -> None:
        record = await _store(request).revoke(key_id)
        if record is None:
            raise ApiError(404, "not_found", f"no API key {key_id}")
        audit(principal, "api_key.revoke", api_key_id=key_id)
