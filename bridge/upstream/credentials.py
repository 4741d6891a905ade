"""MPC credentials per club: stored encrypted, write-only from the API, read by the workers.

A club without its own credentials uses the default token (``BRIDGE_MPC_TOKEN``). A club whose
stored token cannot be decrypted (``BRIDGE_SECRET_KEY`` changed without the old key kept in the
list) does NOT fall back to the default token: that would call MPC for the club with another
party's token. Its polls fail with ``credentials_unreadable`` until the token is readable again
or replaced. Workers keep what they read for :data:`CACHE_TTL_S`, so a changed token is in use
everywhere within that time without a Redis read per poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec

from bridge.crypto import SecretBox, SecretUnreadable
from bridge.logs import get_logger
from bridge.store import keys
from bridge.upstream.mpc import ClubCredentials, CredentialsUnreadable

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


def encode_stored(record: StoredCredentials) -> bytes:
    return _encoder.encode(record)


def decode_stored(raw: bytes) -> StoredCredentials:
    return _decoder.decode(raw)


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
        await self._redis.hset(keys.CREDENTIALS, slug, encode_stored(record))

    async def has(self, slug: str) -> bool:
        """Whether the club has its own stored credentials (nothing is decrypted)."""
        return bool(await self._redis.hexists(keys.CREDENTIALS, slug))

    async def configured(self) -> dict[str, float]:
        """Clubs with a stored token -> when it was stored (never the token: nothing is opened)."""
        raw = await self._redis.hgetall(keys.CREDENTIALS)
        return {
            (slug.decode() if isinstance(slug, bytes) else str(slug)): _decoder.decode(value).updated_at
            for slug, value in raw.items()
        }

    async def get(self, slug: str) -> ClubCredentials | None:
        """The club's own credentials, ``None`` when it has none; raises
        :class:`~bridge.upstream.mpc.CredentialsUnreadable` when they are stored but cannot be
        decrypted (never the default token in their place)."""
        raw = await self._redis.hget(keys.CREDENTIALS, slug)
        if raw is None:
            return None
        try:
            record = decode_stored(raw)
            token = self._box.open(record.sealed_token)
        except (SecretUnreadable, msgspec.DecodeError, msgspec.ValidationError):
            log.error(
                "stored MPC credentials of the club cannot be decrypted with BRIDGE_SECRET_KEY: its "
                "watches fail until the old key is listed again or the club's token is set anew",
                club=slug,
            )
            raise CredentialsUnreadable(slug) from None
        return ClubCredentials(token=token, product_name=record.product_name)


_UNREADABLE: Final = object()


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
        self._cache: dict[str, tuple[float, object]] = {}

    async def credentials_for(self, slug: str) -> ClubCredentials | None:
        now = self._clock()
        cached = self._cache.get(slug)
        if cached is None or cached[0] <= now:
            found: object
            try:
                found = await self._store.get(slug) or self._default
            except CredentialsUnreadable:
                found = _UNREADABLE  # remembered too: one log line per club per TTL, not per poll
            cached = (now + self._ttl_s, found)
            self._cache[slug] = cached
        if cached[1] is _UNREADABLE:
            raise CredentialsUnreadable(slug)
        return cached[1] if isinstance(cached[1], ClubCredentials) else None
