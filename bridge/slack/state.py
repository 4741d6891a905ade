"""What Slack delivery remembers in Redis, shared by every worker (keys: :mod:`bridge.store.keys`).

- **Cards**: where each watch's import card lives (``channel``/``ts``), which snapshot revision and
  content it shows, and a ``want`` counter of refreshes asked for.
- **Card lock**: one worker at a time updates a card. A worker that finds the lock taken bumps
  ``want`` and waits for ``done`` to reach it; the holder re-renders from the latest snapshot
  until ``want`` stops moving, records each ``want`` it rendered as ``done``, and releases only if
  nothing new was asked in the meantime (one atomic script), so an older render never lands
  after a newer one. A holder killed mid-render leaves ``done`` behind: the waiting job defers,
  and takes the card itself once the lock's TTL ends, so no refresh is lost.
- **Replies**: the ``ts`` posted for each event, so a job that runs again never posts twice.
- **Pacing**: Slack takes about one message a second per channel. Each message reserves its own
  posting time once (a retried job keeps its reservation), so a burst of events is spread out
  instead of retried in a herd.

Its Lua scripts are ``bridge/store/lua/slack_*.lua``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from redis.asyncio import Redis

from bridge.store import keys, scripts
from bridge.store.redis_store import resolved

SLOT_TTL_S: Final = 3600.0
"""A reservation nobody used (its job gave up) is forgotten after this long."""


class Card(msgspec.Struct, kw_only=True, frozen=True):
    channel: str
    """The channel id Slack answered (``chat.update`` needs the id, not a ``#name``)."""
    ts: str
    rev: int
    digest: str
    done: int = 0
    """Refreshes asked up to this ``want`` are shown (see :data:`keys.C_DONE`)."""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SlackState:
    def __init__(self, redis: Redis, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self._ttl_ms = _ms(ttl_s)
        """How long a card or reply record is kept: as long as the watch's events are."""
        self._clock = clock
        self._unlock_if_done = scripts.register(redis, "slack_unlock_if_done")
        self._unlock = scripts.register(redis, "unlock")
        self._extend = scripts.register(redis, "slack_extend")
        self._forget = scripts.register(redis, "slack_forget_card")
        self._reserve = scripts.register(redis, "slack_reserve")
        self._hold = scripts.register(redis, "slack_hold")

    # ------------------------------------------------------------------ cards

    async def card(self, wid: str, channel: str) -> Card | None:
        fields = await resolved(self.redis.hgetall(keys.slack_card(wid, channel)))
        ts = fields.get(keys.C_TS.encode())
        if not ts:
            return None
        return Card(
            channel=_text(fields[keys.C_CHANNEL.encode()]),
            ts=_text(ts),
            rev=int(fields.get(keys.C_REV.encode(), b"0")),
            digest=_text(fields.get(keys.C_DIGEST.encode(), b"")),
            done=int(fields.get(keys.C_DONE.encode(), b"0")),
        )

    async def save_card(self, wid: str, channel: str, card: Card) -> None:
        key = keys.slack_card(wid, channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    keys.C_CHANNEL: card.channel,
                    keys.C_TS: card.ts,
                    keys.C_REV: card.rev,
                    keys.C_DIGEST: card.digest,
                },
            )
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()

    async def forget_card(self, wid: str, channel: str, ts: str) -> bool:
        """Slack no longer has the card ``ts`` (deleted): the next refresh posts a new one."""
        return bool(await self._forget(keys=[keys.slack_card(wid, channel)], args=[ts]))

    async def want_refresh(self, wid: str, channel: str) -> int:
        key = keys.slack_card(wid, channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, keys.C_WANT, 1)
            pipe.pexpire(key, self._ttl_ms)
            want, _ = await pipe.execute()
        return int(want)

    async def wanted(self, wid: str, channel: str) -> int:
        value = await resolved(self.redis.hget(keys.slack_card(wid, channel), keys.C_WANT))
        return int(value or 0)

    async def lock(self, wid: str, channel: str, token: str, ttl_s: float) -> bool:
        return bool(await self.redis.set(keys.slack_card_lock(wid, channel), token, nx=True, px=_ms(ttl_s)))

    async def extend(self, wid: str, channel: str, token: str, ttl_s: float) -> bool:
        return bool(await self._extend(keys=[keys.slack_card_lock(wid, channel)], args=[token, _ms(ttl_s)]))

    async def unlock_if_done(self, wid: str, channel: str, token: str, seen_want: int, ttl_s: float) -> bool:
        """Release the card unless a refresh was asked since ``seen_want`` was read (then keep it,
        and the caller renders again). True also when the lock was no longer ours."""
        result = await self._unlock_if_done(
            keys=[keys.slack_card_lock(wid, channel), keys.slack_card(wid, channel)],
            args=[token, str(seen_want), _ms(ttl_s)],
        )
        return int(result) != 0

    async def unlock(self, wid: str, channel: str, token: str) -> None:
        await self._unlock(keys=[keys.slack_card_lock(wid, channel)], args=[token])

    # ------------------------------------------------------------------ replies

    async def reply(self, eid: str) -> str | None:
        value = await self.redis.get(keys.slack_reply(eid))
        return None if value is None else _text(value)

    async def save_reply(self, eid: str, ts: str) -> None:
        await self.redis.set(keys.slack_reply(eid), ts, px=self._ttl_ms)

    # ------------------------------------------------------------------ progress mute

    async def mute(self, wid: str, muted: bool) -> None:
        """Stop (or resume) posting the watch's ``bulk.progress`` replies; the card still moves."""
        if muted:
            await self.redis.set(keys.slack_mute(wid), 1, px=self._ttl_ms)
        else:
            await self.redis.delete(keys.slack_mute(wid))

    async def muted(self, wid: str) -> bool:
        return bool(await self.redis.exists(keys.slack_mute(wid)))

    # ------------------------------------------------------------------ pacing

    async def reserve(self, channel: str, ref: str, interval_s: float) -> float:
        """Seconds until this message (``ref``) may be posted to ``channel`` (<= 0: now)."""
        now = self._clock()
        at = await self._reserve(
            keys=[keys.slack_pace(channel), keys.slack_slot(ref), keys.slack_hold(channel)],
            args=[int(now * 1000), int(interval_s * 1000), _ms(SLOT_TTL_S)],
        )
        return int(at) / 1000.0 - now

    async def release(self, ref: str) -> None:
        """The message was posted (or must queue again): its reservation is spent."""
        await self.redis.delete(keys.slack_slot(ref))

    async def hold(self, channel: str, seconds: float) -> None:
        """Slack answered 429: no message and no card update goes to ``channel`` for ``seconds``."""
        now = self._clock()
        await self._hold(
            keys=[keys.slack_pace(channel), keys.slack_hold(channel)],
            args=[int(now * 1000), int((now + seconds) * 1000)],
        )

    async def held(self, channel: str) -> float:
        """Seconds ``channel`` is still held by a 429 (<= 0: not held)."""
        until = await self.redis.get(keys.slack_hold(channel))
        return 0.0 if until is None else int(until) / 1000.0 - self._clock()
