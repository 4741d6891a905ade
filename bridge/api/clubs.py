"""``PUT /v1/clubs/{slug}/credentials``: a club's MPC token, write-only."""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from litestar import Controller, Request, put
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from msgspec import Meta, Struct

from bridge.api.auth import PrincipalDep, audit
from bridge.api.docs import CREATE_ERRORS, errors, scoped
from bridge.api.errors import decode_strictly
from bridge.api.schemas import SLUG_PATTERN
from bridge.upstream.credentials import CredentialStore

MAX_TOKEN_CHARS: Final = 4096
MAX_PRODUCT_NAME_CHARS: Final = 128
PRINTABLE_PATTERN: Final = r"^[\x21-\x7e]+$"
"""Tokens travel in an HTTP header: visible ASCII only, no spaces or control characters."""

ClubSlug = Annotated[str, Parameter(pattern=SLUG_PATTERN, description="MPC loyalty club slug")]


class CredentialsIn(Struct, kw_only=True, forbid_unknown_fields=True):
    token: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_TOKEN_CHARS,
            pattern=PRINTABLE_PATTERN,
            description="MPC API token (sent as X-Client-Authorization); never returned",
        ),
    ]
    product_name: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=MAX_PRODUCT_NAME_CHARS,
                pattern=r"^[\x20-\x7e]+$",
                description="X-Product-Name for this club (default: BRIDGE_MPC_PRODUCT_NAME)",
            ),
        ]
        | None
    ) = None


class ClubController(Controller):
    path = "/clubs"
    tags = ["credentials"]

    @put(
        "/{slug:str}/credentials",
        status_code=204,
        summary="Store a club's MPC token (encrypted at rest, never returned)",
        description=scoped("editor", "for a club the key holds (another club: 403 `forbidden_club`)"),
        responses=errors(*CREATE_ERRORS),
    )
    async def put_credentials(
        self,
        slug: ClubSlug,
        request: Request[Any, Any, State],
        data: JSONBody[CredentialsIn],
        principal: PrincipalDep,
    ) -> None:
        body = decode_strictly(await request.body(), CredentialsIn)
        principal.check_club(slug)
        credentials: CredentialStore = request.app.state.credentials
        await credentials.put(slug, body.token, body.product_name, time.time(), created_by=principal.key_id)
        audit(principal, "credentials.put", club=slug)
