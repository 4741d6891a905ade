"""Everything that depends on arq's internals, in one place, written against :data:`ARQ_VERSION`.

arq is in maintenance mode and its internals do not change often, but they are internals: a test
(``tests/unit/misc/test_library_pins.py``) fails when the installed arq is not the version this
module was written against, so an upgrade comes with a read of what is below.

Deliveries are not arq jobs (the runtime's delivery loop claims them from the outbox); arq runs
the sweeper and the Slack follow-ups.

- :class:`BridgeWorker` overrides ``Worker.handle_sig``/``handle_sig_wait_for_completion`` (the
  poll loop stops claiming at the signal), ``main`` (wait for Redis at start; then arq's own start,
  ``log_redis_info`` and ``on_startup``, followed by a job loop woken by events instead of arq's
  ``poll(poll_delay_s)`` timer; ``burst`` mode stays arq's loop),
  ``_poll_iteration`` (a Redis outage makes the job loop wait, not crash; outside burst mode its
  body is arq's, with one look at the queue that also finds the first deferred job: ``heart_beat``,
  ``start_jobs``, ``_cancel_aborted_jobs``, ``tasks``, ``cron_jobs``), ``start_jobs`` (one Lua
  claim per job, ``lua/arq_claim_job.lua``, using ``sem``, ``job_counter``, ``tasks``,
  ``in_progress_timeout_s``, ``run_job`` and ``_release_sem_dec_counter_on_complete``),
  ``_sleep_until_tasks_complete`` (the jobs still running when the drain window ends) and
  ``close`` (a Redis error while stopping).
- :func:`run` runs a :class:`BridgeWorker` to its exit code, and :func:`adopt_arq_cli` makes
  arq's command line (``arq workers.settings.WorkerSettings``) run it too, in place of
  ``arq.cli.run_worker`` (which builds a plain ``Worker``: a Redis restart ends its job loop with
  ``ConnectionError`` and the process with exit code 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from typing import Any, Final

import arq.cli
from arq import constants as arq_constants
from arq.connections import log_redis_info
from arq.utils import timestamp_ms
from arq.worker import Worker
from arq.worker import logger as arq_logger
from redis.exceptions import RedisError

from bridge.config import WORKER_EXIT_MARGIN_S
from bridge.core.wake import sleep_until_set
from bridge.exits import (
    EXIT_DRAIN_CUT_SHORT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_STOP_TIMEOUT,
    exit_with_config_error,
)
from bridge.logs import get_logger
from bridge.redis_url import outage_wait_s
from bridge.store import keys, scripts
from bridge.store.layout import LayoutError

ARQ_VERSION: Final = "0.28.0"
"""The arq release whose internals this module was written against (and tested with)."""
LEFT_LOGGED_MAX: Final = 20
"""Ids of cut-short polls and jobs named in the ``drain cut short`` log line (the counts are all)."""
DEFERRED_LOOK_MIN_S: Final = 0.005
"""Shortest sleep before a deferred job falls due (a job due in a microsecond is looked at now)."""
STACK_NAMED_MAX: Final = 6
"""Innermost frames the stop watchdog names per task still running when it fires."""
WAKE_LISTEN_S: Final = 60.0
"""Longest blocking read on the wake channel: given explicitly, so the pool's socket timeout does not
end (and reconnect) a quiet subscription every few seconds."""

_SCHEDULE_WAKE: Final = (keys.SCHEDULE_WAKE_CHANNEL, keys.SCHEDULE_WAKE_CHANNEL.encode())
"""The schedule's wake channel as a message names it (bytes, or text on a decoding client)."""

log = get_logger("bridge.worker")


class BridgeWorker(Worker):
    """arq's ``Worker`` as ``bridge worker`` runs it.

    - SIGTERM/SIGINT stop the poll and delivery loops' claiming at once, so polls, deliveries and
      arq's jobs drain in the same window (arq alone tells the runtime only after its own drain,
      in ``on_shutdown``).
    - The process exits at most ``BRIDGE_WORKER_DRAIN_S`` + ``WORKER_EXIT_MARGIN_S`` after the
      signal, even when Redis is gone and handing back cannot finish (leases cover that).
    - A Redis outage (failover, restart) makes the job loop wait and retry instead of crashing,
      and a worker started while Redis is down waits for it instead of exiting (which would
      crash-loop it under an orchestrator's growing back-off long after Redis is back).
    - The job loop (the sweeper, Slack follow-ups) sleeps until something happens instead of
      looking at the queue every few milliseconds: a message on the queue's wake channel (which
      also wakes the delivery loop), a finished job when every slot was taken, a deferred job
      when it falls due (the loop sleeps no longer than until the earliest one), and otherwise
      it looks every ``poll_delay`` (arq's cron and health record, a missed message).
    - :meth:`exit_code` says how the stop went: 0 when everything drained, 3 when the deadline
      cut polls, deliveries or jobs short (logged as ``drain cut short``, with what was left).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis_failures = 0
        self._watchdog: threading.Timer | None = None
        self._claim_job: Any = None
        """``lua/arq_claim_job.lua``, registered on the pool at the first claim."""
        self._jobs_cut_short: list[str] = []
        self._handed_back = True
        """False when Redis was gone while stopping: what ran comes back only when its lease ends."""
        self._cut_short = False
        self._wake = asyncio.Event()
        """Set when the job loop should look at the queue now (see :meth:`_job_loop`)."""
        self._deferred_known = False
        """The job loop's last look at the queue saw when the first deferred job falls due (or that
        none is deferred), and nothing was queued since: :meth:`_next_look_s` needs no look of its own."""
        self._first_deferred_ms: float | None = None
        self._job_loop_ends = False

    def handle_sig(self, signum: signal.Signals) -> None:
        # arq ends the job loop by cancelling the main task. Should a library lose that
        # cancellation, the loop still ends at its next turn instead of running on.
        self._job_loop_ends = True
        self._wake.set()
        self._stop_polling(signum)
        # No drain window for jobs (BRIDGE_WORKER_DRAIN_S=0): arq cancels the running ones now.
        self._note_cut_short()
        super().handle_sig(signum)

    async def _sleep_until_tasks_complete(self) -> None:
        # arq waits for this within the drain window and cancels it at the window's end, before it
        # cancels the jobs still running (they stay queued and run again).
        try:
            await super()._sleep_until_tasks_complete()
        except asyncio.CancelledError:
            self._note_cut_short()
            raise

    def _note_cut_short(self) -> None:
        """Add the jobs running now to those the stop cuts short."""
        running = [jid for jid, task in self.tasks.items() if not task.done()]
        self._jobs_cut_short += [jid for jid in running if jid not in self._jobs_cut_short]

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self._stop_polling(signum)
        super().handle_sig_wait_for_completion(signum)

    def _stop_polling(self, signum: int) -> None:
        runtime = self.ctx.get("runtime")
        if runtime is not None:
            runtime.begin_stop(signal.Signals(signum).name)
        if self._watchdog is None:
            drain_s = runtime.settings.worker_drain_s if runtime is not None else 0.0
            self._watchdog = threading.Timer(drain_s + WORKER_EXIT_MARGIN_S, _exit_now, (self.loop,))
            self._watchdog.daemon = True
            self._watchdog.start()

    async def main(self) -> None:
        await self._wait_for_redis()
        if self.burst:
            await super().main()
            return
        # arq's Worker.main up to its poll loop (the pool is always given: bridge.redis_url.connect).
        names = ", ".join(self.functions)
        arq_logger.info("Starting worker for %d functions: %s", len(self.functions), names)
        await log_redis_info(self.pool, arq_logger.info)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        await self._job_loop()

    async def _job_loop(self) -> None:
        """arq's poll loop, woken by events (see the class's docstring), until cancelled."""
        listener = self.loop.create_task(self._listen())
        try:
            while not self._job_loop_ends:
                self._wake.clear()  # what happens during the iteration wakes the next one at once
                await self._poll_iteration()
                await sleep_until_set(self._wake, await self._next_look_s())
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _next_look_s(self) -> float:
        """How long the job loop may sleep: ``poll_delay``, or less when a deferred job (a retry,
        a Slack message paced or waiting for its card) falls due sooner. Nothing announces that
        moment, so without this such a job would wait for the next fallback look."""
        if self._deferred_known:
            return self._sleep_until_s(self._first_deferred_ms)
        try:
            first = await self.pool.zrangebyscore(
                self.queue_name, min=timestamp_ms() + 1, max="+inf", start=0, num=1, withscores=True
            )
        except (RedisError, OSError):
            return self.poll_delay_s  # the next iteration logs and waits for Redis
        return self._sleep_until_s(float(first[0][1]) if first else None)

    def _sleep_until_s(self, first_deferred_ms: float | None) -> float:
        longest = min(self.poll_delay_s, self._until_health_record_s())
        if first_deferred_ms is None:
            return longest
        due_in_s = (first_deferred_ms - timestamp_ms()) / 1000
        return min(longest, max(due_in_s, DEFERRED_LOOK_MIN_S))

    def _until_health_record_s(self) -> float:
        """arq writes its health record when the loop looks, at most every ``health_check_interval``,
        and lets it expire a second after that: the loop looks in time, whatever ``poll_delay``."""
        due_s = self._last_health_check + self.health_check_interval
        return max(due_s - time.time(), DEFERRED_LOOK_MIN_S)

    async def _listen(self) -> None:
        """Wake the job loop on every message of the queue's wake channel, and the poll loop on every
        message of the schedule's; resubscribe after an outage."""
        failures = 0
        while True:
            pubsub = self.pool.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.QUEUE_WAKE_CHANNEL, keys.SCHEDULE_WAKE_CHANNEL)
                if failures:
                    log.info("job wake-ups resumed")
                failures = 0
                self._wake.set()  # what was enqueued while unsubscribed
                self._wake_deliveries()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WAKE_LISTEN_S)
                    if message is None:
                        continue
                    if message["channel"] in _SCHEDULE_WAKE:
                        self._wake_poller()
                    else:
                        self._wake.set()
                        self._wake_deliveries()
            except (RedisError, OSError) as exc:
                failures += 1
                delay = outage_wait_s(failures)
                log.warning(
                    "redis unavailable, job wake-ups wait (the job loop still looks every poll_delay)",
                    error=repr(exc),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _wait_for_redis(self) -> None:
        failures = 0
        while True:
            try:
                await self.pool.ping()
            except (RedisError, OSError) as exc:
                failures += 1
                delay = outage_wait_s(failures)
                log.warning("redis unavailable at start, worker waits", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
            else:
                return

    async def _poll_iteration(self) -> None:
        self._deferred_known = False
        try:
            if self.burst or self._queue_read_offset:
                await super()._poll_iteration()
            else:
                await self._look_and_start()
        except (RedisError, OSError) as exc:
            self._redis_failures += 1
            delay = outage_wait_s(self._redis_failures)
            log.warning("redis unavailable, job loop waits", error=repr(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
        else:
            self._redis_failures = 0

    async def _look_and_start(self) -> None:
        """arq's ``_poll_iteration`` (not in burst mode), whose look at the queue reads the jobs in
        the order they fall due, one more than it may start: the due ones start, and the first that
        is not due yet tells when to look again (:meth:`_next_look_s`), without a second look."""
        crons, retried = [job.next_run for job in self.cron_jobs], self.jobs_retried
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            now = timestamp_ms()
            count = self.queue_read_limit
            entries: list[tuple[bytes, float]] = await self.pool.zrange(
                self.queue_name, 0, count, withscores=True
            )
            due = [jid for jid, score in entries if score <= now]
            if len(due) < len(entries):
                self._first_deferred_ms, self._deferred_known = entries[len(due)][1], True
            elif len(entries) <= count:
                self._first_deferred_ms, self._deferred_known = None, True  # nothing deferred
            await self.start_jobs(due[:count])
        if self.allow_abort_jobs:
            await self._cancel_aborted_jobs()
        for jid, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[jid]
                task.result()  # as arq: an error in run_job surfaces here
        await self.heart_beat()
        if [job.next_run for job in self.cron_jobs] != crons or self.jobs_retried != retried:
            # Queued since the look, deferred: the cron's next run, or a job's retry.
            self._deferred_known = False

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Claim and start due jobs, all at once, one Redis round trip each.

        arq claims the jobs one after another, each with WATCH, EXISTS, ZSCORE and MULTI/EXEC:
        four round trips in a row per job, on a loop the poller keeps busy, so the tenth job of a
        burst waited for forty. The same check-and-set runs here as one script per job, the jobs
        concurrently. A slot taken for a job that does not start (claimed elsewhere, or Redis
        failing) is given back, and the next job read is tried for it, as arq does.

        A job stays in the queue until it ends, so the jobs this worker is running come first in
        what it reads: they are passed over, not claimed again (their claim can only fail, and the
        slot would stay empty until the loop looks again).
        """
        waiting = [jid for jid in (job_id.decode() for job_id in job_ids) if not self._running(jid)]
        tried = 0
        while tried < len(waiting):
            free = self.max_jobs - self.job_counter
            if free <= 0:
                return
            batch = waiting[tried : tried + free]
            tried += len(batch)
            await asyncio.gather(*(self._start_job(jid) for jid in batch))

    def _stopping(self) -> bool:
        """The stop came: no job starts any more (arq's flag, read anew after every await)."""
        return not self.allow_pick_jobs

    async def _claim(self, job_id: str) -> Any:
        """The job's score when this worker claimed it (``lua/arq_claim_job.lua``), else None."""
        if self._claim_job is None:
            self._claim_job = scripts.register(self.pool, "arq_claim_job")
        return await self._claim_job(
            keys=[arq_constants.in_progress_key_prefix + job_id, self.queue_name],
            args=[job_id, timestamp_ms(), int(self.in_progress_timeout_s * 1000)],
            client=self.pool,
        )

    def _running(self, job_id: str) -> bool:
        task = self.tasks.get(job_id)
        return task is not None and not task.done()

    async def _start_job(self, job_id: str) -> None:
        """Claim one job and start it, unless the stop came meanwhile.

        The stop can come while the loop reads the queue or claims: a job started after it would
        not be waited for by the drain (which may already have found nothing running) and would be
        cancelled before it ran. It is left in the queue instead, its claim given back, so another
        worker runs it at once.
        """
        await self.sem.acquire()
        self.job_counter += 1
        started = False
        try:
            if self._stopping():
                return
            score = await self._claim(job_id)
            if score is None:
                return
            if self._stopping():
                with contextlib.suppress(RedisError, OSError):  # else the claim lapses by itself
                    await self.pool.delete(arq_constants.in_progress_key_prefix + job_id)
                return
            task = self.loop.create_task(self.run_job(job_id, int(score)))
            task.add_done_callback(lambda _: self._job_done())
            self.tasks[job_id] = task
            started = True
        finally:
            if not started:
                self.job_counter -= 1
                self.sem.release()

    def _wake_poller(self) -> None:
        runtime = self.ctx.get("runtime")
        if runtime is not None:
            runtime.poller.wake()

    def _wake_deliveries(self) -> None:
        runtime = self.ctx.get("runtime")
        if runtime is not None:
            runtime.delivery_loop.wake()

    async def _forget_cancelled_jobs(self) -> None:
        """Wait for the jobs, and drop those that ended cancelled from ``tasks``.

        arq's ``close`` awaits every job, and a job cancelled before ``run_job`` reached its own
        handling (not yet started, or still reading the job) ends with CancelledError, which
        ``close`` would raise: the worker would exit 1 with a traceback instead of its drain's
        code. Such a job is among those cut short; it stays queued and runs again.
        """
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for job_id, task in list(self.tasks.items()):
            if task.cancelled():
                del self.tasks[job_id]

    def _job_done(self) -> None:
        # A slot frees up: due jobs may be waiting for it. While draining, arq waits until its job
        # loop has dropped every finished job from ``tasks``: the loop does so at once, not up to
        # ``poll_delay`` later (which could take the drain past its deadline).
        if self.job_counter >= self.max_jobs or not self.allow_pick_jobs:
            self._wake.set()
        self._release_sem_dec_counter_on_complete()

    async def close(self) -> None:
        try:
            await self._forget_cancelled_jobs()
            await super().close()
        except (RedisError, OSError) as exc:
            # arq stops at its first Redis error, before on_shutdown: stop the poll loop and close
            # the MPC client anyway. What could not be handed back comes back when its lease ends.
            log.warning("redis unreachable while stopping; leases hand back the rest", error=repr(exc))
            self._handed_back = False
            runtime = self.ctx.get("runtime")
            if runtime is not None:
                await runtime.close()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._report_stop()

    def _report_stop(self) -> None:
        runtime = self.ctx.get("runtime")
        polls: list[str] = runtime.polls_cut_short() if runtime is not None else []
        deliveries: list[str] = runtime.deliveries_cut_short() if runtime is not None else []
        jobs = self._jobs_cut_short
        if not (polls or deliveries or jobs or not self._handed_back):
            return
        self._cut_short = True
        log.error(
            "drain cut short",
            drain_s=runtime.settings.worker_drain_s if runtime is not None else None,
            polls_cut_short=len(polls),
            imports=polls[:LEFT_LOGGED_MAX],
            deliveries_cut_short=len(deliveries),
            deliveries=deliveries[:LEFT_LOGGED_MAX],
            jobs_cut_short=len(jobs),
            jobs=jobs[:LEFT_LOGGED_MAX],
            handed_back=self._handed_back,
            exit_code=EXIT_DRAIN_CUT_SHORT,
        )

    def exit_code(self) -> int:
        """The process's exit code once :meth:`run` returned (see :mod:`bridge.exits`)."""
        runtime = self.ctx.get("runtime")
        if runtime is not None and runtime.failed:
            return EXIT_FAILURE
        return EXIT_DRAIN_CUT_SHORT if self._cut_short else EXIT_OK


def _exit_now(loop: asyncio.AbstractEventLoop) -> None:
    """The stop watchdog: name what is still running (for the operator's report), then exit."""
    try:
        stuck = [_task_line(task) for task in asyncio.all_tasks(loop)]
    except RuntimeError:  # the set changed while read from this thread
        stuck = []
    log.error(
        "worker did not stop within its drain and margin; exiting",
        exit_code=EXIT_STOP_TIMEOUT,
        tasks=stuck[:LEFT_LOGGED_MAX],
    )
    faulthandler.dump_traceback(all_threads=True)
    os._exit(EXIT_STOP_TIMEOUT)


def _task_line(task: asyncio.Task[Any]) -> str:
    """A task as the watchdog names it: its name and where it waits, innermost call first."""
    frames: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and hasattr(awaited, "cr_frame"):
        frame = awaited.cr_frame
        if frame is not None:
            frames.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = awaited.cr_await
    return f"{task.get_name()}: {' <- '.join(reversed(frames[-STACK_NAMED_MAX:])) or 'not started'}"


def run(options: dict[str, Any]) -> int:
    """Run a :class:`BridgeWorker` with these arq options until it stops; its exit code.

    Data stored by a newer bridge (or an old layout with migration off) ends it with one line and
    exit code 2, as any configuration error does.
    """
    worker = BridgeWorker(**options)
    try:
        worker.run()
    except LayoutError as exc:
        exit_with_config_error(str(exc), "worker")
    return worker.exit_code()


def adopt_arq_cli(options: dict[str, Any]) -> None:
    """Make ``arq <settings>`` run the bridge's worker with ``options`` (see :func:`run`).

    arq's command line imports the settings module first and calls ``arq.cli.run_worker`` after
    it, so the settings module calls this at import. ``--burst`` is passed on; ``--check`` and
    ``--watch`` do not go through ``run_worker`` and stay arq's.
    """

    def run_worker(settings_cls: Any, **kwargs: Any) -> Worker:
        del settings_cls  # the same options, already read
        sys.exit(run(options | kwargs))

    arq.cli.run_worker = run_worker  # type: ignore[attr-defined]
