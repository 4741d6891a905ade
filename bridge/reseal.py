"""``bridge secrets reseal``: seal every stored secret again with the newest ``BRIDGE_SECRET_KEY``.

Each kind of sealed value has one entry in :data:`RESEALERS`: where its values are stored and
how one is sealed again. A value is replaced by a compare-and-set (``lua/reseal_field.lua``), so
a token set, a secret rotated or a subscription deleted while the command runs always wins. A
value already sealed with the newest key is left as it is; one that no listed key opens is
counted and named by its place (never its content) and left as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from bridge.crypto import SecretBox, SecretUnreadable
from bridge.logs import get_logger
from bridge.store import keys, scripts
from bridge.upstream.credentials import decode_stored, encode_stored

SCAN_BATCH: Final = 500
"""Subscription ids read per step while walking the index."""

log = get_logger("bridge.reseal")


@dataclass(frozen=True)
class Resealer:
    """One kind of sealed value: the places holding one ((hash, field), or (string key, ``""``)),
    and how to reseal a value."""

    name: str
    places: Callable[[Any], AsyncIterator[tuple[str, str]]]
    reseal: Callable[[SecretBox, bytes], bytes]
    """The stored value with its secret sealed with the newest key (raises ``SecretUnreadable``)."""
    current: Callable[[SecretBox, bytes], bool]
    """Whether the stored value is already sealed with the newest key."""


async def _credential_places(redis: Any) -> AsyncIterator[tuple[str, str]]:
    async for slug in redis.hscan_iter(keys.CREDENTIALS, count=SCAN_BATCH):
        yield keys.CREDENTIALS, _text(slug[0] if isinstance(slug, tuple) else slug)


def _subscription_places(field: str) -> Callable[[Any], AsyncIterator[tuple[str, str]]]:
    async def places(redis: Any) -> AsyncIterator[tuple[str, str]]:
        offset = 0
        while True:
            ids = await redis.zrange(keys.SUBSCRIPTIONS, offset, offset + SCAN_BATCH - 1)
            for sid in ids:
                yield keys.subscription(_text(sid)), field
            if len(ids) < SCAN_BATCH:
                return
            offset += SCAN_BATCH

    return places


def _reseal_credentials(box: SecretBox, raw: bytes) -> bytes:
    try:
        record = decode_stored(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise SecretUnreadable("not a stored credentials record") from None
    return encode_stored(msgspec.structs.replace(record, sealed_token=box.reseal(record.sealed_token)))


def _credentials_current(box: SecretBox, raw: bytes) -> bool:
    try:
        return box.is_current(decode_stored(raw).sealed_token)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


async def _pepper_place(redis: Any) -> AsyncIterator[tuple[str, str]]:
    yield keys.API_KEY_PEPPER, ""


RESEALERS: Final = (
    Resealer(
        name="club MPC tokens",
        places=_credential_places,
        reseal=_reseal_credentials,
        current=_credentials_current,
    ),
    Resealer(
        name="webhook secrets",
        places=_subscription_places(keys.S_SECRET),
        reseal=SecretBox.reseal,
        current=SecretBox.is_current,
    ),
    Resealer(
        name="previous webhook secrets",
        places=_subscription_places(keys.S_PREVIOUS),
        reseal=SecretBox.reseal,
        current=SecretBox.is_current,
    ),
    Resealer(
        name="API key pepper",
        places=_pepper_place,
        reseal=SecretBox.reseal,
        current=SecretBox.is_current,
    ),
)
"""Every kind of value sealed with ``BRIDGE_SECRET_KEY``: a new kind must be added here."""


class Tally(msgspec.Struct, kw_only=True):
    """What one kind's pass did."""

    resealed: int = 0
    current: int = 0
    """Already sealed with the newest key."""
    unreadable: int = 0
    """No listed key opens it: left as it is."""
    changed: int = 0
    """Changed or deleted while the pass ran: the newer value stays."""


async def reseal_all(redis: Any, box: SecretBox) -> dict[str, Tally]:
    """Reseal every stored secret with the newest key; a tally per kind."""
    replace = scripts.register(redis, "reseal_field")
    tallies: dict[str, Tally] = {}
    for resealer in RESEALERS:
        tally = tallies.setdefault(resealer.name, Tally())
        async for key, field in resealer.places(redis):
            raw = await (redis.hget(key, field) if field else redis.get(key))
            if raw is None:
                continue
            if resealer.current(box, raw):
                tally.current += 1
                continue
            try:
                new = resealer.reseal(box, raw)
            except SecretUnreadable:
                tally.unreadable += 1
                log.error(
                    "sealed value cannot be decrypted with any listed key",
                    kind=resealer.name,
                    key=key,
                    field=field,
                )
                continue
            if await replace(keys=[key], args=[field, raw, new]):
                tally.resealed += 1
            else:
                tally.changed += 1
    return tallies


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
