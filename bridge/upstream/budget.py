"""Each club's MPC request budget, shared by every worker: a token bucket per club in Redis.

MPC limits each client with its own bucket and answers 429 once it is empty; a bridge polling
many imports of one club could empty it alone and starve the club's other integrations. So every
request to MPC first takes a token from the club's budget (``BRIDGE_MPC_CLUB_RATE`` per second,
up to ``BRIDGE_MPC_CLUB_BURST`` at once), well under MPC's own limit. A poll that gets no token
sends nothing and is due again when one is back (``throttled``: not a failure of MPC). The
bucket lives in one short-lived Redis hash per club (``lua/club_budget.lua``), timed by Redis'
clock, so every worker draws from the same budget whatever their clocks say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from bridge.store import keys, scripts


class Grant(msgspec.Struct, frozen=True):
    """What one take got: how many requests may go now, and when the next token comes."""

    granted: int
    next_token_s: float


class ClubBudget:
    def __init__(self, redis: Any, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = burst
        self._take = scripts.register(redis, "club_budget")

    async def take(self, wants: Sequence[tuple[str, int]]) -> list[Grant]:
        """For each (club, requests wanted), the requests it may send now: one round trip for all."""
        if not wants:
            return []
        answers = await self._take(
            keys=[keys.club_budget(slug) for slug, _ in wants],
            args=[repr(self._rate), self._burst, *(wanted for _, wanted in wants)],
        )
        return [Grant(int(granted), int(wait_ms) / 1000.0) for granted, wait_ms in answers]
