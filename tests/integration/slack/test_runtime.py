"""A worker's Runtime with Slack configured: one shared session, checked at start, closed at stop."""

from __future__ import annotations

import aiohttp
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bridge import wiring
from bridge.delivery.model import SLACK
from bridge.slack.notifier import SlackBotNotifier
from bridge_tools.slack_standin import RunningStandin
from mpc_simulator import RunningSimulator
from tests.integration.conftest import settings_for
from tests.integration.slack.conftest import BOT_TOKEN


async def test_the_runtime_shares_one_slack_session_checks_the_token_and_closes_it(
    redis: Redis, redis_url: str, simulator: RunningSimulator, standin: RunningStandin
) -> None:
    settings = settings_for(
        redis_url, simulator.url, BRIDGE_SLACK_BOT_TOKEN=BOT_TOKEN, BRIDGE_SLACK_API_URL=standin.api_url
    )
    runtime = wiring.build_runtime(settings, redis)
    try:
        notifier = runtime.notifiers[SLACK]
        assert isinstance(notifier, SlackBotNotifier)
        session = notifier.session
        assert session is not None and not closed(session)
        with capture_logs() as logs:
            await runtime.check_notifiers()
        assert [e["event"] for e in logs] == ["slack ready"]
        standin.slack.token = "xoxb-rotated"
        with capture_logs() as logs:
            await runtime.check_notifiers()  # logged, never fatal
        assert [(e["event"], e["error"]) for e in logs] == [("slack refused the bot token", "invalid_auth")]
    finally:
        await runtime.close()
    assert closed(session)
    assert [c.method for c in standin.slack.calls] == ["auth.test", "auth.test"]


async def test_without_slack_settings_there_is_no_session_and_no_slack_notifier(
    redis: Redis, redis_url: str, simulator: RunningSimulator
) -> None:
    runtime = wiring.build_runtime(settings_for(redis_url, simulator.url), redis)
    try:
        assert SLACK not in runtime.notifiers
    finally:
        await runtime.close()


def closed(session: aiohttp.ClientSession) -> bool:
    return session.closed
