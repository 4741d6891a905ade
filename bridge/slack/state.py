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
- **Unmasked errors**: written beside an event by the poller's commit when
  ``BRIDGE_SLACK_SHOW_PII`` is on; read here and deleted once posted.

The Lua scripts here are Slack's own, so they live with the code that uses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from redis.asyncio import Redis

from bridge.core.member_errors import ErrorSummary, decode_summary
from bridge.store import keys
from bridge.store.redis_store import resolved

F_CHANNEL: Final = "channel"
F_TS: Final = "ts"
F_REV: Final = "rev"
F_DIGEST: Final = "digest"
F_WANT: Final = "want"
F_DONE: Final = "done"
"""The ``want`` the card was last rendered for: every refresh asked up to it is shown."""

SLOT_TTL_S: Final = 3600.0
"""A reservation nobody used (its job gave up) is forgotten after this long."""

UNLOCK_IF_DONE: Final = """
-- KEYS: lock, card. ARGV: token, want seen before rendering, lock ttl (ms)
-- 1: released (nothing new asked); 0: still held (render again); -1: not ours any more
-- Either way the card now shows every refresh asked up to that want: recorded as 'done'.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if tonumber(redis.call('HGET', KEYS[2], 'done') or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], 'done', ARGV[2])
end
if (redis.call('HGET', KEYS[2], 'want') or '0') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""

UNLOCK: Final = """
-- KEYS: lock. ARGV: token
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

EXTEND: Final = """
-- KEYS: lock. ARGV: token, ttl (ms)
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

FORGET_CARD: Final = """
-- KEYS: card. ARGV: ts of the message Slack no longer has
if redis.call('HGET', KEYS[1], 'ts') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'channel', 'ts', 'rev', 'digest')
  return 1
end
return 0
"""

RESERVE: Final = """
-- KEYS: channel pace, this message's slot, channel hold. ARGV: now (ms), interval (ms), slot ttl (ms)
-- Returns the time (ms) this message may be posted: its earlier reservation, else the next free one.
-- A reservation that falls inside a hold (Slack answered 429 since) queues again after it.
local held = tonumber(redis.call('GET', KEYS[3]) or '0')
local slot = redis.call('GET', KEYS[2])
if slot and tonumber(slot) >= held then return tonumber(slot) end
local now, interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'), held)
redis.call('SET', KEYS[1], at + interval, 'PX', math.max(1, at + interval - now))
redis.call('SET', KEYS[2], at, 'PX', ARGV[3])
return at
"""

HOLD: Final = """
-- KEYS: channel pace, channel hold. ARGV: now (ms), until (ms)
-- Slack said to wait (429): nothing more is posted or updated there before `until`.
local now, until_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  if until_ms > tonumber(redis.call('GET', key) or '0') then
    redis.call('SET', key, until_ms, 'PX', math.max(1, until_ms - now))
  end
end
return 1
"""


class Card(msgspec.Struct, kw_only=True, frozen=True):
    channel: str
    """The channel id Slack answered (``chat.update`` needs the id, not a ``#name``)."""
    ts: str
    rev: int
    digest: str
    done: int = 0
    """Refreshes asked up to this ``want`` are shown (see :data:`F_DONE`)."""


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
        self._unlock_if_done = redis.register_script(UNLOCK_IF_DONE)
        self._unlock = redis.register_script(UNLOCK)
        self._extend = redis.register_script(EXTEND)
        self._forget = redis.register_script(FORGET_CARD)
        self._reserve = redis.register_script(RESERVE)
        self._hold = redis.register_script(HOLD)

    # ------------------------------------------------------------------ cards

    async def card(self, wid: str, channel: str) -> Card | None:
        fields = await resolved(self.redis.hgetall(keys.slack_card(wid, channel)))
        ts = fields.get(F_TS.encode())
        if not ts:
            return None
        return Card(
            channel=_text(fields[F_CHANNEL.encode()]),
            ts=_text(ts),
            rev=int(fields.get(F_REV.encode(), b"0")),
            digest=_text(fields.get(F_DIGEST.encode(), b"")),
            done=int(fields.get(F_DONE.encode(), b"0")),
        )

    async def save_card(self, wid: str, channel: str, card: Card) -> None:
        key = keys.slack_card(wid, channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={F_CHANNEL: card.channel, F_TS: card.ts, F_REV: card.rev, F_DIGEST: card.digest},
            )
            pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()

    async def forget_card(self, wid: str, channel: str, ts: str) -> bool:
        """Slack no longer has the card ``ts`` (deleted): the next refresh posts a new one."""
        return bool(await self._forget(keys=[keys.slack_card(wid, channel)], args=[ts]))

    async def want_refresh(self, wid: str, channel: str) -> int:
        key = keys.slack_card(wid, channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, F_WANT, 1)
            pipe.pexpire(key, self._ttl_ms)
            want, _ = await pipe.execute()
        return int(want)

    async def wanted(self, wid: str, channel: str) -> int:
        value = await resolved(self.redis.hget(keys.slack_card(wid, channel), F_WANT))
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

    # ------------------------------------------------------------------ unmasked errors

    async def unmasked_errors(self, eid: str) -> ErrorSummary | None:
        raw = await self.redis.get(keys.slack_errors(eid))
        if raw is None:
            return None
        try:
            return decode_summary(raw)
        except msgspec.DecodeError:
            return None

    async def drop_unmasked_errors(self, eid: str) -> None:
        await self.redis.delete(keys.slack_errors(eid))
