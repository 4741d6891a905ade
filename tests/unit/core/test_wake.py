"""Sleeping until woken: set, time up, or cancelled, and no timer left behind."""

from __future__ import annotations

import asyncio
import time
from typing import Final

import pytest

from bridge.core.wake import sleep_until_set

SHORT_S: Final = 0.05
LONG_S: Final = 30.0


async def test_a_set_event_ends_the_sleep_at_once() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(SHORT_S, event.set)
    started = time.monotonic()
    await sleep_until_set(event, LONG_S)
    assert time.monotonic() - started < LONG_S / 2


async def test_the_sleep_ends_when_the_time_is_up_and_sets_the_event() -> None:
    event = asyncio.Event()
    started = time.monotonic()
    await sleep_until_set(event, SHORT_S)
    assert time.monotonic() - started >= SHORT_S * 0.9
    assert event.is_set()


async def test_a_woken_sleep_leaves_no_timer_to_set_the_event_later() -> None:
    event = asyncio.Event()
    event.set()
    await sleep_until_set(event, SHORT_S)
    event.clear()
    await asyncio.sleep(SHORT_S * 3)
    assert not event.is_set()


async def test_a_cancelled_sleep_leaves_no_timer_either() -> None:
    event = asyncio.Event()
    task = asyncio.get_running_loop().create_task(sleep_until_set(event, SHORT_S))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(SHORT_S * 3)
    assert not event.is_set()
