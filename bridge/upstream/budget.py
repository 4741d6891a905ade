"""Each club's MPC request budget, shared by every worker: a token bucket per club in Redis.

MPC limits each client with its own bucket and answers 429 once it is empty; a bridge polling
many imports of one club could empty it alone and starve the club's other integrations. So every
request to MPC first takes a token from the club's budget (``BRIDGE_MPC_CLUB_RATE`` per second,
up to ``BRIDGE_MPC_CLUB_BURST`` at once), well under MPC's own limit. A poll that gets no token
sends nothing and is due again when one is back (``throttled``: not a failure of MPC). The first
request of a poll the worker starts at once takes its token in the claim's own round trip
(``lua/claim.lua``, the same bucket, the same arithmetic); the poll's further requests take theirs
here. The bucket lives in one short-lived Redis hash per club (``lua/club_budget.lua``), timed by Redis'
clock, so every worker draws from the same budget whatever their clocks say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from bridge.store import keys, scripts


class Grant(msgspec.Struct, frozen=True):
    """What one take got: how many requests may go now, and when the next token comes."""

    granted: int
    next_token_s: float


class BudgetUse(msgspec.Struct, frozen=True, kw_only=True):
    """How much of a club's budget recent requests hold: spent tokens not yet back."""

    in_use: float
    """Requests spent that the bucket has not refilled yet (0: full, ``burst``: empty)."""
    burst: int
    rate: float
    next_token_s: float
    """0 while a request may go now; otherwise how long until one may."""


def tokens_now(tokens: float, at_ms: float, now_ms: float, *, rate: float, burst: int) -> float:
    """The tokens a bucket holds at ``now_ms``, refilled since ``at_ms`` (as ``club_budget.lua``)."""
    if not (math.isfinite(tokens) and math.isfinite(at_ms) and math.isfinite(now_ms)):
        return float(burst)
    return max(0.0, min(float(burst), tokens + max(0.0, now_ms - at_ms) * rate / 1000.0))


def budget_use(stored: tuple[Any, Any] | None, now_ms: float, *, rate: float, burst: int) -> BudgetUse:
    """What a club's bucket hash (its tokens and time fields, or nothing) says about its use now."""
    tokens = float(burst)
    if stored is not None and stored[0] is not None and stored[1] is not None:
        try:
            tokens = tokens_now(float(stored[0]), float(stored[1]), now_ms, rate=rate, burst=burst)
        except ValueError:
            tokens = float(burst)
    wait = 0.0 if tokens >= 1 else (1.0 - tokens) / rate
    return BudgetUse(in_use=float(burst) - tokens, burst=burst, rate=rate, next_token_s=wait)


class ClubBudget:
    def __init__(self, redis: Any, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._redis = redis
        self._take = scripts.register(redis, "club_budget")

    @property
    def rate(self) -> float:
        """Tokens a second, per club."""
        return self._rate

    @property
    def burst(self) -> int:
        """The most tokens a club's bucket holds."""
        return self._burst

    async def take(self, wants: Sequence[tuple[str, int]]) -> list[Grant]:
        """For each (club, requests wanted), the requests it may send now: one round trip for all."""
        if not wants:
            return []
        answers = await self._take(
            keys=[keys.club_budget(slug) for slug, _ in wants],
            args=[repr(self._rate), self._burst, *(wanted for _, wanted in wants)],
        )
        return [Grant(int(granted), int(wait_ms) / 1000.0) for granted, wait_ms in answers]

    async def use(self, slugs: Sequence[str]) -> dict[str, BudgetUse]:
        """Each club's budget in use now, by the Redis clock the buckets are kept with (one round trip)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for slug in slugs:
                pipe.hmget(keys.club_budget(slug), keys.B_TOKENS, keys.B_AT)
            clock, *stored = await pipe.execute()
        now_ms = clock[0] * 1000.0 + clock[1] / 1000.0
        return {
            slug: budget_use((fields[0], fields[1]), now_ms, rate=self._rate, burst=self._burst)
            for slug, fields in zip(slugs, stored, strict=True)
        }
