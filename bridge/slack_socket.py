"""``bridge slack-socket``: the Slack app over Socket Mode, for installations Slack cannot reach.

With an app-level token (``BRIDGE_SLACK_APP_TOKEN``, ``xapp-…``, scope ``connections:write``)
this process opens Slack's WebSocket itself (``slack_sdk.socket_mode``, reconnecting on its own)
and serves the same slash command and card buttons as ``POST /slack/events``, through the same
:class:`~bridge.api.slack_app.SlackApp`. Slack authenticates the socket with the token, so no
request signature is involved. Each envelope is acknowledged with the answer (a command's
ephemeral reply) within Slack's 3 seconds; the rest follows in ``slack_followup`` jobs that the
workers run.

Every :data:`HEALTH_INTERVAL_S` it writes a health record in Redis (``bridge healthcheck`` with
the ``slack-socket`` role reads it): present and fresh while the process runs and is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from typing import Any, Final

from redis.exceptions import RedisError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bridge import wiring
from bridge.api.slack_app import SlackApp
from bridge.config import ConfigError, Settings, env_name
from bridge.logs import configure_logging, get_logger
from bridge.redis_url import connect
from bridge.slack.notifier import SLACK_TIMEOUT_S
from bridge.store import keys
from bridge.store.layout import ensure_layout

HEALTH_INTERVAL_S: Final = 10.0
"""How often the process records that it is connected; the record lives one interval more."""
HEALTH_TIME_FORMAT: Final = "%b-%d %H:%M:%S"
"""The record starts with the time like a worker's (``Dec-04 18:31:02 connected``)."""
PING_INTERVAL_S: Final = 10.0

log = get_logger("bridge.slack")


class SocketHandler:
    """Turns Socket Mode envelopes into :class:`SlackApp` calls and acknowledges each one."""

    def __init__(self, app: SlackApp) -> None:
        self._app = app

    async def __call__(self, client: Any, request: SocketModeRequest) -> None:
        answer: dict[str, Any] | None = None
        try:
            if request.type == "slash_commands":
                fields = {str(k): v for k, v in request.payload.items() if isinstance(v, str)}
                answer = await self._app.command(fields)
            elif request.type == "interactive":
                await self._app.interaction(json.dumps(request.payload))
            else:
                log.info("slack socket: envelope ignored", type=request.type)
        except ValueError as exc:
            log.warning("slack socket: not a command or click", type=request.type, error=str(exc)[:200])
        except RedisError as exc:
            log.error("slack socket: redis unavailable", error=repr(exc))
            answer = {
                "response_type": "ephemeral",
                "text": "The bridge cannot reach its database: try again soon.",
            }
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload=answer)
        )


def _migrated(what: str) -> None:
    log.info("redis layout", change=what)


def health_record(connected: bool, now: float | None = None) -> str:
    stamp = time.strftime(HEALTH_TIME_FORMAT, time.localtime(time.time() if now is None else now))
    return f"{stamp} {'connected' if connected else 'disconnected'}"


async def run(settings: Settings, stop: asyncio.Event, host: str | None = None) -> None:
    """Serve until ``stop`` is set."""
    if settings.slack_app_token is None:
        raise ConfigError(f"{env_name('slack_app_token')}: required for `bridge slack-socket` (xapp-...)")
    redis = connect(settings.redis_url)
    await ensure_layout(
        redis,
        migrate_on_start=settings.migrate_on_start,
        report=lambda what: log.info("redis layout", change=what),
    )
    web = AsyncWebClient(base_url=settings.slack_base, timeout=int(SLACK_TIMEOUT_S))
    client = SocketModeClient(
        app_token=settings.slack_app_token.reveal(),
        web_client=web,
        auto_reconnect_enabled=True,
        ping_interval=PING_INTERVAL_S,
    )
    client.socket_mode_request_listeners.append(SocketHandler(wiring.slack_app(settings, redis)))
    health_key = keys.slack_socket_health(host or socket.gethostname())
    try:
        await client.connect()  # type: ignore[no-untyped-call]
        log.info("slack socket mode connected", command=settings.slack_command)
        while not stop.is_set():
            connected = await client.is_connected()
            with contextlib.suppress(RedisError, OSError):
                await redis.set(health_key, health_record(connected), px=int(2 * HEALTH_INTERVAL_S * 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEALTH_INTERVAL_S)
    finally:
        with contextlib.suppress(Exception):
            await client.close()  # type: ignore[no-untyped-call]
        with contextlib.suppress(RedisError, OSError):
            await redis.delete(health_key)
        await redis.aclose(close_connection_pool=True)
        log.info("slack socket mode stopped")


def main(settings: Settings) -> None:
    """``bridge slack-socket``: run until SIGTERM or SIGINT."""
    configure_logging(settings.log_level, settings.log_format)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run(settings, stop)

    asyncio.run(serve())
