"""Who is asking: a bearer key becomes a :class:`Principal`, or the request is refused (401).

Admin keys come from ``BRIDGE_API_KEYS`` and see and change everything. Managed keys (``bk_...``,
:mod:`bridge.store.apikeys`) are limited to some clubs, as an ``editor`` or a ``viewer``. The
principal of a request is on ``connection.state.principal`` (guard :func:`require_api_key`) and
reaches routes as the ``principal`` dependency; every check of what it may see or change goes
through its ``check_*`` methods, so a scope that does not cover a request is a refusal, never a
fallback:

- another club's resource is a 404, as if it did not exist (its id tells a stranger nothing);
- creating something for a club the key does not hold is a 403 ``forbidden_club``;
- a viewer's write, and a club key on an admin route, is a 403 ``forbidden``.

The guard refuses a viewer's write before the route runs, whatever the route (a route added
later is read-only for viewers without anyone remembering to say so).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, Protocol, TypeAlias

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler

from bridge.api.errors import ApiError
from bridge.logs import get_logger
from bridge.store.apikeys import ApiKeyRecord, looks_managed

SECURITY_SCHEME: Final = "BearerApiKey"
ADMIN_KEY_ID_PREFIX: Final = "admin_"
ADMIN_KEY_ID_HEX: Final = 8
"""An admin key's id is a short digest of the key: it names the key in logs and ``created_by``
without revealing it."""
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="mpc-import-bridge"'}
KEY_CACHE_TTL_S: Final = 0.5
"""How long an API process trusts what it read about a managed key: a revoked key is refused by
every process within this time (plus one request), at one Redis read per key and period."""
KEY_CACHE_MAX_ENTRIES: Final = 10_000
"""Keys remembered at most (unknown ones included); past that the oldest are forgotten first."""
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

Role = Literal["admin", "editor", "viewer"]

audit_log = get_logger("bridge.audit")


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

    def sees_scope(self, scope: Iterable[str] | None) -> bool:
        """Whether this key sees a resource limited to ``scope`` (``None``: every club's, such as
        a subscription to every event): only if it holds every one of those clubs."""
        if self.clubs is None:
            return True
        return scope is not None and set(scope) <= self.clubs

    def check_admin(self) -> None:
        if not self.is_admin:
            raise ApiError(403, "forbidden", "this route needs an admin key")

    def check_write(self) -> None:
        """A viewer changes nothing."""
        if self.role == "viewer":
            raise ApiError(403, "forbidden", "a viewer key may only read")

    def check_read(self, club: str, missing: str) -> None:
        """An existing resource of ``club``: another club's is ``missing`` (404)."""
        if not self.sees(club):
            raise ApiError(404, "not_found", missing)

    def check_read_scope(self, scope: Iterable[str] | None, missing: str) -> None:
        if not self.sees_scope(scope):
            raise ApiError(404, "not_found", missing)

    def check_club(self, *clubs: str) -> None:
        """Creating or changing something for these clubs: a viewer, or a club not held, is a 403."""
        self.check_write()
        refused = sorted({club for club in clubs if not self.sees(club)})
        if refused:
            raise ApiError(
                403,
                "forbidden_club",
                f"this key does not hold club {refused[0]}",
                [{"key": "clubs", "message": f"not held: {', '.join(refused)}"}],
            )

    def scope_for(self, requested: Iterable[str] | None) -> tuple[str, ...] | None:
        """The clubs a new resource is limited to: the requested ones (each held), or, without a
        request, every club of this key (``None`` for an admin: every club)."""
        if requested is not None:
            wanted = tuple(sorted(set(requested)))
            self.check_club(*wanted)
            return wanted
        return None if self.clubs is None else tuple(sorted(self.clubs))


def audit(principal: Principal, action: str, **fields: Any) -> None:
    """One structured line per write: which key did what to which resource."""
    audit_log.info("audit", action=action, key_id=principal.key_id, role=principal.role, **fields)


def admin_key_id(key: bytes) -> str:
    return ADMIN_KEY_ID_PREFIX + hashlib.sha256(key).hexdigest()[:ADMIN_KEY_ID_HEX]


def key_matches(presented: bytes, accepted: tuple[bytes, ...]) -> bytes | None:
    """The accepted key ``presented`` is, if any; every key is compared, whatever matches."""
    found: bytes | None = None
    for key in accepted:
        if hmac.compare_digest(presented, key):
            found = key
    return found


class KeyLookup(Protocol):
    """Where managed keys are looked up (:class:`bridge.store.apikeys.ApiKeyStore`)."""

    async def lookup(self, key: str) -> ApiKeyRecord | None: ...


class KeyRing:
    """Turns a presented bearer key into its :class:`Principal` (``None``: no such key).

    Admin keys are compared in memory. A managed key is looked up in Redis and the answer (a
    principal, or none) kept for :data:`KEY_CACHE_TTL_S`, so a revocation reaches every API process
    within that time. The cache is indexed by a digest of the key, never the key.
    """

    def __init__(
        self,
        admin_keys: tuple[bytes, ...],
        managed: KeyLookup | None = None,
        *,
        ttl_s: float = KEY_CACHE_TTL_S,
        max_entries: int = KEY_CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin_keys = admin_keys
        self._admin_ids = {key: admin_key_id(key) for key in admin_keys}
        self._managed = managed
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    def use_store(self, managed: KeyLookup) -> None:
        """The managed keys' store, once the app has a Redis connection (its lifespan)."""
        self._managed = managed
        self._cache.clear()

    async def resolve(self, presented: str) -> Principal | None:
        token = presented.strip()
        if not token:
            return None
        admin = key_matches(token.encode(), self._admin_keys)
        if admin is not None:
            return Principal(key_id=self._admin_ids[admin], role="admin")
        if self._managed is None or not looks_managed(token):
            return None
        slot = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(slot)
        if cached is not None and now < cached[0]:
            return cached[1]
        record = await self._managed.lookup(token)
        principal = (
            None
            if record is None
            else Principal(key_id=record.id, role=record.role, clubs=frozenset(record.clubs))
        )
        self._cache.pop(slot, None)
        while len(self._cache) >= self._max_entries:
            del self._cache[next(iter(self._cache))]
        self._cache[slot] = (now + self._ttl_s, principal)
        return principal


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
    if connection.scope.get("method", "GET") not in READ_METHODS:
        principal.check_write()
    connection.state.principal = principal


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """After :func:`require_api_key`: the route is for admin keys only."""
    principal: Principal = connection.state.principal
    principal.check_admin()


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The ``principal`` dependency: set by :func:`require_api_key` on every ``/v1`` route."""
    principal: Principal = request.state.principal
    return principal


PrincipalDep: TypeAlias = NamedDependency[Principal]
