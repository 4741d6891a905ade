"""``POST /slack/events``: the Slack app's slash command and the card's buttons, on one URL.

Slack signs every request with the app's signing secret (``BRIDGE_SLACK_SIGNING_SECRET``):
``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``, checked here with ``slack_sdk.signature``
on the exact bytes received. A missing or wrong signature, or a timestamp more than five minutes
away, is a 401 before anything is read, and changes nothing.

Slack wants an answer within 3 seconds. The answer says what was done (a watch created, a watch
stopped, a refresh scheduled), all of it a few Redis steps; anything that talks to Slack again
(the card, its thread, a message to the person who clicked) is a ``slack_followup`` job
(:mod:`bridge.slack.followup`).

:class:`SlackApp` holds the handling itself, independent of the transport: ``bridge
slack-socket`` (Socket Mode, ``bridge/slack_socket.py``) serves the same commands and buttons.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from litestar import Controller, MediaType, Request, post
from litestar.response import Response
from slack_sdk.signature import SignatureVerifier

from bridge.api.docs import errors
from bridge.api.errors import ApiError
from bridge.api.schemas import SlackTargetIn, WatchCreate
from bridge.api.watches import fingerprint, new_watch_id, spec_from
from bridge.config import Settings
from bridge.core.model import WatchSpec
from bridge.logs import get_logger
from bridge.slack.access import SlackAccess
from bridge.slack.commands import (
    ActionName,
    Click,
    HelpCommand,
    ListCommand,
    Problem,
    StopCommand,
    WatchCommand,
    ephemeral,
    help_text,
    list_text,
    parse_click,
    parse_command,
    watching_text,
)
from bridge.slack.followup import SLACK_FOLLOWUP_FUNCTION, FollowUp, job_id
from bridge.slack.state import SlackState
from bridge.store.redis_store import LimitReached, RedisStore
from bridge.upstream.credentials import CredentialStore

EVENTS_PATH: Final = "/slack/events"
SIGNATURE_MAX_AGE_S: Final = 5 * 60
"""Slack's rule (and ``slack_sdk.signature``'s check): an older or later timestamp is refused."""
TIMESTAMP_RE: Final = re.compile(rb"[0-9]{1,12}")
SIGNATURE_RE: Final = re.compile(rb"v0=[0-9a-f]{64}")
MAX_FORM_FIELDS: Final = 32
LIST_SCAN: Final = 1000
"""Active watches a ``list`` looks through for this channel's (newest first)."""
SLACK_ID_RE: Final = re.compile(r"[A-Z0-9]{2,32}")
SLACK_CREATOR_PREFIX: Final = "slack:"
"""A watch created from Slack records who typed the command (``created_by``: ``slack:U0123ABCD``)."""

log = get_logger("bridge.slack")


class SlashCommand(msgspec.Struct, kw_only=True, frozen=True):
    """The fields of a slash command the bridge reads (Slack sends more)."""

    command: str
    text: str = ""
    channel_id: str
    user_id: str
    response_url: str = ""


def verified(secret: str, body: bytes, timestamp: bytes | None, signature: bytes | None) -> bool:
    """Whether Slack signed ``body`` (with ``timestamp`` within five minutes of now)."""
    if timestamp is None or signature is None:
        return False
    if not TIMESTAMP_RE.fullmatch(timestamp) or not SIGNATURE_RE.fullmatch(signature):
        return False
    try:
        body.decode("utf-8")  # Slack sends UTF-8; slack_sdk would raise on anything else
    except UnicodeDecodeError:
        return False
    return SignatureVerifier(secret).is_valid(
        body=body, timestamp=timestamp.decode(), signature=signature.decode()
    )


def form_fields(body: bytes) -> dict[str, str]:
    """A form body as Slack sends it (UTF-8, url-encoded); ``ValueError`` when it is not one."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    pairs = parse_qsl(
        text, keep_blank_values=True, strict_parsing=False, errors="strict", max_num_fields=MAX_FORM_FIELDS
    )
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise ValueError(f"field {name!r} given twice")
        fields[name] = value
    return fields


class SlackApp:
    """What a slash command or a button click does, whichever way it came in."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: RedisStore,
        access: SlackAccess,
        state: SlackState,
        credentials: CredentialStore,
        queue: Any,
    ) -> None:
        self._settings = settings
        self._store = store
        self._access = access
        self._state = state
        self._credentials = credentials
        self._queue = queue
        """An ``ArqRedis`` with the msgspec job codec (:func:`bridge.redis_url.connect`)."""

    # ------------------------------------------------------------------ commands

    async def command(self, fields: Mapping[str, str]) -> dict[str, Any]:
        """The answer to a slash command (always one Slack shows to its author only)."""
        try:
            cmd = msgspec.convert(dict(fields), SlashCommand)
        except msgspec.ValidationError as exc:
            raise ValueError(f"not a slash command: {exc}") from None
        if not SLACK_ID_RE.fullmatch(cmd.channel_id) or not SLACK_ID_RE.fullmatch(cmd.user_id):
            raise ValueError("not a slash command: no channel or user id")
        name = self._settings.slack_command
        if cmd.command != name:
            return ephemeral(f"This bridge answers `{name}`, not that command.")
        if not self._access.user_allowed(cmd.user_id):
            return ephemeral(f"You are not among the people allowed to use `{name}` (ask an admin).")
        parsed = parse_command(cmd.text, name)
        if isinstance(parsed, Problem):
            return ephemeral(parsed.text)
        if isinstance(parsed, HelpCommand):
            return ephemeral(help_text(name))
        if isinstance(parsed, ListCommand):
            return ephemeral(await self._list(cmd.channel_id))
        if isinstance(parsed, StopCommand):
            return ephemeral(await self._stop(parsed, cmd))
        return ephemeral(await self._watch(parsed, cmd))

    async def _refusal(self, club: str, channel: str) -> str | None:
        """Why ``channel`` may not act on ``club`` (``None``: it may)."""
        fix = f"an admin runs `bridge clubs slack-channels {club} {channel}`"
        if not await self._access.has_channels(club):
            if not await self._credentials.has(club):
                return f"I do not know the club `{club}`: {fix} (and stores its MPC credentials)."
            return f"`{club}` cannot be watched from Slack yet: {fix}."
        if not await self._access.channel_allowed(club, channel):
            return f"This channel is not allowed to watch `{club}`: {fix}, or use an allowed channel."
        return None

    async def _watch(self, parsed: WatchCommand, cmd: SlashCommand) -> str:
        refusal = await self._refusal(parsed.club, cmd.channel_id)
        if refusal is not None:
            return refusal
        if self._settings.mpc_token is None and not await self._credentials.has(parsed.club):
            return (
                f"No MPC credentials for `{parsed.club}`: an admin stores them with "
                f"`PUT /v1/clubs/{parsed.club}/credentials`."
            )
        data = WatchCreate(
            loyalty_club_slug=parsed.club,
            import_id=parsed.import_id,
            bulk_ids=list(parsed.bulk_ids) if parsed.bulk_ids is not None else None,
            slack=SlackTargetIn(channel=cmd.channel_id),
        )
        try:
            spec = spec_from(
                data,
                new_watch_id(),
                time.time(),
                max_bulk_ids=self._settings.watch_max_bulk_ids,
                created_by=SLACK_CREATOR_PREFIX + cmd.user_id,
            )
            created, watch_id = await self._store.create_watch(
                spec,
                fingerprint(data),
                self._settings.poll_min_interval_s,
                max_per_club=self._settings.max_watches_per_club,
            )
        except ApiError as refused:  # what the API would answer with a 422
            return f"Not watched: {refused.detail}"
        except LimitReached as reached:
            return (
                f"Not watched: `{parsed.club}` already has {reached.limit} active watches, the most "
                "allowed. Stop one first."
            )
        log.info(
            "slack command: watch",
            watch_id=watch_id,
            created=created,
            channel=cmd.channel_id,
            user=cmd.user_id,
        )
        return watching_text(watch_id, parsed.club, parsed.import_id, parsed.bulk_ids, created)

    async def _list(self, channel: str) -> str:
        records, _ = await self._store.list_watches(slug=None, state="active", offset=0, limit=LIST_SCAN)
        lines = [
            f"`{r.spec.id}` {r.spec.loyalty_club_slug} / {r.spec.import_id}"
            + (f" (bulks {', '.join(map(str, r.spec.bulk_ids))})" if r.spec.bulk_ids else "")
            for r in records
            if r.spec.slack is not None and r.spec.slack.channel == channel
        ]
        return list_text(lines, len(lines), self._settings.slack_command)

    async def _own_watch(self, watch_id: str, channel: str) -> WatchSpec | str:
        """The watch, if it posts to ``channel`` and the channel may still act on its club."""
        record = await self._store.get_watch(watch_id)
        if record is None or record.spec.slack is None or record.spec.slack.channel != channel:
            return f"No watch `{watch_id}` posts to this channel."
        refusal = await self._refusal(record.spec.loyalty_club_slug, channel)
        if refusal is not None:
            return refusal
        if record.state != "active":
            return f"Watch `{watch_id}` has already ended ({record.state})."
        return record.spec

    async def _stop(self, parsed: StopCommand, cmd: SlashCommand) -> str:
        spec = await self._own_watch(parsed.watch_id, cmd.channel_id)
        if isinstance(spec, str):
            return spec
        await self._store.stop_watch(spec, time.time())
        await self._follow_up("stop", spec.id, cmd.channel_id, cmd.user_id, "", None)
        return f"⏹️ Stopped watch `{spec.id}` ({spec.loyalty_club_slug} / {spec.import_id})."

    # ------------------------------------------------------------------ buttons

    async def interaction(self, payload: bytes | str) -> None:
        """A click on a card's button: done at once; the card, its thread and any refusal shown
        to the person follow in a job. ``ValueError`` when the payload is not a click."""
        click = parse_click(payload)
        if isinstance(click, Problem):
            raise ValueError(click.text)
        refusal = await self._click_refusal(click)
        if refusal is not None:
            log.info("slack click refused", action=click.action, watch_id=click.watch_id, user=click.user)
            await self._follow_up(None, None, click.channel, click.user, click.response_url, refusal)
            return
        reply = await self._act(click)
        await self._follow_up(
            click.action, click.watch_id, click.channel, click.user, click.response_url, reply
        )

    async def _click_refusal(self, click: Click) -> str | None:
        if not self._access.user_allowed(click.user):
            return "You are not among the people allowed to use these buttons (ask an admin)."
        spec = await self._own_watch(click.watch_id, click.channel)
        return spec if isinstance(spec, str) else None

    async def _act(self, click: Click) -> str | None:
        record = await self._store.get_watch(click.watch_id)
        assert record is not None  # checked by _click_refusal
        if click.action == "stop":
            await self._store.stop_watch(record.spec, time.time())
            return None
        if click.action == "refresh":
            outcome, at = await self._store.poll_soon(
                record.spec, time.time(), self._settings.poll_min_interval_s
            )
            wait = max(0.0, at - time.time())
            if outcome == "polling":
                return "MPC is being asked right now."
            return f"MPC will be asked in {wait:.0f} s (the soonest it allows)." if wait >= 1 else None
        await self._state.mute(click.watch_id, click.action == "mute")
        return None

    async def _follow_up(
        self,
        action: ActionName | None,
        watch_id: str | None,
        channel: str,
        user: str,
        response_url: str,
        reply: str | None,
    ) -> None:
        ref = secrets.token_hex(12)
        job = FollowUp(
            ref=ref,
            channel=channel,
            user=user,
            action=action,
            watch_id=watch_id,
            response_url=response_url,
            reply=reply,
        )
        await self._queue.enqueue_job(SLACK_FOLLOWUP_FUNCTION, job, _job_id=job_id(ref))


class SlackEventsController(Controller):
    path = EVENTS_PATH
    tags = ["slack"]

    @post(
        "/",
        summary="Slack slash commands and button clicks (signed by Slack)",
        status_code=200,
        media_type=MediaType.JSON,
        responses=errors(400, 401, 503),
    )
    async def events(self, request: Request[Any, Any, Any]) -> Response[Any]:
        settings: Settings = request.app.state.settings
        body = await request.body()
        secret = settings.slack_signing_secret
        headers = request.headers
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if secret is None or not verified(
            secret.reveal(),
            body,
            timestamp.encode("latin-1") if timestamp is not None else None,
            signature.encode("latin-1") if signature is not None else None,
        ):
            raise ApiError(
                401, "unauthorized", "not signed by Slack (signature, or timestamp older than 5 minutes)"
            )
        app: SlackApp = request.app.state.slack_app
        try:
            fields = form_fields(body)
            if "payload" in fields:
                await app.interaction(fields["payload"])
                return Response(content=b"", status_code=200, media_type=MediaType.TEXT)
            return Response(content=await app.command(fields), status_code=200)
        except ValueError as exc:
            raise ApiError(
                400, "bad_request", f"not a Slack command or interaction: {str(exc)[:200]}"
            ) from None
