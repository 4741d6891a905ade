"""One webhook attempt over HTTP: POST the signed body, classify what happened.

Connections are kept alive and pooled per (scheme, host name, port, checked address), without
giving the SSRF guard's check away:

- the host is resolved and its addresses checked (:meth:`UrlGuard.resolve`), then the request
  goes to one checked address by number, with the original ``Host`` header and TLS server name
  (``server_hostname``); aiohttp keys its pool by that address *and* that name, so a connection
  made and verified for one host is never used for another;
- a host's check is reused for at most :data:`ADDRESS_RECHECK_S`: then it is resolved and checked
  again, and requests move to the pool of the address it resolves to now (the old connections
  idle out); a refusal refuses at once;
- a new connection is made only after a check: the one this request just ran, or, when the check
  came from the cache, a fresh lookup that must still give the pooled address;
- nothing is ever resolved behind the check's back: the connector's resolver refuses every name.

aiohttp is used directly (no httpx client on top): the sender's work per delivery is a good part of
a delivery's cost. Redirects are never followed; cookies are never kept; no proxy from the
environment. TLS is always verified: against the default certificate authorities (certifi's
bundle, or ``SSL_CERT_FILE``), or only those of a bundle the operator names
(:func:`tls_context`); the certificate must name the URL's host, although the connection goes to
the checked address by number. The whole attempt (check, connect, send, the answer's status line
and headers) must fit in the timeout; up to 4 kB of the answer's body are kept for the attempt
log, read within what is left of it. A connection whose answer was not read to its end is closed,
not pooled. A POST is never sent twice within one attempt: a kept connection the receiver closed
just as the request went out is a failed attempt, retried on the schedule like any other (every
request a receiver sees is in the attempt log). Idle connections close before common servers close
theirs, which keeps that rare.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from types import SimpleNamespace
from typing import Final

import aiohttp
import httpx
import msgspec
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge import __version__
from bridge.webhooks.guard import (
    REFUSAL_MESSAGE,
    IPAddress,
    Refused,
    Target,
    UrlGuard,
    literal_address,
)
from bridge.webhooks.model import ErrorClass

RESPONSE_BODY_MAX_BYTES: Final = 4096
"""The attempt log keeps at most 4 kB of a receiver's answer."""
ADDRESS_RECHECK_S: Final = 60.0
"""A host's checked address is used for this long at most; then the host is resolved and checked
again before the next request (and a pooled connection is used only if it still points there)."""
KEEPALIVE_IDLE_S: Final = 4.0
"""An idle pooled connection is closed after this long: below the keep-alive timeout of common
servers (5 s for uvicorn and Node), so the bridge rarely writes to a connection the receiver is
closing."""
CHECKED_HOSTS_MAX: Final = 10_000
"""Host checks remembered; beyond, the memory is cleared (every host is checked again)."""
DETAIL_MAX_CHARS: Final = 300
USER_AGENT: Final = f"mpc-import-bridge/{__version__}"
REDIRECT_STATUSES: Final = range(300, 400)


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The TLS client settings of webhook requests: certificates verified, host names checked.

    ``ca_bundle``: a PEM file of the certificate authorities to trust instead of the default ones.
    Raises :class:`OSError` when it cannot be read and :class:`ssl.SSLError` when it holds no
    certificate (never falls back to less verification)."""
    if ca_bundle is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context(cafile=ca_bundle)


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


class _Checked:
    """A host's checked addresses, the one requests go to, and when they were checked."""

    __slots__ = ("addresses", "at", "chosen")

    def __init__(self, addresses: list[IPAddress], at: float) -> None:
        # IPv4 first: one address is used at a time, and IPv4 reaches more receivers.
        self.addresses = sorted(addresses, key=lambda a: a.version)
        self.at = at
        self.chosen = 0

    @property
    def address(self) -> IPAddress:
        return self.addresses[self.chosen % len(self.addresses)]


class _Pin(msgspec.Struct, kw_only=True):
    """What one request was pinned to, handed to the connection hook (``trace_request_ctx``)."""

    target: Target
    address: IPAddress
    fresh: bool
    """The check ran for this request: a new connection needs no other."""


class _NoLookups(AbstractResolver):
    """Every request names its address by number; a name reaching the connector is refused."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        raise Refused(f"{host} reached the connector unchecked")

    async def close(self) -> None:
        return None


class WebhookSender:
    def __init__(
        self,
        guard: UrlGuard,
        *,
        timeout_s: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        recheck_s: float = ADDRESS_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self._guard = guard
        self._max_connections = max_connections
        self._ssl = ssl_context or tls_context()
        self._recheck_s = recheck_s
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._checked: dict[tuple[str, str, int], _Checked] = {}
        self._checking: dict[tuple[str, str, int], asyncio.Task[_Checked]] = {}
        self._urls: dict[str, tuple[yarl.URL, str, str]] = {}
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
        }

    # ------------------------------------------------------------------ the pool

    def _current_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            hooks = aiohttp.TraceConfig()
            hooks.on_connection_create_start.append(self._on_new_connection)
            connector = aiohttp.TCPConnector(
                resolver=_NoLookups(),
                use_dns_cache=False,
                limit=self._max_connections,
                keepalive_timeout=KEEPALIVE_IDLE_S,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=[hooks],
                skip_auto_headers=("Accept",),
                # The attempt's own deadline bounds everything (aiohttp's timers would only add work).
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def _on_new_connection(
        self, _session: aiohttp.ClientSession, context: SimpleNamespace, _params: object
    ) -> None:
        pin = context.trace_request_ctx
        if not isinstance(pin, _Pin) or pin.fresh:
            return
        target = pin.target
        addresses = await self._guard.resolve(target.host, target.port, plain_http=target.scheme == "http")
        key = (target.scheme, target.host, target.port)
        if pin.address not in addresses:
            self._checked.pop(key, None)
            raise Refused(f"{target.host} no longer resolves to the address it was checked for")
        entry = self._checked.get(key)
        if entry is not None:
            entry.at = self._clock()

    async def _pin(self, target: Target) -> _Pin:
        """The checked address this request goes to (checked now, or less than
        :data:`ADDRESS_RECHECK_S` ago); raises :class:`Refused`."""
        literal = literal_address(target.host)
        if literal is not None:  # checked by the preflight, by number: nothing to resolve
            return _Pin(target=target, address=literal, fresh=True)
        key = (target.scheme, target.host, target.port)
        entry = self._checked.get(key)
        if entry is not None and self._clock() - entry.at < self._recheck_s:
            return _Pin(target=target, address=entry.address, fresh=False)
        checking = self._checking.get(key)
        if checking is None:  # one lookup for every request waiting on this host
            checking = asyncio.get_running_loop().create_task(self._check(key, target))
            self._checking[key] = checking
            checking.add_done_callback(lambda done: self._checked_done(key, done))
        entry = await asyncio.shield(checking)
        return _Pin(target=target, address=entry.address, fresh=True)

    async def _check(self, key: tuple[str, str, int], target: Target) -> _Checked:
        self._checked.pop(key, None)
        addresses = await self._guard.resolve(target.host, target.port, plain_http=target.scheme == "http")
        if len(self._checked) >= CHECKED_HOSTS_MAX:
            self._checked.clear()
        entry = self._checked[key] = _Checked(addresses, self._clock())
        return entry

    def _checked_done(self, key: tuple[str, str, int], done: asyncio.Task[_Checked]) -> None:
        self._checking.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every waiter may have given up meanwhile

    def _request_url(self, url: str, address: IPAddress) -> tuple[yarl.URL, str, str]:
        """The URL with the address in place of the host, the ``Host`` header, the TLS name."""
        known = self._urls.get(url)
        if known is None:
            parsed = httpx.URL(url)
            name = parsed.raw_host.decode("ascii")
            bracketed = f"[{name}]" if ":" in name else name
            host_header = bracketed if parsed.port is None else f"{bracketed}:{parsed.port}"
            if len(self._urls) >= CHECKED_HOSTS_MAX:
                self._urls.clear()
            known = self._urls[url] = (yarl.URL(str(parsed), encoded=True), host_header, name)
        template, host_header, name = known
        return template.with_host(str(address)), host_header, name

    # ------------------------------------------------------------------ one attempt

    async def post(self, target: Target, url: str, headers: Mapping[str, str], body: bytes) -> HttpOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        started = time.monotonic()

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout_at(deadline):
                response = await self._send(target, url, headers, body)
        except (TimeoutError, OSError, aiohttp.ClientError, ValueError) as exc:
            error, detail = classify(exc)
            if error == "timeout":
                detail = f"no answer within {self.timeout_s:g}s"
            elif error == "connect":
                self._next_address(target)
            refused = refusal_of(exc)
            return HttpOutcome(
                duration_ms=elapsed_ms(),
                error=error,
                detail=detail,
                refusal=refused.reason if refused is not None else None,
            )
        try:
            status = response.status
            answered_ms = elapsed_ms()
            raw = await _read_prefix(response, deadline)
            body_text = printable_prefix(raw)
        finally:
            if response.content.at_eof():
                response.release()  # back to the pool
            else:
                response.close()  # an answer not read to its end: the connection cannot be reused
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

    async def _send(
        self, target: Target, url: str, headers: Mapping[str, str], body: bytes
    ) -> aiohttp.ClientResponse:
        pin = await self._pin(target)
        address_url, host_header, name = self._request_url(url, pin.address)
        return await self._current_session().post(
            address_url,
            data=body,
            headers={**self._headers, **headers, "Host": host_header},
            server_hostname=name,
            allow_redirects=False,
            trace_request_ctx=pin,
        )

    def _next_address(self, target: Target) -> None:
        """After a failed connection, the next attempt tries the host's next checked address."""
        entry = self._checked.get((target.scheme, target.host, target.port))
        if entry is not None:
            entry.chosen += 1

    async def aclose(self) -> None:
        for task in list(self._checking.values()):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._guard.aclose()


async def _read_prefix(response: aiohttp.ClientResponse, deadline: float) -> bytes:
    """Up to 4 kB of the body, within the attempt's deadline (what came in time is kept)."""
    content = response.content
    if content.is_eof():  # all of it is here already (a short answer, mostly): nothing to wait for
        return content.read_nowait(RESPONSE_BODY_MAX_BYTES)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            while size < RESPONSE_BODY_MAX_BYTES:
                chunk = await response.content.read(RESPONSE_BODY_MAX_BYTES - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass  # the status counts; the body is only for the log
    return b"".join(chunks)[:RESPONSE_BODY_MAX_BYTES]
