"""What the deployment tests need to know about the image's processes: the command line a container
runs (what ``bridge healthcheck`` reads to find its role) and how long ``bridge slack-socket`` takes
to stop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiohttp.client_ws import DEFAULT_WS_CLIENT_TIMEOUT

from bridge.redis_url import SOCKET_TIMEOUT_S
from tests.deploy.dockerfile import parse

ROOT = Path(__file__).resolve().parents[2]


def container_command(args: Sequence[str]) -> list[str]:
    """The container's PID 1 command line for ``args`` (Compose's ``command``, Kubernetes'
    ``args``): the image's ENTRYPOINT followed by them, ``tini -- bridge worker``."""
    entrypoint = parse(ROOT / "Dockerfile")[1][-1].last("ENTRYPOINT")
    assert entrypoint is not None
    return [*entrypoint.exec_form(), *args]


def slack_socket_stop_s() -> float:
    """``bridge slack-socket`` has no drain: on SIGTERM it closes Slack's WebSocket (aiohttp, whose
    default slack_sdk keeps, waits that long for Slack's close frame) and deletes its health record
    (one Redis command, whose attempt times out after ``SOCKET_TIMEOUT_S``). Its grace periods
    outlast both; with Redis gone a kill costs nothing, as the record expires by itself."""
    ws_close = DEFAULT_WS_CLIENT_TIMEOUT.ws_close
    assert ws_close is not None, "aiohttp would wait for Slack's close frame without a limit"
    return ws_close + SOCKET_TIMEOUT_S
