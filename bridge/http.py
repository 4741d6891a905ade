"""Every outbound HTTP client is built here, so the transport is one decision in one place.

httpx is the API the rest of the code uses. Its default transport (httpcore) manages about
700 requests/s per process under concurrency on a 2-core machine, against 6,600+ for aiohttp (
measured), so clients run on the ``httpx-aiohttp`` transport. Swapping back is one line below.

The MPC poller, the hot path (thousands of GETs a second), talks to the transport directly
through :class:`Fetcher`, without the client's per-request work it does not need (cookie jar,
auth flow, redirect loop, URL merging). On the aiohttp transport it goes one step further and
asks the transport's aiohttp session itself, with the transport's options and its mapping of
aiohttp's errors to httpx's: no ``httpx.Request`` and ``httpx.Response`` built and converted
around each request (a tenth of a quiet worker's CPU).

Webhook deliveries are the one exception: :mod:`bridge.webhooks.sender` holds its own aiohttp
session, since its connection pool is part of the SSRF guard (keyed by the checked address).

The poll schedule counts MPC's floor from the moment a request went out (:func:`recorded_sends`):
that is when its connection was in hand, not when the caller asked, since waiting for a connection
(a new one, or one of a pool all busy) can take longer than the rest of the request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Final, Literal

import aiohttp
import httpx
import yarl
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

URL_CACHE_SIZE: Final = 100_000
"""Parsed URLs kept by a :class:`Fetcher`: a poller asks the same URLs over and over, and parsing
one costs more than the rest of building the request."""
DEFAULT_MAX_CONNECTIONS: Final = 100
"""aiohttp's own default, for limits that set none."""
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)


_sends: ContextVar[list[float] | None] = ContextVar("bridge_http_sends", default=None)


@contextlib.contextmanager
def recorded_sends() -> Iterator[list[float]]:
    """The epoch times at which the requests made inside (in this task) went out, in order.

    A time is taken once the request's connection is in hand: from there aiohttp writes the
    request without yielding to the event loop, so it is when the request left, to a few
    microseconds. A request that never got a connection has none."""
    sends: list[float] = []
    token = _sends.set(sends)
    try:
        yield sends
    finally:
        _sends.reset(token)


class _SendRecordingConnector(aiohttp.TCPConnector):
    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's own signature
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        sends = _sends.get()
        if sends is not None:
            sends.append(time.time())
        return connection


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport on a connector that records when requests go out."""

    def get_client(self) -> aiohttp.ClientSession:
        connector = _SendRecordingConnector(
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            limit=self.limits.max_connections or DEFAULT_MAX_CONNECTIONS,
        )
        return aiohttp.ClientSession(connector=connector)


def build_transport(*, limits: httpx.Limits = DEFAULT_LIMITS) -> httpx.AsyncBaseTransport:
    """The aiohttp-backed transport outbound clients run on (never follows redirects itself)."""
    return _Transport(limits=limits, trust_env=False)


class BodyTooLarge(Exception):
    """The response body was larger than the caller allows."""


class Fetcher:
    """GET requests straight over a transport, the body read up to a cap."""

    def __init__(
        self, transport: httpx.AsyncBaseTransport, *, timeout: httpx.Timeout, max_body_bytes: int
    ) -> None:
        self._transport = transport
        self._extensions = {"timeout": timeout.as_dict()}
        # As the aiohttp transport turns an httpx timeout into aiohttp's.
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
        )
        self._max_body_bytes = max_body_bytes
        self._urls: dict[str, httpx.URL] = {}
        self._aiohttp_urls: dict[str, yarl.URL] = {}

    async def get(self, url: str, headers: dict[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        """Status, headers (case-insensitive) and body; raises ``httpx.HTTPError`` subclasses or
        :class:`BodyTooLarge`."""
        if isinstance(self._transport, AiohttpTransport):
            return await self._get_aiohttp(self._transport, url, headers)
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        request = httpx.Request("GET", parsed, headers=headers, extensions=self._extensions)
        response = await self._transport.handle_async_request(request)
        try:
            # The cap holds while reading: no need to parse Content-Length first (headers are
            # decoded lazily, and this is the hot path).
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.stream:  # type: ignore[union-attr]
                size += len(chunk)
                if size > self._max_body_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
        finally:
            await response.aclose()
        return response.status_code, response.headers, b"".join(chunks)

    async def _get_aiohttp(
        self, transport: AiohttpTransport, url: str, headers: dict[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        """What :meth:`AiohttpTransport.handle_async_request` sends for a GET, and its body read as
        the transport's response stream reads it, on the transport's own session."""
        session = transport.client
        if not isinstance(session, aiohttp.ClientSession):
            session = transport.client = transport.get_client()
        parsed = self._aiohttp_urls.get(url)
        if parsed is None:
            if len(self._aiohttp_urls) >= URL_CACHE_SIZE:
                self._aiohttp_urls.clear()
            parsed = self._aiohttp_urls[url] = yarl.URL(url)
        with map_aiohttp_exceptions():
            async with session.get(
                parsed,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=self._aiohttp_timeout,
            ) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(AiohttpResponseStream.CHUNK_SIZE):
                    size += len(chunk)
                    if size > self._max_body_bytes:
                        raise BodyTooLarge
                    chunks.append(chunk)
        return response.status, response.headers, b"".join(chunks)

    async def aclose(self) -> None:
        await self._transport.aclose()


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
    session (and its connections) for every call.
    """
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=connections),
    )
