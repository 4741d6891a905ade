"""Client of the two MPC "Members Imports" read endpoints.

Every answer becomes an :class:`MpcResponse`: the decoded body, or a :class:`Failure` of one of
the kinds the rest of the bridge knows (not found, unauthorized, rate-limited with its
``Retry-After``, server error, timeout, connection, malformed body, rejected). Nothing here
raises for an upstream problem, and no token ever reaches a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Generic, Protocol, TypeVar

import httpx
import msgspec

from bridge import __version__
from bridge.config import MPC_RETRY_AFTER_MAX_S
from bridge.core.model import Failure, FailureKind, MpcBulk, MpcImport
from bridge.core.retry import parse_retry_after
from bridge.http import BodyTooLarge, Fetcher, recorded_sends, transport_error_kind

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""A bulk of 1,000 members with errors is a few hundred kB; anything this large is not MPC."""
MAX_ERROR_DETAIL_CHARS: Final = 200
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""Answers whose ``Retry-After`` is read: rate limited, and MPC's maintenance."""
UNAUTHORIZED_STATUSES: Final = frozenset({401, 402, 403, 444})
"""Bad token, feature disabled, permit missing, blocked by MPC's firewall: retrying won't help."""

T = TypeVar("T")


def user_agent() -> str:
    return f"mpc-import-bridge/{__version__}"


class MpcResponse(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    value: T | None = None
    failure: Failure | None = None
    status: int | None = None
    elapsed_s: float = 0.0
    sent_at: float | None = None
    """When the request went out on its connection (epoch s; ``None``: it never got one)."""

    @property
    def ok(self) -> bool:
        return self.failure is None


class ClubCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """What MPC needs to know who calls: the token and, optionally, a club's own product name."""

    token: str
    product_name: str | None = None

    def __repr__(self) -> str:
        return f"ClubCredentials(token='***', product_name={self.product_name!r})"


class CredentialsUnreadable(Exception):
    """The club has stored credentials that cannot be decrypted (the message is the club slug)."""


class CredentialSource(Protocol):
    """Where a club's MPC credentials come from (configuration, or stored per club). Raises
    :class:`CredentialsUnreadable` when the club's own cannot be read."""

    async def credentials_for(self, slug: str) -> ClubCredentials | None: ...


class StaticTokens:
    """One token for every club (``BRIDGE_MPC_TOKEN``)."""

    def __init__(self, token: str | None) -> None:
        self._credentials = ClubCredentials(token=token) if token else None

    async def credentials_for(self, slug: str) -> ClubCredentials | None:
        return self._credentials


class UpstreamClient(Protocol):
    """What the poller needs from MPC (the simulator and MPC itself both serve it)."""

    async def get_bulk(self, slug: str, import_id: str, bulk_id: int) -> MpcResponse[MpcBulk]: ...

    async def get_import(self, slug: str, import_id: str) -> MpcResponse[MpcImport]: ...


class _ErrorBody(msgspec.Struct):
    error: str | None = None


_ERROR_DECODER: Final = msgspec.json.Decoder(_ErrorBody)


def _error_detail(status: int, body: bytes) -> str:
    try:
        message = _ERROR_DECODER.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = None
    text = f"HTTP {status}" + (f": {message}" if message else "")
    return text[:MAX_ERROR_DETAIL_CHARS]


def _failure_kind(status: int) -> FailureKind:
    if status in UNAUTHORIZED_STATUSES:
        return "unauthorized"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "rejected"


class MpcClient:
    """The two endpoints over one shared ``httpx.AsyncClient`` (built by :mod:`bridge.http`)."""

    def __init__(
        self,
        http: Fetcher,
        *,
        base_url: str,
        tokens: CredentialSource,
        product_name: str,
        deadline_s: float,
        retry_after_max_s: float = MPC_RETRY_AFTER_MAX_S,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._product_name = product_name
        self._deadline_s = deadline_s
        """Cap on one whole request, body included (a slow-drip body cannot hold a poll forever)."""
        self._retry_after_max_s = retry_after_max_s
        self._bulk_decoder = msgspec.json.Decoder(MpcBulk)
        self._import_decoder = msgspec.json.Decoder(MpcImport)

    def import_url(self, slug: str, import_id: str) -> str:
        return f"{self._base}/v3/{slug}/members/imports/{import_id}"

    async def get_bulk(self, slug: str, import_id: str, bulk_id: int) -> MpcResponse[MpcBulk]:
        response = await self._get(
            slug, f"{self.import_url(slug, import_id)}/bulks/{bulk_id}", self._bulk_decoder
        )
        if response.value is not None and response.value.id != bulk_id:
            return MpcResponse(
                failure=Failure(
                    kind="malformed", detail=f"asked for bulk {bulk_id}, got {response.value.id}"
                ),
                status=response.status,
                elapsed_s=response.elapsed_s,
                sent_at=response.sent_at,
            )
        return response

    async def get_import(self, slug: str, import_id: str) -> MpcResponse[MpcImport]:
        return await self._get(slug, self.import_url(slug, import_id), self._import_decoder)

    async def _get(self, slug: str, url: str, decoder: msgspec.json.Decoder[T]) -> MpcResponse[T]:
        try:
            credentials = await self._tokens.credentials_for(slug)
        except CredentialsUnreadable:
            return MpcResponse(
                failure=Failure(
                    kind="credentials_unreadable",
                    detail="the club's stored MPC token cannot be decrypted with BRIDGE_SECRET_KEY",
                )
            )
        if credentials is None:
            return MpcResponse(failure=Failure(kind="unauthorized", detail="no MPC token for this club"))
        headers = {
            "X-Client-Authorization": credentials.token,
            "X-Loyalty-Club-Slug": slug,
            "X-Product-Name": credentials.product_name or self._product_name,
            "X-User-Agent": user_agent(),
            "Accept": "application/json",
        }
        started = time.perf_counter()
        with recorded_sends() as sends:
            try:
                async with asyncio.timeout(self._deadline_s):
                    status, response_headers, body = await self._http.get(url, headers)
            except TimeoutError:
                return self._failed(
                    "timeout", f"no answer within {self._deadline_s:g}s", None, started, _last(sends)
                )
            except BodyTooLarge:
                return self._failed(
                    "malformed", f"body larger than {MAX_BODY_BYTES} bytes", 200, started, _last(sends)
                )
            except httpx.HTTPError as exc:
                kind = transport_error_kind(exc)
                detail = (
                    "no answer in time"
                    if kind == "timeout"
                    else f"connection failed ({type(exc.__cause__ or exc).__name__})"
                )
                return self._failed(kind, detail, None, started, _last(sends))
        sent_at = _last(sends)
        elapsed = time.perf_counter() - started
        if status == 200:
            try:
                return MpcResponse(
                    value=decoder.decode(body), status=status, elapsed_s=elapsed, sent_at=sent_at
                )
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as exc:
                # RecursionError: JSON nested deeper than msgspec follows (a hostile answer).
                return self._failed("malformed", str(exc)[:MAX_ERROR_DETAIL_CHARS], status, started, sent_at)
        retry_after = None
        if status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(
                response_headers.get("retry-after"), now=time.time(), highest_s=self._retry_after_max_s
            )
        failure = Failure(
            kind=_failure_kind(status), detail=_error_detail(status, body), retry_after=retry_after
        )
        return MpcResponse(failure=failure, status=status, elapsed_s=elapsed, sent_at=sent_at)

    @staticmethod
    def _failed(
        kind: FailureKind, detail: str, status: int | None, started: float, sent_at: float | None
    ) -> MpcResponse[T]:
        return MpcResponse(
            failure=Failure(kind=kind, detail=detail),
            status=status,
            elapsed_s=time.perf_counter() - started,
            sent_at=sent_at,
        )


def _last(sends: list[float]) -> float | None:
    """When the request last went out (aiohttp sends it again on a kept-alive connection that
    turned out closed)."""
    return sends[-1] if sends else None
