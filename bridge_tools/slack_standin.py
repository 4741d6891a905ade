"""A local Slack stand-in: the Web API methods the bridge calls and incoming webhooks, over HTTP.

For tests and ``make demo``: point ``BRIDGE_SLACK_API_URL`` at ``{url}/api/`` (and
``BRIDGE_SLACK_WEBHOOK_URL`` at ``{url}/services/T0/B0/anything``). It answers as Slack does —
HTTP 200 with ``{"ok": false, "error": ...}`` for refusals, 429 with ``Retry-After`` when rate
limited — keeps every message with its edits and thread replies, records every call, and checks
every payload with ``slack_sdk.models`` and Slack's documented limits.

Web API (``POST /api/<method>``, JSON or form body, ``Authorization: Bearer <token>``)::

    auth.test  chat.postMessage  chat.update  chat.delete
    apps.connections.open        (the app-level token) a Socket Mode URL on this stand-in

Incoming webhook: ``POST /services/<anything>`` with a JSON body; answers ``ok``.

Slack's other direction, as Slack does it: :func:`signed` signs a body with an app's signing
secret, :func:`command_body` and :func:`click_body` build a slash command and a button click
whose ``response_url`` points here (``POST /responses/<ref>``, kept in ``.responses``), and
:meth:`SlackStandin.socket_request` sends either over Socket Mode (``GET /socket-mode``, a
WebSocket) and waits for the app's acknowledgement.

Control (no auth)::

    GET  /_control/health
    GET  /_control/calls                 every call: method, payload, status, answer, problems
    GET  /_control/messages              top-level messages, each with "replies"; "webhook" posts
    POST /_control/faults                {"method"?, "status"?, "error"?, "retry_after"?,
                                          "delay_s"?, "count"?}
    POST /_control/channels              {"channel", "error": "not_in_channel" | null}
    POST /_control/reset

In-process: ``running = await start(token="xoxb-test")`` then ``running.slack`` is the
:class:`SlackStandin` (``.cards()``, ``.replies()``, ``.inject()``...). As a process:
``python -m bridge_tools.slack_standin --port 0`` prints ``READY slack-standin <url>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import secrets
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any, Final, Self
from urllib.parse import parse_qsl, urlencode

import click
import msgspec
from aiohttp import web

from bridge_tools.processes import LOOPBACK

READY_PREFIX: Final = "READY slack-standin"
TOKEN_PREFIX: Final = "TOKEN"  # noqa: S105 - the banner's label, not a token
API_PATH: Final = "/api/"
WEBHOOK_PATH: Final = "/services/"
RESPONSES_PATH: Final = "/responses/"
SOCKET_PATH: Final = "/socket-mode"
LISTEN_BACKLOG: Final = 128

# Slack's documented limits (docs.slack.dev/reference/block-kit/blocks, chat.postMessage), kept
# apart from the bridge's own constants on purpose: the stand-in checks, it does not agree.
LIMIT_BLOCKS: Final = 50
LIMIT_SECTION_TEXT: Final = 3000
LIMIT_SECTION_FIELDS: Final = 10
LIMIT_FIELD_TEXT: Final = 2000
LIMIT_HEADER_TEXT: Final = 150
LIMIT_CONTEXT_ELEMENTS: Final = 10
LIMIT_MESSAGE_TEXT: Final = 40_000
LIMIT_BLOCK_ID: Final = 255

ERROR_STATUS_TEXT: Final = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "no_service",
    410: "channel_is_archived",
}


def _units(text: str) -> int:
    """Characters as UTF-16 code units: the stricter way to count."""
    return len(text.encode("utf-16-le")) // 2


def _text_object(value: Any, where: str, *, plain_only: bool = False) -> tuple[list[str], str]:
    if not isinstance(value, dict) or value.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: not a plain_text or mrkdwn text object"], ""
    problems = []
    if plain_only and value["type"] != "plain_text":
        problems.append(f"{where}: must be plain_text")
    text = value.get("text")
    if not isinstance(text, str) or not text.strip():
        return [*problems, f"{where}: empty text"], ""
    return problems, text


def _block_limits(raw: Mapping[str, Any]) -> list[str]:
    """Slack's limits on one block (slack_sdk checks some of them; this checks all we rely on)."""
    problems: list[str] = []
    kind = raw.get("type")
    block_id = raw.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or _units(block_id) > LIMIT_BLOCK_ID):
        problems.append(f"block_id longer than {LIMIT_BLOCK_ID}")
    if kind == "header":
        found, text = _text_object(raw.get("text"), "header text", plain_only=True)
        problems += found
        if _units(text) > LIMIT_HEADER_TEXT:
            problems.append(f"header text has {_units(text)} characters (> {LIMIT_HEADER_TEXT})")
    elif kind == "section":
        if "text" not in raw and "fields" not in raw:
            problems.append("section without text or fields")
        if "text" in raw:
            found, text = _text_object(raw["text"], "section text")
            problems += found
            if _units(text) > LIMIT_SECTION_TEXT:
                problems.append(f"section text has {_units(text)} characters (> {LIMIT_SECTION_TEXT})")
        fields = raw.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > LIMIT_SECTION_FIELDS:
                problems.append(f"section fields: a list of at most {LIMIT_SECTION_FIELDS}")
            else:
                for index, field in enumerate(fields):
                    found, text = _text_object(field, f"field {index}")
                    problems += found
                    if _units(text) > LIMIT_FIELD_TEXT:
                        problems.append(f"field {index} has {_units(text)} characters (> {LIMIT_FIELD_TEXT})")
    elif kind == "context":
        elements = raw.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= LIMIT_CONTEXT_ELEMENTS:
            problems.append(f"context needs 1 to {LIMIT_CONTEXT_ELEMENTS} elements")
    return problems


def validate_blocks(blocks: Any) -> list[str]:
    """Why Slack would refuse these blocks (empty: it would not).

    Each block must pass Slack's limits, parse with ``slack_sdk.models`` and serialise back to
    exactly what was sent (an unknown or misspelt attribute is silently dropped by the models).
    """
    from slack_sdk.errors import SlackObjectFormationError
    from slack_sdk.models.blocks import Block

    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return ["blocks is not a list"]
    problems = []
    if len(blocks) > LIMIT_BLOCKS:
        problems.append(f"{len(blocks)} blocks (> {LIMIT_BLOCKS})")
    quiet = logging.getLogger("slack_sdk.models")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # unknown attributes are reported below, not logged
    try:
        for index, raw in enumerate(blocks):
            where = f"block {index}"
            if not isinstance(raw, dict):
                problems.append(f"{where}: not an object")
                continue
            problems += [f"{where} ({raw.get('type')}): {p}" for p in _block_limits(raw)]
            try:
                block = Block.parse(raw)
                again = block.to_dict() if block is not None else None
            except (SlackObjectFormationError, TypeError, ValueError, KeyError) as exc:
                problems.append(f"{where} ({raw.get('type')}): slack_sdk.models: {exc}")
                continue
            if again is None:
                problems.append(f"{where}: unknown block type {raw.get('type')!r}")
            elif again != raw:
                problems.append(f"{where} ({raw.get('type')}): not read back unchanged by slack_sdk.models")
    finally:
        quiet.setLevel(level)
    return problems


def validate_message(payload: Mapping[str, Any]) -> list[str]:
    """Problems with a message: its blocks, a missing fallback ``text``, its size."""
    problems = validate_blocks(payload.get("blocks"))
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        problems.append("text is not a string")
    elif isinstance(text, str) and _units(text) > LIMIT_MESSAGE_TEXT:
        problems.append(f"text has {_units(text)} characters (> {LIMIT_MESSAGE_TEXT})")
    if payload.get("blocks") and not (isinstance(text, str) and text.strip()):
        problems.append("blocks without a fallback text")
    return problems


# ---------------------------------------------------------------------------- state


class Fault(msgspec.Struct, kw_only=True):
    """What the next matching call(s) get instead of (or before) a normal answer."""

    method: str | None = None
    """``chat.postMessage``, ``chat.update``, ``webhook``...; ``None`` matches every call."""
    status: int = 200
    """429 (with ``retry_after``), 5xx, or 200 with ``error`` (Slack's ``ok: false``)."""
    error: str | None = None
    retry_after: float | None = None
    delay_s: float = 0.0
    """Answer this much later (alone: a slow but normal answer)."""
    count: int = 1


class Message(msgspec.Struct, kw_only=True):
    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[Any]
    reply_broadcast: bool = False
    update_count: int = 0
    history: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """Earlier versions (``text``, ``blocks``), oldest first."""
    deleted: bool = False


class Call(msgspec.Struct, kw_only=True):
    seq: int
    at: float
    method: str
    payload: dict[str, Any]
    http_status: int = 200
    response: Any = None
    problems: list[str] = msgspec.field(default_factory=list)


class SlackStandin:
    """The stand-in's state and answers (the aiohttp app routes to these)."""

    def __init__(self, token: str, app_token: str | None = None) -> None:
        self.token = token
        self.app_token = app_token
        self.url = ""
        """Where it listens, once started (Socket Mode URLs and ``response_url`` point here)."""
        self.responses: list[dict[str, Any]] = []
        """What apps posted to a ``response_url``, each with its ``ref``."""
        self.sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.webhook_posts: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.channel_errors: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._seq = itertools.count(1)
        self._ts = itertools.count(1)

    # ------------------------------------------------------------------ views

    def cards(self, channel: str | None = None) -> list[Message]:
        """Top-level messages (not deleted), in posting order."""
        return [
            m
            for m in self.messages.values()
            if m.thread_ts is None
            and not m.deleted
            and (channel is None or m.channel == self.channel_id(channel))
        ]

    def replies(self, card: Message) -> list[Message]:
        return [m for m in self.messages.values() if m.thread_ts == card.ts and m.channel == card.channel]

    def orphans(self) -> list[Message]:
        tops = {(m.channel, m.ts) for m in self.messages.values() if m.thread_ts is None}
        return [
            m
            for m in self.messages.values()
            if m.thread_ts is not None and (m.channel, m.thread_ts) not in tops
        ]

    def problems(self) -> list[str]:
        return [f"#{c.seq} {c.method}: {p}" for c in self.calls for p in c.problems]

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def view(self) -> dict[str, Any]:
        cards = []
        for card in self.cards():
            cards.append({**msgspec.to_builtins(card), "replies": msgspec.to_builtins(self.replies(card))})
        return {
            "messages": cards,
            "orphan_replies": msgspec.to_builtins(self.orphans()),
            "webhook": self.webhook_posts,
        }

    # ------------------------------------------------------------------ control

    def inject(self, **fields: Any) -> Fault:
        fault = msgspec.convert(fields, Fault)
        self.faults.append(fault)
        return fault

    def set_channel_error(self, channel: str, error: str | None) -> None:
        cid = self.channel_id(channel)
        if error is None:
            self.channel_errors.pop(cid, None)
        else:
            self.channel_errors[cid] = error

    def reset(self) -> None:
        self.responses.clear()
        self.calls.clear()
        self.messages.clear()
        self.webhook_posts.clear()
        self.faults.clear()
        self.channel_errors.clear()

    # ------------------------------------------------------------------ answers

    def channel_id(self, channel: str) -> str:
        """Slack answers with channel ids: a ``#name`` gets a stable made-up one."""
        if not channel.startswith("#"):
            return channel
        return self._names.setdefault(channel, f"CSTAND{len(self._names) + 1:05d}")

    def _fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and fault.method in (None, method):
                fault.count -= 1
                return fault
        return None

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _record(self, method: str, payload: dict[str, Any]) -> Call:
        shown = {k: v for k, v in payload.items() if k != "token"}
        call = Call(seq=next(self._seq), at=time.time(), method=method, payload=shown)
        self.calls.append(call)
        return call

    async def call_api(self, method: str, payload: dict[str, Any], authorization: str | None) -> web.Response:
        call = self._record(method, payload)
        fault = self._fault(method)
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.status != 200:
            return self._failure(call, fault)
        given = (
            authorization[len("Bearer ") :] if authorization and authorization.startswith("Bearer ") else None
        )
        given = given or payload.get("token")
        if not given:
            return self._answer(call, {"ok": False, "error": "not_authed"})
        if method == "apps.connections.open":
            if self.app_token is None or not secrets.compare_digest(str(given), self.app_token):
                return self._answer(call, {"ok": False, "error": "invalid_auth"})
            ws = "ws" + self.url.removeprefix("http") + SOCKET_PATH
            return self._answer(call, {"ok": True, "url": ws})
        if not secrets.compare_digest(str(given), self.token):
            return self._answer(call, {"ok": False, "error": "invalid_auth"})
        if fault is not None and fault.error:
            return self._answer(call, {"ok": False, "error": fault.error})
        handler = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.delete": self._delete,
        }.get(method)
        if handler is None:
            return self._answer(call, {"ok": False, "error": "unknown_method"})
        return self._answer(call, handler(payload, call))

    def _failure(self, call: Call, fault: Fault) -> web.Response:
        call.http_status = fault.status
        headers = {}
        if fault.status == 429:
            call.response = {"ok": False, "error": "ratelimited"}
            headers["Retry-After"] = str(int(fault.retry_after if fault.retry_after is not None else 1))
            return web.json_response(call.response, status=429, headers=headers)
        call.response = fault.error or "server error"
        return web.Response(status=fault.status, text=str(call.response))

    def _answer(self, call: Call, body: dict[str, Any]) -> web.Response:
        call.response = body
        return web.json_response(body)

    def _auth_test(self, payload: dict[str, Any], call: Call) -> dict[str, Any]:
        return {"ok": True, "url": "http://slack-standin.invalid/", "team": "Stand-in", "user": "bridge-bot",
                "team_id": "T0STANDIN", "user_id": "U0BRIDGE", "bot_id": "B0BRIDGE"}  # fmt: skip

    def _checked(self, payload: dict[str, Any], call: Call) -> dict[str, Any] | None:
        """Slack refuses invalid blocks; a missing fallback text it only warns about (recorded)."""
        call.problems = validate_message(payload)
        if not payload.get("text") and not payload.get("blocks"):
            return {"ok": False, "error": "no_text"}
        refused = validate_blocks(payload.get("blocks"))
        if refused:
            return {"ok": False, "error": "invalid_blocks", "errors": refused}
        return None

    def _post(self, payload: dict[str, Any], call: Call) -> dict[str, Any]:
        channel = payload.get("channel")
        if not isinstance(channel, str) or not channel:
            return {"ok": False, "error": "channel_not_found"}
        cid = self.channel_id(channel)
        if cid in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[cid]}
        refused = self._checked(payload, call)
        if refused is not None:
            return refused
        thread_ts = payload.get("thread_ts") or None
        if thread_ts is not None:
            parent = self.messages.get((cid, str(thread_ts)))
            if parent is None or parent.deleted or parent.thread_ts is not None:
                return {"ok": False, "error": "thread_not_found"}
        message = Message(
            channel=cid,
            ts=self._next_ts(),
            thread_ts=None if thread_ts is None else str(thread_ts),
            text=str(payload.get("text") or ""),
            blocks=list(payload.get("blocks") or []),
            reply_broadcast=str(payload.get("reply_broadcast")).lower() in ("true", "1"),
        )
        self.messages[(cid, message.ts)] = message
        return {
            "ok": True,
            "channel": cid,
            "ts": message.ts,
            "message": {"text": message.text, "ts": message.ts},
        }

    def _update(self, payload: dict[str, Any], call: Call) -> dict[str, Any]:
        cid = self.channel_id(str(payload.get("channel") or ""))
        if cid in self.channel_errors:
            return {"ok": False, "error": self.channel_errors[cid]}
        message = self.messages.get((cid, str(payload.get("ts"))))
        if message is None or message.deleted:
            return {"ok": False, "error": "message_not_found"}
        merged = {"text": message.text, "blocks": message.blocks}
        merged.update({k: payload[k] for k in ("text", "blocks") if k in payload})
        refused = self._checked(merged, call)
        if refused is not None:
            return refused
        message.history.append({"text": message.text, "blocks": message.blocks})
        message.text = str(merged["text"] or "")
        message.blocks = list(merged["blocks"] or [])
        message.update_count += 1
        return {"ok": True, "channel": cid, "ts": message.ts, "text": message.text}

    def _delete(self, payload: dict[str, Any], call: Call) -> dict[str, Any]:
        cid = self.channel_id(str(payload.get("channel") or ""))
        message = self.messages.get((cid, str(payload.get("ts"))))
        if message is None or message.deleted:
            return {"ok": False, "error": "message_not_found"}
        message.deleted = True
        return {"ok": True, "channel": cid, "ts": message.ts}

    # ------------------------------------------------------------------ Slack to the app

    def response_url(self, ref: str | None = None) -> str:
        return f"{self.url}{RESPONSES_PATH}{ref or secrets.token_hex(6)}"

    async def socket_request(
        self, kind: str, payload: dict[str, Any], timeout_s: float = 5.0
    ) -> dict[str, Any]:
        """Send ``payload`` as Slack's Socket Mode does (``kind``: ``slash_commands`` or
        ``interactive``) to the connected app; its acknowledgement (``envelope_id``, ``payload``)."""
        deadline = time.monotonic() + timeout_s
        while not self.sockets and time.monotonic() < deadline:  # noqa: ASYNC110 - a test helper polling
            await asyncio.sleep(0.02)
        if not self.sockets:
            raise TimeoutError("no app connected over Socket Mode")
        envelope_id = secrets.token_hex(8)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = waiter
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind == "slash_commands",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        await self.sockets[-1].send_json(envelope)
        try:
            return await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
        finally:
            self._acks.pop(envelope_id, None)

    def _acked(self, message: Any) -> None:
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        waiter = self._acks.get(str(envelope_id))
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    async def webhook(self, path: str, payload: dict[str, Any]) -> web.Response:
        call = self._record("webhook", {**payload, "hook": path})
        fault = self._fault("webhook")
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.status != 200:
            if fault.status == 429:
                return self._failure(call, fault)
            call.http_status = fault.status
            call.response = fault.error or ERROR_STATUS_TEXT.get(fault.status, "server error")
            return web.Response(status=fault.status, text=call.response)
        call.problems = validate_message(payload)
        if not payload.get("text") and not payload.get("blocks"):
            call.http_status, call.response = 400, "no_text"
        elif validate_blocks(payload.get("blocks")):
            call.http_status, call.response = 400, "invalid_blocks"
        else:
            call.response = "ok"
            self.webhook_posts.append(
                {"hook": path, "text": payload.get("text"), "blocks": payload.get("blocks")}
            )
        return web.Response(status=call.http_status, text=call.response)


# ---------------------------------------------------------------------------- HTTP


STANDIN_KEY: Final = web.AppKey("slack_standin", SlackStandin)


async def _payload(request: web.Request) -> dict[str, Any]:
    """JSON or form body merged over the query, as Slack reads it (``blocks`` may be a JSON string)."""
    payload: dict[str, Any] = dict(request.query)
    raw = await request.read()
    if raw:
        if request.content_type == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise web.HTTPBadRequest(text="invalid_json")
            payload.update(body)
        else:
            payload.update(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
    for key in ("blocks",):
        if isinstance(payload.get(key), str):
            try:
                payload[key] = json.loads(payload[key])
            except ValueError:
                payload[key] = None
    return payload


def create_app(standin: SlackStandin) -> web.Application:
    app = web.Application()
    app[STANDIN_KEY] = standin

    async def api(request: web.Request) -> web.StreamResponse:
        return await standin.call_api(
            request.match_info["method"], await _payload(request), request.headers.get("Authorization")
        )

    async def hook(request: web.Request) -> web.StreamResponse:
        payload = await _payload(request)
        if isinstance(payload.get("payload"), str):  # the legacy form-encoded style
            payload = json.loads(payload["payload"])
        return await standin.webhook(request.match_info["path"], payload)

    async def calls(_: web.Request) -> web.StreamResponse:
        return web.json_response(msgspec.to_builtins(standin.calls))

    async def messages(_: web.Request) -> web.StreamResponse:
        return web.json_response(standin.view())

    async def faults(request: web.Request) -> web.StreamResponse:
        try:
            fault = standin.inject(**await request.json())
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(msgspec.to_builtins(fault), status=201)

    async def channels(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        standin.set_channel_error(str(body["channel"]), body.get("error"))
        return web.json_response({"channel": body["channel"], "error": body.get("error")})

    async def response(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        standin.responses.append({"ref": request.match_info["ref"], **body})
        return web.Response(text="ok")

    async def socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        standin.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(standin.sockets)})
        try:
            async for message in ws:
                if message.type == web.WSMsgType.TEXT:
                    standin._acked(json.loads(message.data))
        finally:
            standin.sockets.remove(ws)
        return ws

    async def reset(_: web.Request) -> web.StreamResponse:
        standin.reset()
        return web.Response(status=204)

    async def health(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "calls": len(standin.calls)})

    app.add_routes(
        [
            web.post(API_PATH + "{method}", api),
            web.get(API_PATH + "{method}", api),
            web.post(WEBHOOK_PATH + "{path:.+}", hook),
            web.post(RESPONSES_PATH + "{ref}", response),
            web.get(SOCKET_PATH, socket),
            web.get("/_control/health", health),
            web.get("/_control/calls", calls),
            web.get("/_control/messages", messages),
            web.post("/_control/faults", faults),
            web.post("/_control/channels", channels),
            web.post("/_control/reset", reset),
        ]
    )
    return app


class RunningStandin:
    def __init__(self, runner: web.AppRunner, standin: SlackStandin, url: str) -> None:
        self._runner = runner
        self.slack = standin
        self.url = url
        """``http://127.0.0.1:PORT``."""

    @property
    def api_url(self) -> str:
        """What ``BRIDGE_SLACK_API_URL`` should be (with the trailing slash slack_sdk needs)."""
        return self.url + API_PATH

    def webhook_url(self, name: str = "T0/B0/standin") -> str:
        return self.url + WEBHOOK_PATH + name

    async def stop(self) -> None:
        for ws in list(self.slack.sockets):
            await ws.close()
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start(
    token: str, host: str = LOOPBACK, port: int = 0, app_token: str | None = None
) -> RunningStandin:
    """Start a stand-in in this event loop (``port=0``: a free port)."""
    standin = SlackStandin(token, app_token)
    runner = web.AppRunner(create_app(standin), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        await web.SockSite(runner, sock).start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    bound_host, bound_port = sock.getsockname()[:2]
    standin.url = f"http://{bound_host}:{bound_port}"
    return RunningStandin(runner, standin, standin.url)


# ---------------------------------------------------------------------------- signing, as Slack


def signed(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with ``body``: ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def command_fields(
    text: str, *, command: str = "/mpc-watch", channel: str = "C0SLACKTEST", user: str = "U0PERSON",
    response_url: str = "",
) -> dict[str, str]:  # fmt: skip
    """A slash command's fields, as Slack sends them (form fields, or a Socket Mode payload)."""
    return {
        "token": "deprecated-verification-token",
        "team_id": "T0STANDIN",
        "team_domain": "standin",
        "channel_id": channel,
        "channel_name": "imports",
        "user_id": user,
        "user_name": "person",
        "command": command,
        "text": text,
        "api_app_id": "A0BRIDGE",
        "response_url": response_url,
        "trigger_id": secrets.token_hex(8),
    }


def click_payload(
    action_id: str, watch_id: str, *, channel: str = "C0SLACKTEST", user: str = "U0PERSON",
    response_url: str = "", message_ts: str = "",
) -> dict[str, Any]:  # fmt: skip
    """A ``block_actions`` payload: one button of a message clicked."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": "person", "team_id": "T0STANDIN"},
        "api_app_id": "A0BRIDGE",
        "team": {"id": "T0STANDIN", "domain": "standin"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel, "name": "imports"},
        "message": {"ts": message_ts},
        "response_url": response_url,
        "trigger_id": secrets.token_hex(8),
        "actions": [
            {"type": "button", "action_id": action_id, "block_id": "bridge_card_actions", "value": watch_id,
             "action_ts": f"{time.time():.6f}"}
        ],
    }  # fmt: skip


def command_body(text: str, **fields: Any) -> bytes:
    return urlencode(command_fields(text, **fields)).encode()


def click_body(action_id: str, watch_id: str, **fields: Any) -> bytes:
    return urlencode({"payload": json.dumps(click_payload(action_id, watch_id, **fields))}).encode()


# ---------------------------------------------------------------------------- as a process


async def _serve(host: str, port: int, token: str, show_token: bool) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    running = await start(token, host, port)
    try:
        lines = [f"{READY_PREFIX} {running.url}"]
        if show_token:
            lines.append(f"{TOKEN_PREFIX} {token}")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        await stopping.wait()
    finally:
        await running.stop()


@click.command()
@click.option("--host", default=LOOPBACK, show_default=True)
@click.option("--port", default=0, show_default=True, type=int, help="0 picks a free port.")
@click.option("--token", default=None, help="The bot token to accept (default: a new one, printed).")
def main(host: str, port: int, token: str | None) -> None:
    """Run the Slack stand-in until SIGTERM or Ctrl-C."""
    given = token is not None
    asyncio.run(_serve(host, port, token or "xoxb-standin-" + secrets.token_hex(12), show_token=not given))


if __name__ == "__main__":
    main()
