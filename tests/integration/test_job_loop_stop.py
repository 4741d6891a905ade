"""The worker's job loop ends at the stop even when a library loses the cancellation that ends it
(redis-py's writes did, on Python 3.11: :class:`bridge.redis_url.PromptSend`)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Final

import pytest
from arq import constants as arq_constants

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


class StopsWhileClaiming(BridgeWorker):
    """A worker whose stop comes while its claim of a job is on its way to Redis."""

    async def _claim(self, job_id: str) -> Any:
        score = await super()._claim(job_id)
        self.allow_pick_jobs = False  # as handle_sig_wait_for_completion sets it
        return score


def _worker(pool: Any, cls: type[BridgeWorker] = BridgeWorker) -> BridgeWorker:
    return cls(functions=[_noop], redis_pool=pool, queue_name=keys.QUEUE, handle_signals=False)


async def test_a_job_read_as_the_stop_comes_is_left_queued_for_another_worker(redis_url: str) -> None:
    """The stop can come while the job loop reads the queue: nothing is started after it (the drain
    may already have found nothing running, and would cancel the job before it ran)."""
    pool = connect(redis_url)
    try:
        job = await pool.enqueue_job("_noop", _queue_name=keys.QUEUE)
        assert job is not None
        worker = _worker(pool)
        worker.allow_pick_jobs = False  # the stop came during the read
        await worker.start_jobs([job.job_id.encode()])
        assert worker.tasks == {} and worker.job_counter == 0
        assert not await pool.exists(arq_constants.in_progress_key_prefix + job.job_id)
        assert await pool.zscore(keys.QUEUE, job.job_id) is not None

        during_claim = _worker(pool, StopsWhileClaiming)
        await during_claim.start_jobs([job.job_id.encode()])
        assert during_claim.tasks == {} and during_claim.job_counter == 0
        # the claim is given back: another worker may run the job at once
        assert not await pool.exists(arq_constants.in_progress_key_prefix + job.job_id)
        assert await pool.zscore(keys.QUEUE, job.job_id) is not None
    finally:
        await pool.aclose(close_connection_pool=True)


# arq 0.28 closes its pool with redis-py's deprecated close()
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_a_job_cancelled_before_it_ran_does_not_break_the_worker_s_close(redis_url: str) -> None:
    """A job cancelled before arq's run_job reached its own handling ends with CancelledError; the
    close still ends cleanly (the worker exits with its drain's code, not 1 and a traceback)."""
    pool = connect(redis_url)
    job = await pool.enqueue_job("_noop", _queue_name=keys.QUEUE)
    assert job is not None
    worker = _worker(pool)
    await worker.start_jobs([job.job_id.encode()])
    assert list(worker.tasks) == [job.job_id]  # started, not yet run
    worker.handle_sig(signal.SIGTERM)  # cancels it before its first step
    try:
        await worker.close()
    finally:
        if worker._watchdog is not None:
            worker._watchdog.cancel()
    assert worker._jobs_cut_short == [job.job_id]
