"""MPC credentials per club: stored encrypted, write-only from the API, read by the workers.

A club without its own credentials uses the default token (``BRIDGE_MPC_TOKEN``). Workers keep
what they read for :data:`CACHE_TTL_S`, so a changed token is in use everywhere within that time
without a Redis read per poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from bridge.crypto import SecretBox, SecretUnreadable
from bridge.logs import get_logger
from bridge.store import keys
from bridge.upstream.mpc import ClubCredentials

CACHE_TTL_S: Final = 10.0
"""How long a worker trusts what it read about a club's credentials."""

log = get_logger("bridge.credentials")


class StoredCredentials(msgspec.Struct, kw_only=True, frozen=True):
    """The Redis value: the token sealed with ``BRIDGE_SECRET_KEY``; never the plaintext."""

    sealed_token: bytes
    product_name: str | None
    updated_at: float
    created_by: str | None = None
    """Id of the API key that stored this token."""


_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(StoredCredentials)


class CredentialStore:
    def __init__(self, redis: Any, box: SecretBox) -> None:
        self._redis = redis
        self._box = box

    async def put(
        self, slug: str, token: str, product_name: str | None, now: float, *, created_by: str | None = None
    ) -> None:
        record = StoredCredentials(
            sealed_token=self._box.seal(token),
            product_name=product_name,
            updated_at=now,
            created_by=created_by,
        )
        await self._redis.hset(keys.CREDENTIALS, slug, _encoder.encode(record))

    async def get(self, slug: str) -> ClubCredentials | None:
        raw = await self._redis.hget(keys.CREDENTIALS, slug)
        if raw is None:
            return None
        record = _decoder.decode(raw)
        try:
            token = self._box.open(record.sealed_token)
        except SecretUnreadable:
            log.error("stored MPC credentials cannot be decrypted: was BRIDGE_SECRET_KEY changed?", club=slug)
            return None
        return ClubCredentials(token=token, product_name=record.product_name)


class CachedCredentials:
    """The workers' credential source: a club's stored credentials, else the default token."""

    def __init__(
        self,
        store: CredentialStore,
        default: ClubCredentials | None,
        *,
        ttl_s: float = CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._default = default
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, ClubCredentials | None]] = {}

    async def credentials_for(self, slug: str) -> ClubCredentials | None:
        now = self._clock()
        cached = self._cache.get(slug)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._store.get(slug) or self._default
        self._cache[slug] = (now + self._ttl_s, found)
        return found
