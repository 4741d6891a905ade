"""One webhook attempt over HTTP: POST the signed body, classify what happened.

Two clients (:func:`bridge.http.build_pinned_client`): one for ``https`` whose resolver accepts
public and allow-listed addresses, one for plain ``http`` whose resolver accepts allow-listed
addresses only. The whole attempt (connect, send, the answer's status line and headers) must fit
in the timeout; up to 4 kB of the answer's body are kept for the attempt log, read within what
is left of it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import Final

import aiohttp
import httpx
import msgspec

from bridge import __version__
from bridge.http import build_pinned_client
from bridge.webhooks.guard import REFUSAL_MESSAGE, PinnedResolver, Refused, Target, UrlGuard
from bridge.webhooks.model import ErrorClass

RESPONSE_BODY_MAX_BYTES: Final = 4096
"""The attempt log keeps at most 4 kB of a receiver's answer."""
DETAIL_MAX_CHARS: Final = 300
USER_AGENT: Final = f"mpc-import-bridge/{__version__}"
REDIRECT_STATUSES: Final = range(300, 400)


class HttpOutcome(msgspec.Struct, kw_only=True, frozen=True):
    """What one POST came to."""

    duration_ms: int
    status_code: int | None = None
    error: ErrorClass | None = None
    detail: str = ""
    response_body: str = ""
    retry_after: str | None = None
    """The answer's ``Retry-After`` header, as sent."""
    refusal: str | None = None
    """Why the SSRF guard refused the destination: for the bridge's log only (the attempt log,
    which API callers read, says :data:`REFUSAL_MESSAGE`)."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what caused it, and the OSError aiohttp wraps in a connector error."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]
        if isinstance(current, aiohttp.ClientConnectorError):
            pending.append(current.os_error)


def refusal_of(exc: BaseException) -> Refused | None:
    """The guard's refusal behind a failed request, if that is what it was."""
    return next((cause for cause in _causes(exc) if isinstance(cause, Refused)), None)


def classify(exc: BaseException) -> tuple[ErrorClass, str]:
    """The error class of a failed request, and a short description of it (no headers, no body)."""
    if refusal_of(exc) is not None:
        return "blocked", REFUSAL_MESSAGE
    causes = list(_causes(exc))
    if any(isinstance(c, aiohttp.ClientSSLError | ssl.SSLError) for c in causes):
        return "tls", _describe(exc)
    timeouts = (TimeoutError, aiohttp.ServerTimeoutError, httpx.ReadTimeout, httpx.WriteTimeout)
    if any(isinstance(c, timeouts) for c in causes):
        return "timeout", _describe(exc)
    if any(isinstance(c, aiohttp.ClientConnectorDNSError) for c in causes):
        return "connect", "the host name did not resolve: " + _describe(exc)
    return "connect", _describe(exc)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    named = f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
    return named[:DETAIL_MAX_CHARS]


def printable_prefix(raw: bytes, limit: int = RESPONSE_BODY_MAX_BYTES) -> str:
    """At most ``limit`` bytes of UTF-8 text from an answer's body (undecodable bytes replaced)."""
    text = raw[:limit].decode("utf-8", errors="replace")
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


class WebhookSender:
    def __init__(
        self,
        guard: UrlGuard,
        *,
        timeout_s: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._guard = guard
        timeout = httpx.Timeout(timeout_s)
        self._clients = {
            scheme: build_pinned_client(
                PinnedResolver(guard, plain_http=scheme == "http"),
                timeout=timeout,
                max_connections=max_connections,
                ssl_context=ssl_context,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
            for scheme in ("https", "http")
        }

    async def post(self, target: Target, url: str, headers: Mapping[str, str], body: bytes) -> HttpOutcome:
        client = self._clients[target.scheme]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        started = time.monotonic()

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        request = client.build_request(
            "POST", url, content=body, headers={**headers, "Content-Type": "application/json"}
        )
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.send(request, stream=True)
        except (TimeoutError, httpx.HTTPError, OSError, aiohttp.ClientError) as exc:
            error, detail = classify(exc)
            if error == "timeout":
                detail = f"no answer within {self.timeout_s:g}s"
            refused = refusal_of(exc)
            return HttpOutcome(
                duration_ms=elapsed_ms(),
                error=error,
                detail=detail,
                refusal=refused.reason if refused is not None else None,
            )
        try:
            status = response.status_code
            answered_ms = elapsed_ms()
            body_text = printable_prefix(await _read_prefix(response, deadline))
        finally:
            await response.aclose()
        retry_after = response.headers.get("retry-after")
        if status in REDIRECT_STATUSES:
            location = response.headers.get("location", "")[:DETAIL_MAX_CHARS]
            return HttpOutcome(
                duration_ms=answered_ms,
                status_code=status,
                error="redirect",
                detail=f"redirects are not followed (Location: {location})",
                response_body=body_text,
            )
        return HttpOutcome(
            duration_ms=answered_ms, status_code=status, response_body=body_text, retry_after=retry_after
        )

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        await self._guard.aclose()


async def _read_prefix(response: httpx.Response, deadline: float) -> bytes:
    """Up to 4 kB of the body, within the attempt's deadline (what came in time is kept)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= RESPONSE_BODY_MAX_BYTES:
                    break
    except (TimeoutError, httpx.HTTPError, aiohttp.ClientError):
        pass  # the status counts; the body is only for the log
    return b"".join(chunks)[:RESPONSE_BODY_MAX_BYTES]
