"""The request class: JSON bodies nested too deeply are refused before they are parsed.

Parsing thousands of nested arrays ends in a RecursionError deep inside the decoder; refusing
them up front keeps that (and its cost) out of the process. Bodies are at most 64 kB, so the
scan is cheap.
"""

from __future__ import annotations

import re
from typing import Any, Final

from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_DEPTH: Final = 32
"""Deepest nesting accepted in a request body (the API's own bodies need 3)."""
_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_OPEN: Final = frozenset(b"[{")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``body`` nest deeper than ``limit`` (strings are skipped)."""
    depth = 0
    for token in _TOKENS.finditer(body):
        char = token.group()[0]
        if char in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif char != 0x22:  # a closing bracket; strings start with a quote
            depth -= 1
    return False


def is_utf8(body: bytes) -> bool:
    """Whether ``body`` is valid UTF-8 (JSON must be, RFC 8259 section 8.1)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class BridgeRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if not is_json_media_type(self.headers.get("content-type", "")):
            raise HTTPException(status_code=415, detail="unsupported media type: send application/json")
        body = await self.body()
        if json_depth_exceeds(body):
            raise ClientException(f"JSON is malformed: nested deeper than {MAX_JSON_DEPTH} levels")
        if not is_utf8(body):
            # msgspec raises UnicodeDecodeError (not a DecodeError) for bad bytes inside a string.
            raise ClientException("JSON is malformed: the body is not UTF-8")
        return await super().json()


class AllowHeaderMiddleware(ASGIMiddleware):
    """Answers ``OPTIONS`` with every method of the route in ``Allow``.

    Litestar 2.25 builds the automatic OPTIONS handler from the first handler registered on a
    path, so a path with GET and POST would advertise only one of them.
    """

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method") != "OPTIONS":
            await next_app(scope, receive, send)
            return
        methods = _route_methods(scope)

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                headers.append((b"allow", ", ".join(sorted(methods)).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await next_app(scope, receive, send_with_allow)


def _route_methods(scope: Scope) -> set[str]:
    template = scope.get("path_template")
    for route in scope["litestar_app"].routes:
        if isinstance(route, HTTPRoute) and template in (route.path, route.path_format):
            return set(route.methods)
    return set()
