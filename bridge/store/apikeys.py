"""Managed API keys: created by an admin for some clubs and a role, stored only as a keyed hash.

A key (``bk_...``) is shown once, in the answer that creates it. Redis keeps its HMAC-SHA256
under a random *pepper* that is itself stored sealed with ``BRIDGE_SECRET_KEY``: a copy of the
database alone (a backup, a replica) is not enough to test guesses against the digests, and a
leaked digest is no key. Revoking deletes the record and its digest in one transaction.

The box that seals the pepper is passed in (anything with ``seal``/``open``, in practice
:class:`bridge.crypto.SecretBox`): this module sits below the crypto layer and stays free of it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Final, Literal, Protocol

import msgspec

from bridge.core import patterns
from bridge.store import keys

KEY_PREFIX: Final = "bk_"
KEY_BYTES: Final = 32
"""A managed key carries 256 random bits (url-safe base64 after ``bk_``)."""
KEY_MAX_CHARS: Final = 128
"""Longer bearer tokens are no managed key: refused without hashing or asking Redis."""
KEY_ID_PREFIX: Final = "key_"
KEY_ID_HEX: Final = 24
KEY_ID_PATTERN: Final = patterns.API_KEY_ID
PEPPER_BYTES: Final = 32

ManagedRole = Literal["editor", "viewer"]


class Sealer(Protocol):
    """What seals the pepper at rest (:class:`bridge.crypto.SecretBox`)."""

    def seal(self, plaintext: str) -> bytes: ...

    def open(self, token: bytes) -> str: ...


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A managed key as stored: what it may do and who made it, never the key itself."""

    id: str
    name: str
    clubs: tuple[str, ...]
    role: ManagedRole
    created_at: float
    created_by: str
    digest: str
    """HMAC-SHA256 of the key under the pepper, hex."""


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(ApiKeyRecord)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def new_key_id() -> str:
    return KEY_ID_PREFIX + secrets.token_hex(KEY_ID_HEX // 2)


def digest_of(pepper: bytes, key: str) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def looks_managed(token: str) -> bool:
    """Whether a bearer token can be a managed key at all (cheap, before any Redis read)."""
    return token.startswith(KEY_PREFIX) and len(token) <= KEY_MAX_CHARS and token.isascii()


class ApiKeyStore:
    def __init__(self, redis: Any, box: Sealer) -> None:
        self._redis = redis
        self._box = box
        self._pepper: bytes | None = None

    async def _read_pepper(self) -> bytes | None:
        sealed = await self._redis.get(keys.API_KEY_PEPPER)
        if sealed is None:
            return None
        return bytes.fromhex(self._box.open(sealed))

    async def pepper(self, *, create: bool) -> bytes | None:
        """The HMAC key, read once per process; made (once for all processes) by the first key."""
        if self._pepper is not None and not create:
            return self._pepper
        if create:
            fresh = self._box.seal(secrets.token_bytes(PEPPER_BYTES).hex())
            await self._redis.set(keys.API_KEY_PEPPER, fresh, nx=True)
        self._pepper = await self._read_pepper()
        return self._pepper

    async def create(
        self, *, name: str, clubs: tuple[str, ...], role: ManagedRole, created_by: str, now: float
    ) -> tuple[ApiKeyRecord, str]:
        """A new key: its record and the key itself (to show once; it is not stored)."""
        pepper = await self.pepper(create=True)
        assert pepper is not None  # set just above (or by another process first)
        key = new_key()
        record = ApiKeyRecord(
            id=new_key_id(),
            name=name,
            clubs=clubs,
            role=role,
            created_at=now,
            created_by=created_by,
            digest=digest_of(pepper, key),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.API_KEYS, record.id, _encoder.encode(record))
            pipe.hset(keys.API_KEY_DIGESTS, record.digest, record.id)
            await pipe.execute()
        return record, key

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        raw = await self._redis.hget(keys.API_KEYS, key_id)
        return _decoder.decode(raw) if raw is not None else None

    async def all(self) -> list[ApiKeyRecord]:
        """Every managed key, newest first (an admin's list: a handful to a few hundred)."""
        raw = await self._redis.hvals(keys.API_KEYS)
        return sorted((_decoder.decode(r) for r in raw), key=lambda r: (-r.created_at, r.id))

    async def revoke(self, key_id: str) -> ApiKeyRecord | None:
        """Delete the key and its digest; the revoked record, or ``None`` if there was none."""
        record = await self.get(key_id)
        if record is None:
            return None
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.API_KEYS, key_id)
            pipe.hdel(keys.API_KEY_DIGESTS, record.digest)
            removed, _ = await pipe.execute()
        return record if removed else None

    async def lookup(self, key: str) -> ApiKeyRecord | None:
        """The record of a presented key, or ``None`` (unknown, revoked, or no key made yet)."""
        if not looks_managed(key):
            return None
        pepper = await self.pepper(create=False)
        if pepper is None:
            return None
        key_id = await self._redis.hget(keys.API_KEY_DIGESTS, digest_of(pepper, key))
        if key_id is None:
            return None
        record = await self.get(key_id.decode())
        # Compared again: the digest index and the record are written and deleted together.
        return (
            record
            if record is not None and hmac.compare_digest(record.digest, digest_of(pepper, key))
            else None
        )


async def reseal_pepper(redis: Any, old_box: Sealer, new_box: Sealer) -> int:
    """Seal the pepper with a new ``BRIDGE_SECRET_KEY`` (keys and digests stay valid): how many
    values were resealed, 0 or 1. Safe to run again: a pepper already sealed with the new key is
    left as it is. A pepper neither key opens raises the old box's error."""
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(keys.API_KEY_PEPPER)
        sealed = await pipe.get(keys.API_KEY_PEPPER)
        if sealed is None:
            return 0
        try:
            plain = old_box.open(sealed)
        except Exception:
            if _opens(new_box, sealed):
                return 0
            raise
        pipe.multi()
        pipe.set(keys.API_KEY_PEPPER, new_box.seal(plain))
        await pipe.execute()  # a concurrent change (WatchError) stops it: run it again
    return 1


def _opens(box: Sealer, sealed: bytes) -> bool:
    try:
        box.open(sealed)
    except Exception:  # noqa: BLE001 - whatever a box raises for a value it cannot open
        return False
    return True
