"""Fan-out of change notes to the live pages of this API process.

One pub/sub subscription to ``bridge:changes`` per process, however many pages are open: the
hub reads the notes (:mod:`bridge.store.changes`) and hands each to every open stream's queue.
Notes come from whichever process made the change (a worker's poll, another API process), so
every process's pages see every change. A stream too slow to keep up loses its oldest notes,
never blocks the others: a note only says "look again", and a later one says it too.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

from redis.exceptions import RedisError

from bridge.logs import get_logger
from bridge.redis_url import outage_wait_s
from bridge.store import keys
from bridge.store.changes import Change, decode_change

QUEUE_SIZE: Final = 256
"""Notes one stream may have waiting; past that the oldest go."""
READ_TIMEOUT_S: Final = 1.0

log = get_logger("bridge.console")


class ChangeHub:
    """Subscribe with :meth:`subscribe`, read the queue, :meth:`unsubscribe` when done."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._queues: set[asyncio.Queue[Change | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    @property
    def listeners(self) -> int:
        return len(self._queues)

    async def subscribe(self) -> asyncio.Queue[Change | None]:
        """A queue of the notes published from now on (it waits until the hub listens). ``None``
        in it means the process is stopping: the stream ends, and the browser reconnects (to
        another API process, or to this one once it is back)."""
        queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=QUEUE_SIZE + 1)
        if self._stopping:
            queue.put_nowait(None)
            return queue
        self._loop = asyncio.get_running_loop()
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._ready.clear()
            self._task = asyncio.get_running_loop().create_task(self._listen())
        await self._ready.wait()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        self._queues.discard(queue)

    def _deliver(self, change: Change | None) -> None:
        for queue in self._queues:
            while queue.qsize() >= QUEUE_SIZE:
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(change)

    def _end_streams(self) -> None:
        self._stopping = True
        self._deliver(None)

    def end_streams_threadsafe(self) -> None:
        """End every open stream (the process is shutting down): open streams would otherwise
        hold the server's graceful drain to its deadline. Safe from a signal handler."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end_streams)
        else:
            self._stopping = True

    async def _listen(self) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.CHANGES)
                self._ready.set()
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT_S)
                    if message is None or message.get("type") != "message":
                        continue
                    change = decode_change(message["data"])
                    if change is not None:
                        self._deliver(change)
            except (RedisError, OSError) as exc:
                failures += 1
                delay = outage_wait_s(failures)
                log.warning("console change feed lost; retrying", error=repr(exc), retry_in_s=delay)
                self._ready.set()  # streams go on (pings, session checks) while Redis is away
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
