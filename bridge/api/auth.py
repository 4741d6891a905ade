"""Bearer API keys (``BRIDGE_API_KEYS``), compared in constant time."""

from __future__ import annotations

import hmac
from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from bridge.api.errors import ApiError

SECURITY_SCHEME: Final = "BearerApiKey"
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="mpc-import-bridge"'}


def key_matches(presented: bytes, accepted: tuple[bytes, ...]) -> bool:
    """Whether ``presented`` is one of ``accepted``; every key is compared, whatever matches."""
    found = False
    for key in accepted:
        found |= hmac.compare_digest(presented, key)
    return found


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    # A coroutine on purpose: Litestar runs a plain function guard in its thread pool, a thread
    # hop (and GIL contention) on every /v1 request for a check of a few microseconds.
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    accepted: tuple[bytes, ...] = connection.app.state.api_keys
    if scheme.lower() != "bearer" or not token.strip() or not key_matches(token.strip().encode(), accepted):
        raise ApiError(401, "unauthorized", "missing or invalid API key", headers=_CHALLENGE)
