"""``/v1/clubs/{slug}``: a club's MPC token (write-only) and the Slack channels allowed to watch it."""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from msgspec import Meta, Struct

from bridge.api.auth import PrincipalDep, audit, require_admin
from bridge.api.docs import CREATE_ERRORS, WRITE_ERRORS, errors, scoped
from bridge.api.errors import decode_strictly
from bridge.api.schemas import SLUG_PATTERN
from bridge.core import patterns
from bridge.slack.access import CHANNEL_ID_PATTERN, MAX_CHANNELS_PER_CLUB, SlackAccess
from bridge.upstream.credentials import CredentialStore

MAX_TOKEN_CHARS: Final = 4096
MAX_PRODUCT_NAME_CHARS: Final = 128
PRINTABLE_PATTERN: Final = patterns.HEADER_TOKEN
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
                pattern=patterns.HEADER_TEXT,
                description="X-Product-Name for this club (default: BRIDGE_MPC_PRODUCT_NAME)",
            ),
        ]
        | None
    ) = None


class SlackChannels(Struct, kw_only=True, forbid_unknown_fields=True):
    """The Slack channels allowed to watch a club with the slash command and the card's buttons."""

    channel_ids: Annotated[
        list[
            Annotated[
                str,
                Meta(pattern=CHANNEL_ID_PATTERN, description="Slack channel id", examples=["C0123456789"]),
            ]
        ],
        Meta(
            max_length=MAX_CHANNELS_PER_CLUB,
            description="channel ids (not names: a name can change); empty: no channel may",
        ),
    ]


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

    @get(
        "/{slug:str}/slack-channels",
        summary="The Slack channels allowed to watch this club (admin)",
        description=scoped("admin"),
        guards=[require_admin],
        responses=errors(401, 403, 422),
    )
    async def get_slack_channels(self, slug: ClubSlug, request: Request[Any, Any, State]) -> SlackChannels:
        access: SlackAccess = request.app.state.slack_access
        return SlackChannels(channel_ids=await access.channels(slug))

    @put(
        "/{slug:str}/slack-channels",
        status_code=200,
        summary="Set the Slack channels allowed to watch this club (admin)",
        description=scoped("admin"),
        guards=[require_admin],
        responses=errors(*WRITE_ERRORS),
    )
    async def put_slack_channels(
        self,
        slug: ClubSlug,
        request: Request[Any, Any, State],
        data: JSONBody[SlackChannels],
        principal: PrincipalDep,
    ) -> SlackChannels:
        body = decode_strictly(await request.body(), SlackChannels)
        access: SlackAccess = request.app.state.slack_access
        allowed = await access.set_channels(slug, body.channel_ids)
        audit(principal, "slack_channels.put", club=slug, channel_ids=allowed)
        return SlackChannels(channel_ids=allowed)
