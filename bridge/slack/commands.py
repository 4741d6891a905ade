"""The Slack side of the bridge's controls, as pure functions: reading the slash command and the
card's button clicks, and writing the answers people see. No I/O (the routes and Socket Mode
do it: ``bridge/api/slack_app.py``).

The command (``BRIDGE_SLACK_COMMAND``, ``/mpc-watch`` by default)::

    /mpc-watch <club> <import id> [bulk ids…]   watch an import (or some of its bulks) here
    /mpc-watch list                             this channel's active watches
    /mpc-watch stop <watch id>                  stop one
    /mpc-watch help                             how to use it

Everything Slack sends is outside input: text is bounded, ids must match their patterns, numbers
their range, and an interactive payload is decoded into the few fields used, refusing deep
nesting, wrong encodings and anything not shaped like a button click. A refusal is a
:class:`Problem` whose text says what to fix; it is shown only to the person who asked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, Literal

import msgspec
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ConfirmObject
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

MAX_TEXT_CHARS: Final = 4000
"""Slack sends at most this much command text; more is not a command Slack sent."""
MAX_PAYLOAD_BYTES: Final = 64 * 1024
MAX_PAYLOAD_DEPTH: Final = 32
"""Interactive payloads nest a few levels; deeper is refused before decoding."""
SLUG_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
IMPORT_ID_RE: Final = re.compile(r"[A-Za-z0-9-]{1,64}")
WATCH_ID_RE: Final = re.compile(r"wch_[0-9a-f]{24}")
BULK_ID_RE: Final = re.compile(r"[0-9]{1,16}")
MAX_BULK_ID: Final = 2**53 - 1
MAX_BULK_IDS: Final = 1000
LIST_SHOWN: Final = 20
"""Watches a ``list`` answer names; more are counted."""

ACTION_STOP: Final = "bridge_stop"
ACTION_REFRESH: Final = "bridge_refresh"
ACTION_MUTE: Final = "bridge_mute"
ACTION_UNMUTE: Final = "bridge_unmute"
ACTIONS: Final = frozenset({ACTION_STOP, ACTION_REFRESH, ACTION_MUTE, ACTION_UNMUTE})
CARD_ACTIONS_BLOCK_ID: Final = "bridge_card_actions"

ActionName = Literal["stop", "refresh", "mute", "unmute"]
ACTION_NAMES: Final[dict[str, ActionName]] = {
    ACTION_STOP: "stop",
    ACTION_REFRESH: "refresh",
    ACTION_MUTE: "mute",
    ACTION_UNMUTE: "unmute",
}
DONE_LINES: Final[dict[ActionName, str]] = {
    "stop": "⏹️ Stopped by <@{user}>",
    "refresh": "🔄 Refresh asked by <@{user}>",
    "mute": "🔕 Progress replies muted by <@{user}>",
    "unmute": "🔔 Progress replies unmuted by <@{user}>",
}
"""The thread line recording who did what with the card's buttons (or the command)."""

_CONTROL_CHARS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# ---------------------------------------------------------------------------- the command


class WatchCommand(msgspec.Struct, frozen=True, kw_only=True):
    club: str
    import_id: str
    bulk_ids: tuple[int, ...] | None = None


class ListCommand(msgspec.Struct, frozen=True):
    pass


class StopCommand(msgspec.Struct, frozen=True, kw_only=True):
    watch_id: str


class HelpCommand(msgspec.Struct, frozen=True):
    pass


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """A refusal: ``text`` says what was wrong and what to do."""

    code: str
    text: str


Command = WatchCommand | ListCommand | StopCommand | HelpCommand


def _shown(value: str, limit: int = 40) -> str:
    """A piece of someone's input, safe to echo: no control characters, no backticks, bounded."""
    clean = _CONTROL_CHARS.sub("", value).replace("`", "'")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def parse_command(text: str, command: str = "/mpc-watch") -> Command | Problem:
    """The command in ``text`` (what follows the command name), or why it is not one."""
    if len(text) > MAX_TEXT_CHARS:
        return Problem(
            code="too_long", text=f"That is more than {MAX_TEXT_CHARS:,} characters. {usage(command)}"
        )
    words = text.split()
    if not words or words[0].lower() == "help":
        return HelpCommand()
    head = words[0]
    if head.lower() == "list":
        if len(words) > 1:
            return Problem(code="usage", text=f"`list` takes nothing after it. {usage(command)}")
        return ListCommand()
    if head.lower() == "stop":
        if len(words) != 2:
            return Problem(code="usage", text=f"Say which watch: `{command} stop wch_…`.")
        if not WATCH_ID_RE.fullmatch(words[1]):
            return Problem(
                code="malformed_watch_id",
                text=f"`{_shown(words[1])}` is not a watch id (they look like `wch_` and 24 hex digits; "
                f"`{command} list` shows them).",
            )
        return StopCommand(watch_id=words[1])
    if len(words) < 2:
        return Problem(code="usage", text=f"Name the import too: `{command} {_shown(head)} <import id>`.")
    club, import_id, *bulks = words
    if not SLUG_RE.fullmatch(club):
        return Problem(
            code="malformed_club",
            text=f"`{_shown(club)}` is not a club slug "
            "(lower-case letters, digits and -, like `infinity-mall`).",
        )
    if not IMPORT_ID_RE.fullmatch(import_id):
        return Problem(
            code="malformed_import_id",
            text=f"`{_shown(import_id)}` is not an MPC import id (1 to 64 letters, digits and -).",
        )
    if not bulks:
        return WatchCommand(club=club, import_id=import_id)
    if len(bulks) > MAX_BULK_IDS:
        return Problem(code="too_many_bulks", text=f"At most {MAX_BULK_IDS:,} bulk ids at once.")
    ids: list[int] = []
    for word in bulks:
        bulk = int(word) if BULK_ID_RE.fullmatch(word) else 0
        if not 1 <= bulk <= MAX_BULK_ID:
            return Problem(
                code="malformed_bulk_id",
                text=f"`{_shown(word)}` is not a bulk id (a whole number from 1 to {MAX_BULK_ID:,}).",
            )
        if bulk in ids:
            return Problem(code="duplicate_bulk_id", text=f"Bulk {bulk} is named twice.")
        ids.append(bulk)
    return WatchCommand(club=club, import_id=import_id, bulk_ids=tuple(ids))


def usage(command: str) -> str:
    return f"Try `{command} help`."


def help_text(command: str) -> str:
    return "\n".join(
        [
            "*Watch MPC member imports from this channel*",
            f"`{command} <club> <import id>` — watch the whole import; its card appears here",
            f"`{command} <club> <import id> <bulk id> [bulk id…]` — only those bulks",
            f"`{command} list` — this channel's active watches",
            f"`{command} stop <watch id>` — stop one",
            "The card's buttons stop the watch, poll MPC now (never faster than MPC allows) and mute "
            "the progress replies. A club can be watched only from the channels an admin allowed for it.",
        ]
    )


# ---------------------------------------------------------------------------- answers


def ephemeral(text: str) -> dict[str, Any]:
    """An answer only the person who asked sees (it does not replace the card when clicked)."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def watching_text(
    watch_id: str, club: str, import_id: str, bulk_ids: Sequence[int] | None, created: bool
) -> str:
    what = f"bulks {', '.join(str(b) for b in bulk_ids)} of" if bulk_ids else "the whole import"
    if not created:
        return f"Already watching {what} `{club}` / `{import_id}` here: watch `{watch_id}`."
    return (
        f"👀 Watching {what} `{club}` / `{import_id}`: watch `{watch_id}`. "
        "Its card appears in this channel at the first change."
    )


def list_text(lines: Sequence[str], total: int, command: str) -> str:
    if not lines:
        return f"No active watch posts to this channel. Start one with `{command} <club> <import id>`."
    shown = "\n".join(f"• {line}" for line in lines[:LIST_SHOWN])
    more = f"\n…and {total - LIST_SHOWN:,} more" if total > LIST_SHOWN else ""
    return f"*Active watches in this channel* ({total:,})\n{shown}{more}"


def done_line(action: ActionName, user: str) -> str:
    return DONE_LINES[action].format(user=user)


# ---------------------------------------------------------------------------- the card's buttons


def card_actions(watch_id: str, *, muted: bool) -> ActionsBlock:
    """The buttons of an active watch's card; each carries the watch id as its value."""
    stop = ButtonElement(
        text=PlainTextObject(text="Stop watching"),
        action_id=ACTION_STOP,
        value=watch_id,
        style="danger",
        confirm=ConfirmObject(
            title=PlainTextObject(text="Stop watching?"),
            text=MarkdownTextObject(text=f"The bridge stops polling for watch `{watch_id}`."),
            confirm=PlainTextObject(text="Stop"),
            deny=PlainTextObject(text="Keep watching"),
        ),
    )
    refresh = ButtonElement(
        text=PlainTextObject(text="Refresh now"), action_id=ACTION_REFRESH, value=watch_id
    )
    mute = ButtonElement(
        text=PlainTextObject(text="Unmute progress" if muted else "Mute progress"),
        action_id=ACTION_UNMUTE if muted else ACTION_MUTE,
        value=watch_id,
    )
    return ActionsBlock(block_id=CARD_ACTIONS_BLOCK_ID, elements=[stop, refresh, mute])


# ---------------------------------------------------------------------------- interactive payloads


class _Id(msgspec.Struct, kw_only=True):
    id: str = ""


class _User(msgspec.Struct, kw_only=True):
    id: str = ""
    username: str = ""


class _Action(msgspec.Struct, kw_only=True):
    action_id: str = ""
    value: str = ""


class _Payload(msgspec.Struct, kw_only=True):
    type: str
    user: _User = msgspec.field(default_factory=_User)
    channel: _Id = msgspec.field(default_factory=_Id)
    response_url: str = ""
    actions: list[_Action] = msgspec.field(default_factory=list)


class Click(msgspec.Struct, frozen=True, kw_only=True):
    """One button clicked on a card."""

    action: ActionName
    watch_id: str
    user: str
    channel: str
    response_url: str


_payload_decoder: Final = msgspec.json.Decoder(_Payload)
_SLACK_ID_RE: Final = re.compile(r"[A-Z0-9]{2,32}")
_MAX_URL_CHARS: Final = 2048


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in the JSON ``raw`` nest deeper than ``limit`` (strings skipped)."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def parse_click(raw: bytes | str) -> Click | Problem:
    """The button click in an interactive payload (the ``payload`` field, JSON), or why not."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_PAYLOAD_BYTES:
        return Problem(code="too_large", text="The payload is too large.")
    if nests_deeper_than(data, MAX_PAYLOAD_DEPTH):
        return Problem(code="too_deep", text="The payload nests too deeply.")
    try:
        payload = _payload_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError) as exc:
        return Problem(code="malformed", text=f"Not an interactive payload: {str(exc)[:120]}")
    if payload.type != "block_actions":
        return Problem(
            code="unsupported", text=f"The bridge does not handle `{_shown(payload.type)}` payloads."
        )
    if len(payload.actions) != 1:
        return Problem(code="malformed", text="Expected exactly one action.")
    action = payload.actions[0]
    name = ACTION_NAMES.get(action.action_id)
    if name is None:
        return Problem(code="unsupported", text=f"Unknown action `{_shown(action.action_id)}`.")
    if not WATCH_ID_RE.fullmatch(action.value):
        return Problem(code="malformed_watch_id", text="The button does not name a watch.")
    if not _SLACK_ID_RE.fullmatch(payload.user.id) or not _SLACK_ID_RE.fullmatch(payload.channel.id):
        return Problem(code="malformed", text="The click names no user or channel.")
    if len(payload.response_url) > _MAX_URL_CHARS:
        return Problem(code="malformed", text="The response URL is too long.")
    return Click(
        action=name,
        watch_id=action.value,
        user=payload.user.id,
        channel=payload.channel.id,
        response_url=payload.response_url,
    )
