"""Console sign-ins: a random session id in a cookie, the session itself in Redis with an expiry.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
it) and ``Secure`` when the console is reached over https; only the SHA-256 of its value names
the Redis key, so a copy of the database holds no usable session. Each session carries a CSRF
token that every state-changing request must echo (a form field or the ``X-CSRF-Token`` header);
the sign-in form, before there is a session, is protected the same way by a short-lived
double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Final

import msgspec

from bridge.api.auth import Principal
from bridge.store import keys

SESSION_COOKIE: Final = "bridge_console"
SIGN_IN_COOKIE: Final = "bridge_console_signin"
"""The sign-in form's double-submit CSRF cookie."""
COOKIE_PATH: Final = "/ui"
TOKEN_BYTES: Final = 32
SIGN_IN_TOKEN_S: Final = 3600
"""How long a sign-in form stays usable."""
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"


class Session(msgspec.Struct, kw_only=True, frozen=True):
    principal: Principal
    csrf: str
    created_at: float
    expires_at: float


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(Session)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _key(session_id: str) -> str:
    return keys.console_session(hashlib.sha256(session_id.encode()).hexdigest())


def tokens_match(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


class SessionStore:
    """Sessions in Redis, each under a key that expires with it."""

    def __init__(self, redis: Any, *, lifetime_s: float) -> None:
        self.redis = redis
        self.lifetime_s = lifetime_s

    async def start(self, principal: Principal) -> tuple[str, Session]:
        """A new session for ``principal``: its id (the cookie's value) and the session."""
        session_id, now = new_token(), time.time()
        session = Session(
            principal=principal, csrf=new_token(), created_at=now, expires_at=now + self.lifetime_s
        )
        await self.redis.set(_key(session_id), _encoder.encode(session), px=int(self.lifetime_s * 1000))
        return session_id, session

    async def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 2 * TOKEN_BYTES:
            return None
        raw = await self.redis.get(_key(session_id))
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # written by another version: sign in again

    async def end(self, session_id: str | None) -> None:
        if session_id:
            await self.redis.delete(_key(session_id))
