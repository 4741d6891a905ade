"""How many polls a worker runs at once: as many as ``BRIDGE_POLL_CONCURRENCY`` allows, as long as
the event loop stays responsive.

A worker's one event loop carries both its polls and its deliveries. Against a slow MPC most
polls wait on the network and many can run at once; against a fast one every poll is CPU work,
and hundreds in flight make every turn of the loop long, so a delivery — a dozen awaits in a
row — waits a turn per await (``make bench``: with 200 polls in flight on a busy worker, the
bridge's own part of the change-to-webhook latency reached seconds at p99). So the poller
measures the loop's lag (how late a timer fires) and its own CPU use, and adapts: additive
increase while polls are waiting for a slot and the loop is prompt, multiplicative decrease when
the loop lags *because the process is busy*. A loop that lags while the process is not busy (the
machine is, or the host pauses it) keeps its concurrency: fewer polls would not help, and against
a slow MPC they would only fall behind. Pure.
"""

from __future__ import annotations

from typing import Final

import msgspec

LAG_PROBE_EVERY_S: Final = 0.05
"""How often the poller measures the loop's lag."""
LAG_TARGET_S: Final = 0.005
"""A timer firing later than this means the loop is crowded: fewer polls at once."""
BUSY_CPU_SHARE: Final = 0.75
"""The process used at least this share of a core during the probe: its own work makes the lag."""
DECREASE_FACTOR: Final = 0.7
INCREASE_STEP: Final = 2
MIN_CONCURRENCY: Final = 4
"""Never fewer polls at once than this (a loop lagging for other reasons still polls)."""
START_CONCURRENCY: Final = 32


class Pacing(msgspec.Struct, frozen=True, kw_only=True):
    ceiling: int
    """``BRIDGE_POLL_CONCURRENCY``."""
    floor: int = MIN_CONCURRENCY
    lag_target_s: float = LAG_TARGET_S
    busy_cpu_share: float = BUSY_CPU_SHARE


def initial_limit(pacing: Pacing) -> int:
    return max(min(pacing.floor, pacing.ceiling), min(START_CONCURRENCY, pacing.ceiling))


def next_limit(limit: int, *, lag_s: float, cpu_share: float, wanting: bool, pacing: Pacing) -> int:
    """The concurrency after one probe.

    ``lag_s``: how late the probe's timer fired; ``cpu_share``: the process's CPU time during the
    probe over its duration; ``wanting``: polls were waiting for a slot. The result stays within
    ``[min(floor, ceiling), ceiling]``.
    """
    low = min(pacing.floor, pacing.ceiling)
    if lag_s > pacing.lag_target_s:
        if cpu_share >= pacing.busy_cpu_share:
            limit = int(limit * DECREASE_FACTOR)
    elif wanting:
        limit += INCREASE_STEP
    return max(low, min(pacing.ceiling, limit))
