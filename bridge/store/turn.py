"""What is asked for in one turn of the event loop goes out together.

A busy worker runs many polls and deliveries at once, and they move in step: a claim starts a
batch of them in the same turn, and answers that arrive together resume them together. Each asks
Redis a couple of things, and every round trip costs the client far more than the server (a
pooled connection, a write, a wake-up, a timer for the read). :class:`Batcher` gathers what is
submitted during one turn and hands it to one call at the start of the next: nothing waits longer
than it did, and ten callers cost about one round trip. The poll loop commits through one, the
club budget takes its tokens through one, and :class:`TurnPipeline` runs Redis commands through one.

:class:`TurnPipeline`'s commands are not a transaction: each caller's commands keep their order
and their replies, an error reply stands in place of its reply (``raise_on_error=False``), and a
failing connection (after redis-py's retries) fails every caller of that pipeline. A caller that
is cancelled while it waits does not take its commands back: they are sent all the same.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

COMMANDS_MAX: Final = 1000
"""Most commands in one pipeline; more asked in the same turn go in another one."""


def _one(item: object) -> int:
    del item
    return 1


class Batcher(Generic[T, R]):
    """Collects items submitted during one turn of the event loop and flushes them together: each
    batch in one call of ``flush`` (a task of its own), every submitter getting its own result, or
    the batch's error. A batch weighs at most ``max_batch`` (an item weighs ``weight(item)``, one
    by default); what is more goes in further batches, flushed at the same time."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R]]],
        max_batch: int,
        *,
        weight: Callable[[T], int] = _one,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._weight = weight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        batch: list[tuple[T, asyncio.Future[R]]] = []
        size = 0
        for entry in pending:
            weight = self._weight(entry[0])
            if batch and size + weight > self._max_batch:
                self._run_soon(batch)
                batch, size = [], 0
            batch.append(entry)
            size += weight
        if batch:
            self._run_soon(batch)

    def _run_soon(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException as exc:  # every waiter gets the error (cancelled: cancelled too)
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def aclose(self) -> None:
        """Wait for the batches already submitted to be flushed."""
        while self._pending or self._tasks:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                await asyncio.sleep(0)


class TurnPipeline:
    """Runs the commands of every caller of one event-loop turn as one Redis pipeline."""

    def __init__(self, redis: Any, *, commands_max: int = COMMANDS_MAX) -> None:
        self._redis = redis
        self._batcher: Batcher[Sequence[tuple[Any, ...]], list[Any]] = Batcher(
            self._send, commands_max, weight=len
        )

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies to ``commands`` (each the arguments of one command), an error reply in
        place of its reply; raises what the pipeline raised."""
        return await self._batcher.submit(commands)

    async def _send(self, batch: list[Sequence[tuple[Any, ...]]]) -> list[list[Any]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for commands in batch:
                for args in commands:
                    pipe.execute_command(*args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        answers: list[list[Any]] = []
        start = 0
        for commands in batch:
            answers.append(replies[start : start + len(commands)])
            start += len(commands)
        return answers

    async def aclose(self) -> None:
        """Wait for the pipelines already on their way."""
        await self._batcher.aclose()


_shared: weakref.WeakKeyDictionary[Any, TurnPipeline] = weakref.WeakKeyDictionary()


def turn_pipeline(redis: Any) -> TurnPipeline:
    """The one :class:`TurnPipeline` of ``redis`` (every store on a client shares it)."""
    made = _shared.get(redis)
    if made is None:
        made = _shared[redis] = TurnPipeline(redis)
    return made
