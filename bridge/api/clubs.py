"""``/v1/clubs/{slug}``: a club's MPC token (write-only) and the Slack channels allowed to watch it."""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from msgspec import Meta, Struct

from bridge.api.auth import PrincipalDep
from bridge.api.docs import WRITE_ERRORS, errors
from bridge.api.errors import ApiError, decode_strictly
from bridge.api.schemas import SLUG_PATTERN
from bridge.slack.access import CHANNEL_ID_PATTERN, MAX_CHANNELS_PER_CLUB, SlackAccess
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


def _require_admin(principal: Any) -> None:
    if not principal.is_admin:
        raise ApiError(403, "forbidden", "only an admin key may change which Slack channels watch a club")


class ClubController(Controller):
    path = "/clubs"
    tags = ["credentials"]

    @put(
        "/{slug:str}/credentials",
        status_code=204,
        summary="Store a club's MPC token (encrypted at rest, never returned)",
        responses=errors(*WRITE_ERRORS),
    )
    async def put_credentials(
        self, slug: ClubSlug, request: Request[Any, Any, State], data: JSONBody[CredentialsIn]
    ) -> None:
        body = decode_strictly(await request.body(), CredentialsIn)
        credentials: CredentialStore = request.app.state.credentials
        await credentials.put(slug, body.token, body.product_name, time.time())

    @get(
        "/{slug:str}/slack-channels",
        summary="The Slack channels allowed to watch this club (admin)",
        responses=errors(401, 403, 422),
    )
    async def get_slack_channels(
        self, slug: ClubSlug, request: Request[Any, Any, State], principal: PrincipalDep
    ) -> SlackChannels:
        _require_admin(principal)
        access: SlackAccess = request.app.state.slack_access
        return SlackChannels(channel_ids=await access.channels(slug))

    @put(
        "/{slug:str}/slack-channels",
        status_code=200,
        summary="Set the Slack channels allowed to watch this club (admin)",
        responses=errors(*WRITE_ERRORS, 403),
    )
    async def put_slack_channels(
        self,
        slug: ClubSlug,
        request: Request[Any, Any, State],
        data: JSONBody[SlackChannels],
        principal: PrincipalDep,
    ) -> SlackChannels:
        _require_admin(principal)
        body = decode_strictly(await request.body(), SlackChannels)
        access: SlackAccess = request.app.state.slack_access
        return SlackChannels(channel_ids=await access.set_channels(slug, body.channel_ids))
