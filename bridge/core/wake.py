"""Sleeping until woken: the idle waits of the poll loop and of the job loop."""

from __future__ import annotations

import asyncio


async def sleep_until_set(event: asyncio.Event, seconds: float) -> None:
    """Return once ``event`` is set or ``seconds`` have passed, whichever comes first; when the time
    is up, the event is set.

    ``asyncio.wait_for(event.wait(), seconds)`` does the same with a task around the wait and, when
    the time is up, a cancellation that takes one more turn of the loop: a loop that sleeps twice a
    second, or after every poll, pays for both every time. Here a timer sets the event instead.
    """
    timer = asyncio.get_running_loop().call_later(seconds, event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()
