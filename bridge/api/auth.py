"""Who is asking: a bearer key becomes a :class:`Principal`, or the request is refused (401).

Admin keys come from ``BRIDGE_API_KEYS`` and see and change everything. The principal of a
request is on ``connection.state.principal`` (guard :func:`require_api_key`) and reaches routes
as the ``principal`` dependency; every check of what it may see or change goes through its
methods, so a scope that does not cover a request is a refusal, never a fallback.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final, Literal, TypeAlias

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler

from bridge.api.errors import ApiError

SECURITY_SCHEME: Final = "BearerApiKey"
ADMIN_KEY_ID_PREFIX: Final = "admin_"
ADMIN_KEY_ID_HEX: Final = 8
"""An admin key's id is a short digest of the key: it names the key in logs and ``created_by``
without revealing it."""
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="mpc-import-bridge"'}

Role = Literal["admin", "editor", "viewer"]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The key behind a request and what it may do."""

    key_id: str
    role: Role
    clubs: frozenset[str] | None = None
    """The clubs it is limited to; ``None``: every club (admin keys)."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees(self, club: str) -> bool:
        """Whether this key may read the club's resources."""
        return self.clubs is None or club in self.clubs

    def may_change(self, club: str) -> bool:
        """Whether this key may change the club's resources."""
        return self.sees(club) and self.role != "viewer"


def admin_key_id(key: bytes) -> str:
    return ADMIN_KEY_ID_PREFIX + hashlib.sha256(key).hexdigest()[:ADMIN_KEY_ID_HEX]


def key_matches(presented: bytes, accepted: tuple[bytes, ...]) -> bytes | None:
    """The accepted key ``presented`` is, if any; every key is compared, whatever matches."""
    found: bytes | None = None
    for key in accepted:
        if hmac.compare_digest(presented, key):
            found = key
    return found


class KeyRing:
    """Turns a presented bearer key into its :class:`Principal` (``None``: no such key)."""

    def __init__(self, admin_keys: tuple[bytes, ...]) -> None:
        self._admin_keys = admin_keys
        self._admin_ids = {key: admin_key_id(key) for key in admin_keys}

    async def resolve(self, presented: str) -> Principal | None:
        token = presented.strip().encode()
        if not token:
            return None
        admin = key_matches(token, self._admin_keys)
        if admin is not None:
            return Principal(key_id=self._admin_ids[admin], role="admin")
        return None


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    # A coroutine on purpose: Litestar runs a plain function guard in its thread pool, a thread
    # hop (and GIL contention) on every /v1 request for a check of a few microseconds.
    keyring: KeyRing = connection.app.state.keyring
    principal = await keyring.resolve(bearer_token(connection))
    if principal is None:
        raise ApiError(401, "unauthorized", "missing or invalid API key", headers=_CHALLENGE)
    connection.state.principal = principal


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The ``principal`` dependency: set by :func:`require_api_key` on every ``/v1`` route."""
    principal: Principal = request.state.principal
    return principal


PrincipalDep: TypeAlias = NamedDependency[Principal]
