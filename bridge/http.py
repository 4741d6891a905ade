"""Every outbound HTTP client is built here, so the transport is one decision in one place.

httpx is the API the rest of the code uses. Its default transport (httpcore) manages about
700 requests/s per process under concurrency here, against 6,600+ for aiohttp (LIBRARY-NOTES,
measured), so clients run on the ``httpx-aiohttp`` transport. Swapping back is one line below.
"""

from __future__ import annotations

from typing import Final, Literal

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient

DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=3.0)
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)


def build_client(
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that never follows redirects, on the aiohttp transport."""
    return HttpxAiohttpClient(timeout=timeout, limits=limits, headers=headers, follow_redirects=False)


def transport_error_kind(exc: BaseException) -> Literal["timeout", "connection"]:
    """Whether a failed request timed out or lost its connection.

    The aiohttp transport reports any ``ClientConnectionError`` (a server closing the connection
    included) as ``httpx.ConnectTimeout``; the aiohttp exception it wraps tells them apart.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(cause, aiohttp.ClientConnectionError) or not isinstance(exc, httpx.TimeoutException):
        return "connection"
    return "timeout"


def build_session(*, timeout_s: float, connections: int = 100) -> aiohttp.ClientSession:
    """A shared ``aiohttp.ClientSession`` for libraries that need one (slack_sdk's async clients).

    One per process, created and closed with it: without one, slack_sdk opens and closes a
    session (and its connections) for every call (LIBRARY-NOTES §3).
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=connections),
    )
