"""Who may drive the bridge from Slack: the channels an admin allowed for each club, and
optionally a list of users (``BRIDGE_SLACK_ALLOWED_USERS``).

A club nobody mapped to a channel cannot be watched from Slack at all: the list is the only way
in, so a missing list refuses, it never allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from bridge.store import keys
from bridge.store.redis_store import resolved

MAX_CHANNELS_PER_CLUB: Final = 100
CHANNEL_ID_PATTERN: Final = r"^[CGD][A-Z0-9]{2,30}$"
"""A Slack conversation id: public (C), private (G) or direct (D) channel. Names (``#ops``) are
not accepted here: a name can be renamed or reused, an id cannot."""


class SlackAccess:
    def __init__(self, redis: Any, *, allowed_users: Iterable[str] = ()) -> None:
        self._redis = redis
        self._users = frozenset(allowed_users)

    async def channels(self, slug: str) -> list[str]:
        members = await resolved(self._redis.smembers(keys.slack_channels(slug)))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def set_channels(self, slug: str, channel_ids: Iterable[str]) -> list[str]:
        """Replace the club's list in one step (an empty list removes it)."""
        wanted = sorted(set(channel_ids))
        key = keys.slack_channels(slug)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if wanted:
                pipe.sadd(key, *wanted)
            await pipe.execute()
        return wanted

    async def channel_allowed(self, slug: str, channel: str) -> bool:
        return bool(await resolved(self._redis.sismember(keys.slack_channels(slug), channel)))

    async def has_channels(self, slug: str) -> bool:
        return bool(await resolved(self._redis.exists(keys.slack_channels(slug))))

    def user_allowed(self, user: str) -> bool:
        return not self._users or user in self._users
