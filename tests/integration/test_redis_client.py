"""The client :func:`bridge.redis_url.connect` builds: a pooled connection that has something left to
read, or that the server closed, is replaced before the next command (checked without waiting a
turn of the event loop, :class:`bridge.redis_url.PromptHiredisParser`); a command is sent without a
task of its own (:class:`bridge.redis_url.PromptSend`)."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bridge.redis_url import PARSER_CLASS, PromptHiredisParser, PromptSend, connect

SETTLE_S: Final = 0.2
"""Long enough for a reply or a close on loopback to reach the connection's buffer."""


def test_the_bridge_clients_use_the_prompt_parser() -> None:
    assert PARSER_CLASS is PromptHiredisParser


async def test_a_connection_with_an_unread_reply_is_replaced(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        await client.set("k", "v")
        connection: Any = client.connection_pool._available_connections[0]
        await connection.send_command("PING")  # its reply is never read
        await asyncio.sleep(SETTLE_S)
        assert await connection.can_read_destructive()
        assert await client.get("k") == b"v"
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_connection_the_server_closed_is_replaced(redis_url: str, redis: Redis) -> None:
    client = connect(redis_url)
    try:
        await client.client_setname("closed-by-server")
        await redis.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(SETTLE_S)
        assert await client.ping()
        assert await client.client_getname() != "closed-by-server"
    finally:
        await client.aclose(close_connection_pool=True)


async def test_an_idle_connection_is_handed_out_as_it_is(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        await client.client_setname("kept")
        await asyncio.sleep(SETTLE_S)
        assert await client.client_getname() == "kept"
    finally:
        await client.aclose(close_connection_pool=True)


TURNS_TRIED: Final = 12
"""Turns of the event loop a command is let run before it is cancelled: its whole send and more."""


async def _cancellations_lost(client: Any) -> list[int]:
    """The turns after which a command cancelled while still running carried on as if nothing had
    happened (a command that had ended by then is not counted)."""
    lost = []
    for turns in range(TURNS_TRIED):
        task = asyncio.ensure_future(client.set("cancelled", turns))
        for _ in range(turns):
            await asyncio.sleep(0)
        requested = task.cancel()  # False once the command has ended: nothing to lose
        try:
            await task
        except asyncio.CancelledError:
            continue
        if requested:
            lost.append(turns)
    return lost


async def test_a_command_cancelled_at_any_point_of_its_send_is_cancelled(redis_url: str) -> None:
    """A worker's job loop is cancelled at the end of its drain while it sends a command: the
    cancellation must end it (else the worker only stops when its watchdog kills it)."""
    client = connect(redis_url)
    try:
        assert await _cancellations_lost(client) == []
    finally:
        await client.aclose(close_connection_pool=True)


async def test_redis_py_alone_loses_such_a_cancellation(redis_url: str) -> None:
    """Why the bridge's connections send differently: redis-py's own (``asyncio.wait_for`` around
    the write, Python 3.11) returns normally from some of these cancellations. When this fails, a
    redis-py or Python upgrade fixed it (then :class:`bridge.redis_url.PromptSend` is only for speed)."""
    client = Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        assert await _cancellations_lost(client) != []
    finally:
        await client.aclose(close_connection_pool=True)


async def test_commands_are_sent_without_a_task_and_a_large_one_still_drains(redis_url: str) -> None:
    client = connect(redis_url)
    loop = asyncio.get_running_loop()
    made: list[Any] = []
    factory = loop.get_task_factory()

    def counting(the_loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(getattr(coro, "__qualname__", coro))
        if factory is not None:
            return factory(the_loop, coro, **kwargs)  # type: ignore[return-value]
        return asyncio.Task(coro, loop=the_loop, **kwargs)

    try:
        await client.ping()  # connected
        assert isinstance(client.connection_pool._available_connections[0], PromptSend)
        loop.set_task_factory(counting)
        for n in range(20):
            await client.set(f"k{n}", "v")
        assert made == []  # redis-py's own send makes a task per command (asyncio.wait_for)
        loop.set_task_factory(factory)
        big = b"x" * (8 << 20)  # more than the socket takes at once: drained under the timeout
        await client.set("big", big)
        assert await client.get("big") == big
    finally:
        loop.set_task_factory(factory)
        await client.aclose(close_connection_pool=True)


async def test_a_send_on_a_connection_the_server_closed_fails_as_redis_py_says(
    redis_url: str, redis: Redis
) -> None:
    client = connect(redis_url)
    try:
        await client.client_setname("closed-by-server")
        connection: Any = client.connection_pool._available_connections[0]
        await redis.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(SETTLE_S)
        try:
            for _ in range(50):  # the close is seen by a write, sooner or later
                await connection.send_command("PING", check_health=False)
                await asyncio.sleep(0.01)
        except (RedisConnectionError, RedisTimeoutError):
            pass
        else:
            raise AssertionError("writes to a closed connection kept succeeding")
        assert not connection.is_connected
        assert await client.ping()  # the pool connects again
    finally:
        await client.aclose(close_connection_pool=True)


class _CountingTimers:
    """Counts the timers the running loop is asked for (``asyncio.timeout`` sets one per use)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._loop = loop
        self._call_at = loop.call_at

    def __enter__(self) -> _CountingTimers:
        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            self.count += 1
            return self._call_at(when, callback, *args, **kwargs)

        self._loop.call_at = counting  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_: object) -> None:
        del self._loop.call_at  # the class's own again


PIPELINE_LENGTH: Final = 50


async def test_a_pipeline_sets_a_timer_only_for_replies_not_yet_at_hand(redis_url: str) -> None:
    """One read brings every reply of a short pipeline: only the first waits (under the socket
    timeout); redis-py alone sets a timer for each of them."""
    client = connect(redis_url)
    try:
        await client.set("n", "0")
        with _CountingTimers(asyncio.get_running_loop()) as timers:
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(PIPELINE_LENGTH):
                    pipe.incr("n")
                replies = await pipe.execute()
        assert replies == list(range(1, PIPELINE_LENGTH + 1))
        assert timers.count <= 2
    finally:
        await client.aclose(close_connection_pool=True)


async def test_error_replies_at_hand_are_raised_or_kept_as_redis_py_does(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        await client.set("text", "not a number")
        async with client.pipeline(transaction=False) as pipe:
            pipe.set("a", "1")
            pipe.incr("text")
            pipe.get("a")
            replies = await pipe.execute(raise_on_error=False)
        assert replies[0] is True and replies[2] == b"1"
        assert isinstance(replies[1], ResponseError)
        try:
            await client.incr("text")
        except ResponseError:
            pass
        else:
            raise AssertionError("an error reply was not raised")
        assert await client.get("a") == b"1"  # the connection is still in step
    finally:
        await client.aclose(close_connection_pool=True)
