"""The worker's job loop ends at the stop even when a library loses the cancellation that ends it
(redis-py's writes did, on Python 3.11: :class:`bridge.redis_url.PromptSend`)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Final

from bridge.redis_url import connect
from bridge.store import keys
from bridge.worker.arq_compat import BridgeWorker
from tests.integration.conftest import eventually

LOOK_S: Final = 0.01
"""How long each look at the queue takes here."""
ENDS_WITHIN_S: Final = 2.0


async def _noop(ctx: dict[str, Any]) -> None:
    del ctx


class LosesCancellation(BridgeWorker):
    """A worker whose every look at the queue loses a cancellation, as a library call can."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.lost = 0
        self.looking = asyncio.Event()

    async def _poll_iteration(self) -> None:
        self.looking.set()
        try:
            await asyncio.sleep(LOOK_S)
        except asyncio.CancelledError:
            self.lost += 1
        finally:
            self.looking.clear()


async def test_the_job_loop_ends_at_the_stop_even_when_its_cancellation_is_lost(redis_url: str) -> None:
    pool = connect(redis_url)
    worker = LosesCancellation(
        functions=[_noop],
        redis_pool=pool,
        queue_name=keys.QUEUE,
        poll_delay=LOOK_S,
        handle_signals=False,
    )
    worker.main_task = asyncio.ensure_future(worker.main())
    try:
        await worker.looking.wait()  # the stop comes while the job loop looks at the queue
        worker.handle_sig(signal.SIGTERM)
        done, _ = await asyncio.wait([worker.main_task], timeout=ENDS_WITHIN_S)
        assert done, "the job loop ran on after the stop"
        assert worker.lost >= 1  # the cancellation was indeed lost, and the loop ended anyway
    finally:
        worker.main_task.cancel()
        await asyncio.gather(worker.main_task, return_exceptions=True)
        if worker._watchdog is not None:  # the stop's watchdog would end this process
            worker._watchdog.cancel()
        await pool.aclose(close_connection_pool=True)


HEALTH_INTERVAL_S: Final = 1
LONG_LOOK_S: Final = 10.0
HEALTH_WATCHED_S: Final = 3.5


async def test_the_health_record_never_lapses_however_seldom_the_job_loop_looks(redis_url: str) -> None:
    """arq writes its record only when the job loop looks, and lets it expire a second after the
    interval: a loop that looks every 10 s still wakes to write it in time."""
    pool = connect(redis_url)
    worker = BridgeWorker(
        functions=[_noop],
        redis_pool=pool,
        queue_name=keys.QUEUE,
        poll_delay=LONG_LOOK_S,
        health_check_interval=HEALTH_INTERVAL_S,
        handle_signals=False,
    )
    worker.main_task = asyncio.ensure_future(worker.main())
    try:
        loop = asyncio.get_running_loop()
        await eventually(lambda: pool.exists(worker.health_check_key), 10, "the first health record")
        ends = loop.time() + HEALTH_WATCHED_S
        while loop.time() < ends:
            assert await pool.exists(worker.health_check_key), "the health record lapsed"
            await asyncio.sleep(0.05)
    finally:
        worker.main_task.cancel()
        await asyncio.gather(worker.main_task, return_exceptions=True)
        await pool.aclose(close_connection_pool=True)
