"""Commands asked for in one turn of the event loop go to Redis as one pipeline
(:class:`bridge.store.turn.TurnPipeline`), each caller getting its own replies."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bridge.redis_url import connect
from bridge.store.turn import TurnPipeline, turn_pipeline
from bridge_tools.processes import free_port

CALLERS: Final = 20


def _connections(client: Any) -> int:
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_callers_of_one_turn_share_one_round_trip_and_get_their_own_replies(redis_url: str) -> None:
    client = connect(redis_url)
    turn = TurnPipeline(client)
    try:
        replies = await asyncio.gather(
            *[
                turn.execute([("SET", f"k{n}", n), ("GET", f"k{n}"), ("HGETALL", "none")])
                for n in range(CALLERS)
            ]
        )
        assert replies == [[True, str(n).encode(), {}] for n in range(CALLERS)]
        # Sent alone, twenty concurrent callers would have taken twenty pooled connections.
        assert _connections(client) == 1
    finally:
        await client.aclose(close_connection_pool=True)


async def test_an_error_reply_stands_in_its_place_and_fails_no_other_caller(redis_url: str) -> None:
    client = connect(redis_url)
    turn = TurnPipeline(client)
    try:
        await client.set("text", "not a number")
        mine, other = await asyncio.gather(
            turn.execute([("INCR", "text"), ("GET", "text")]), turn.execute([("INCR", "counter")])
        )
        assert isinstance(mine[0], ResponseError) and mine[1] == b"not a number"
        assert other == [1]
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_turn_with_more_commands_than_a_pipeline_takes_goes_in_several(redis_url: str) -> None:
    client = connect(redis_url)
    turn = TurnPipeline(client, commands_max=3)
    try:
        replies = await asyncio.gather(*[turn.execute([("INCR", "n"), ("INCR", "n")]) for _ in range(5)])
        assert sorted(value for pair in replies for value in pair) == list(range(1, 11))
        assert all(pair[1] == pair[0] + 1 for pair in replies)  # a caller's commands stay together
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_cancelled_caller_still_has_its_commands_sent(redis_url: str) -> None:
    """A delivery cancelled while it records its outcome: the record is written all the same."""
    client = connect(redis_url)
    turn = TurnPipeline(client)
    try:
        asked = asyncio.ensure_future(turn.execute([("SET", "written", "yes")]))
        await asyncio.sleep(0)  # asked, not yet sent
        asked.cancel()
        await turn.aclose()
        assert await client.get("written") == b"yes"
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_failing_connection_fails_every_caller_of_that_pipeline() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    turn = TurnPipeline(client)
    try:
        results = await asyncio.gather(
            turn.execute([("GET", "a")]), turn.execute([("GET", "b")]), return_exceptions=True
        )
        assert all(isinstance(result, RedisConnectionError) for result in results)
    finally:
        await client.aclose(close_connection_pool=True)


def test_every_store_on_a_client_shares_its_turn_pipeline(redis_url: str) -> None:
    client = connect(redis_url)
    other = connect(redis_url)
    assert turn_pipeline(client) is turn_pipeline(client)
    assert turn_pipeline(other) is not turn_pipeline(client)
