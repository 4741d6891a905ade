"""Change notes: a short message on the ``bridge:changes`` pub/sub channel whenever a watch, its
bulks or a webhook delivery changes, so live pages (the console) refresh what changed instead of
polling Redis.

A note says *what* changed, never the new content: a reader fetches the current state itself, so
a lost or repeated note costs a refresh at most, and nothing is stored (pub/sub only, no key).
Publishing is best effort on purpose: the change itself is already committed when its note goes
out, and a failed publish must never fail the write it follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias

import msgspec
from redis.exceptions import RedisError

from bridge.store import keys

ChangeKind: TypeAlias = Literal["created", "watch", "delivery"]
"""``created``: a new watch; ``watch``: a watch's state or bulks; ``delivery``: a webhook delivery."""


class Change(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    kind: ChangeKind
    watch_id: str = ""
    club: str = ""
    """The watch's club: readers limited to some clubs skip the others without a lookup."""
    subscription_id: str = ""
    event_id: str = ""
    """For a delivery: the event it carries (a watch page shows the deliveries of its events)."""


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Change)


def encode_change(change: Change) -> bytes:
    return _encoder.encode(change)


def decode_change(raw: bytes) -> Change | None:
    """The note in ``raw``; ``None`` for anything else (a note from a newer version, garbage)."""
    try:
        return _decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def club_of_tracker(tid: str) -> str:
    """A tracker id is ``slug/import_id``."""
    return tid.partition("/")[0]


async def publish(redis: Any, changes: Iterable[Change]) -> None:
    """Publish the notes in one round trip; a failure is swallowed (see the module's docstring)."""
    notes = [encode_change(c) for c in changes]
    if not notes:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for note in notes:
                pipe.publish(keys.CHANGES, note)
            await pipe.execute()
    except (RedisError, OSError):
        return
