"""``bridge slack-socket``: the same command and buttons over Socket Mode, against the Slack
stand-in's WebSocket (``apps.connections.open`` hands out its URL) and a real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Final

import pytest
from redis.asyncio import Redis

from bridge.config import Settings
from bridge.healthcheck import slack_socket_verdict
from bridge.slack.commands import ACTION_STOP
from bridge.slack_socket import run
from bridge.store import keys
from bridge.store.redis_store import resolved
from bridge_tools.slack_standin import RunningStandin, click_payload, command_fields, start
from tests.integration.conftest import SLUG, settings_for
from tests.integration.slack.conftest import BOT_TOKEN, CHANNEL, IMPORT

APP_TOKEN: Final = "xapp-1-A0BRIDGE-1-" + "f" * 32
HOST: Final = "socket-test-host"


@pytest.fixture
async def socket_standin() -> AsyncIterator[RunningStandin]:
    running = await start(BOT_TOKEN, app_token=APP_TOKEN)
    try:
        yield running
    finally:
        await running.stop()


async def test_commands_and_clicks_over_socket_mode(
    socket_standin: RunningStandin, redis: Redis, redis_url: str
) -> None:
    settings: Settings = settings_for(
        redis_url,
        "http://127.0.0.1:9",
        BRIDGE_SLACK_APP_TOKEN=APP_TOKEN,
        BRIDGE_SLACK_BOT_TOKEN=BOT_TOKEN,
        BRIDGE_SLACK_API_URL=socket_standin.api_url,
    )
    await resolved(redis.sadd(keys.slack_channels(SLUG), CHANNEL))
    stop = asyncio.Event()
    serving = asyncio.create_task(run(settings, stop, host=HOST))
    slack = socket_standin.slack
    try:
        ack = await slack.socket_request("slash_commands", command_fields(f"{SLUG} {IMPORT}"))
        answer = ack["payload"]
        assert answer["response_type"] == "ephemeral" and "Watching the whole import" in answer["text"]
        wid = answer["text"][answer["text"].index("wch_") :][:28]
        assert (await slack.socket_request("slash_commands", command_fields("list")))["payload"][
            "text"
        ].count(wid) == 1
        refused = await slack.socket_request(
            "slash_commands", command_fields(f"{SLUG} {IMPORT}", channel="C0ELSEWHERE")
        )
        assert "not allowed to watch" in refused["payload"]["text"]
        clicked = await slack.socket_request(
            "interactive", click_payload(ACTION_STOP, wid, response_url=slack.response_url())
        )
        assert clicked["envelope_id"] and not clicked.get("payload")
        record: object = await resolved(redis.hget(keys.watch(wid), keys.W_STATE))
        assert record == b"stopped"
        assert await redis.zcard(keys.QUEUE) >= 1  # the follow-up for the card and its thread
        assert slack.calls[0].method == "apps.connections.open"
        # Its health record says it is connected.
        verdict = await asyncio.to_thread(slack_socket_verdict, settings, HOST)
        assert verdict.healthy, verdict.reason
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)
    assert not await redis.exists(keys.slack_socket_health(HOST))
    verdict = await asyncio.to_thread(slack_socket_verdict, settings, HOST)
    assert not verdict.healthy and "no health record" in verdict.reason


def test_slack_socket_without_an_app_token_is_a_one_line_configuration_error(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")} | {
        "BRIDGE_REDIS_URL": redis_url
    }
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "slack-socket"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "BRIDGE_SLACK_APP_TOKEN" in done.stderr and len(done.stderr.strip().splitlines()) == 1
