"""Commands asked for in one turn of the event loop go to Redis in one pipeline.

A busy worker runs many deliveries at once, and they move in step: a claim starts a batch of them
in the same turn, and answers that arrive together resume them together. Each asks Redis a
couple of things, and every round trip costs the client far more than the server (a pooled
connection, a write, a wake-up, a timer for the read). :class:`TurnPipeline` gathers what is asked
during one turn and sends it as one pipeline at the start of the next: nothing waits longer than
it did, and ten callers cost about one round trip.

The commands are not a transaction, as before: each caller's commands keep their order and their
replies, an error reply stands in place of its reply (``raise_on_error=False``), and a failing
connection (after redis-py's retries) fails every caller of that pipeline. A caller that is
cancelled while it waits does not take its commands back: they are sent all the same.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any, Final

COMMANDS_MAX: Final = 1000
"""Most commands in one pipeline; more asked in the same turn go in the next one."""


class TurnPipeline:
    """Runs the commands of every caller of one event-loop turn as one Redis pipeline."""

    def __init__(self, redis: Any, *, commands_max: int = COMMANDS_MAX) -> None:
        self._redis = redis
        self._commands_max = commands_max
        self._waiting: list[tuple[Sequence[tuple[Any, ...]], asyncio.Future[list[Any]]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies to ``commands`` (each the arguments of one command), an error reply in
        place of its reply; raises what the pipeline raised."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((commands, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        self._scheduled = False
        taken = size = 0
        for commands, _ in self._waiting:
            if taken and size + len(commands) > self._commands_max:
                break
            taken += 1
            size += len(commands)
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        if self._waiting:  # the rest in the next turn
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Sequence[tuple[Any, ...]], asyncio.Future[list[Any]]]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for commands, _ in batch:
                    for args in commands:
                        pipe.execute_command(*args)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, answer in batch:
                if answer.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    answer.cancel()
                else:
                    answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for commands, answer in batch:
            end = start + len(commands)
            if not answer.done():
                answer.set_result(replies[start:end])
            start = end

    async def aclose(self) -> None:
        """Wait for the pipelines already on their way."""
        while self._waiting or self._sending:
            if self._sending:
                await asyncio.gather(*self._sending, return_exceptions=True)
            else:
                await asyncio.sleep(0)


_shared: weakref.WeakKeyDictionary[Any, TurnPipeline] = weakref.WeakKeyDictionary()


def turn_pipeline(redis: Any) -> TurnPipeline:
    """The one :class:`TurnPipeline` of ``redis`` (every store on a client shares it)."""
    made = _shared.get(redis)
    if made is None:
        made = _shared[redis] = TurnPipeline(redis)
    return made
