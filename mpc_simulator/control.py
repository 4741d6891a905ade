"""Async client of the simulator's control API, for tests, the demo and benchmarks.

Every method is one control route and returns the decoded answer as the simulator's own
``msgspec`` types. A 4xx answer raises :class:`ControlError` with the simulator's message::

    async with SimulatorControl("http://127.0.0.1:8081") as control:
        await control.put_import("infinity-mall", "imp-1", bulks=[{"id": 11}, {"id": 12}])
        await control.patch_bulk("infinity-mall", "imp-1", 11, status="working")
        page = await control.flips()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Protocol, Self, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from mpc_simulator.scenarios import ScenarioStatus
from mpc_simulator.state import (
    DEFAULT_LOG_PAGE,
    Bulk,
    Counters,
    Fault,
    FaultKind,
    FlipEntry,
    FlipLogPage,
    Health,
    ImportDetail,
    RequestLogEntry,
    RequestLogPage,
)

CONTROL_TIMEOUT_S: Final = 30.0
"""Generous: a reset or a large import body can take a moment on a loaded benchmark machine."""

T = TypeVar("T")
E = TypeVar("E", RequestLogEntry, FlipEntry)


class _LogPage(Protocol[E]):
    items: list[E]


async def _whole_log(fetch: Callable[..., Awaitable[_LogPage[E]]]) -> list[E]:
    """Every entry of a paged log: each page continues after the last item of the one before."""
    entries: list[E] = []
    while page := (await fetch(since=entries[-1].seq if entries else 0)).items:
        entries += page
    return entries


class ControlError(Exception):
    """The control API refused a call (``status`` and the simulator's ``message``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class _Items(msgspec.Struct):
    items: list[Any]


class _Error(msgspec.Struct):
    error: str = ""


BulkFields = Mapping[str, Any]
"""A bulk spec as JSON fields: ``id``, ``request_number``, ``status``, counts, ``members_errors``..."""


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


class SimulatorControl:
    """One method per control operation. Use as ``async with``, or call :meth:`aclose`."""

    def __init__(self, base_url: str, *, client: httpx.AsyncClient | None = None) -> None:
        """``base_url`` is the simulator's root URL; pass ``client`` to share an ``httpx.AsyncClient``."""
        self.base_url = base_url.rstrip("/")
        self._own_client = client is None
        # No proxies from the environment: the simulator is a local test tool, and a proxy in
        # HTTP_PROXY would otherwise sit between a benchmark and 127.0.0.1.
        self._http = client or httpx.AsyncClient(timeout=CONTROL_TIMEOUT_S, trust_env=False)

    async def aclose(self) -> None:
        """Close the HTTP client (if this object created it)."""
        if self._own_client:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- plumbing -------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, int] | None = None,
    ) -> bytes:
        content = None if body is None else msgspec.json.encode(body)
        response = await self._http.request(
            method,
            f"{self.base_url}/_control{path}",
            content=content,
            params=params,
            headers={"Content-Type": "application/json"} if content is not None else None,
        )
        if response.status_code >= 400:
            try:
                message = msgspec.json.decode(response.content, type=_Error).error
            except (msgspec.DecodeError, msgspec.ValidationError):
                message = response.text[:200]
            raise ControlError(response.status_code, message)
        return response.content

    async def _get(self, path: str, kind: type[T], params: Mapping[str, int] | None = None) -> T:
        return msgspec.json.decode(await self._call("GET", path, params=params), type=kind)

    @staticmethod
    def _import_path(slug: str, import_id: str) -> str:
        return f"/imports/{_segment(slug)}/{_segment(import_id)}"

    # --- health and tokens ----------------------------------------------------------------------

    async def health(self) -> Health:
        """Liveness and a few numbers (imports, faults, requests, running scenarios)."""
        return await self._get("/health", Health)

    async def set_club_token(self, slug: str, token: str | None) -> None:
        """Give a club its own token (``None``: the club falls back to the default token)."""
        await self._call("PUT", f"/clubs/{_segment(slug)}/token", body={"token": token})

    async def set_default_token(self, token: str | None) -> None:
        """Change the token accepted for clubs without their own (``None``: any token)."""
        await self._call("PUT", "/default-token", body={"token": token})

    # --- imports and bulks ----------------------------------------------------------------------

    async def put_import(
        self,
        slug: str,
        import_id: str,
        bulks: Sequence[BulkFields] = (),
        *,
        legacy_totals: bool = False,
        created_at: str | None = None,
    ) -> ImportDetail:
        """Create or replace an import (bulk defaults: waiting, counts 0, request_number = position)."""
        body: dict[str, Any] = {"bulks": list(bulks), "legacy_totals": legacy_totals}
        if created_at is not None:
            body["created_at"] = created_at
        content = await self._call("PUT", self._import_path(slug, import_id), body=body)
        return msgspec.json.decode(content, type=ImportDetail)

    async def put_imports(self, imports: Sequence[tuple[str, str, Sequence[BulkFields]]]) -> int:
        """Create or replace many imports in one call: (slug, import_id, bulks) each."""
        body = {"imports": [{"slug": s, "import_id": i, "bulks": list(b)} for s, i, b in imports]}
        content = await self._call("PUT", "/imports", body=body)
        count: int = msgspec.json.decode(content)["count"]
        return count

    async def create_import(
        self, slug: str, bulks: Sequence[BulkFields] = (), *, legacy_totals: bool = False
    ) -> ImportDetail:
        """Create an import with a fresh UUID (409 if an explicit id exists; use :meth:`put_import`)."""
        body = {"slug": slug, "bulks": list(bulks), "legacy_totals": legacy_totals}
        return msgspec.json.decode(await self._call("POST", "/imports", body=body), type=ImportDetail)

    async def get_import(self, slug: str, import_id: str) -> ImportDetail:
        """An import with every bulk in full."""
        return await self._get(self._import_path(slug, import_id), ImportDetail)

    async def list_imports(self) -> list[ImportDetail]:
        """Every import."""
        items = (await self._get("/imports", _Items)).items
        return msgspec.convert(items, list[ImportDetail])

    async def delete_import(self, slug: str, import_id: str) -> None:
        """Remove an import (its routes answer 404 from now on)."""
        await self._call("DELETE", self._import_path(slug, import_id))

    async def add_bulk(self, slug: str, import_id: str, **fields: Any) -> Bulk:
        """Add a bulk (request_number defaults to one past the highest); an existing ``id`` is replaced."""
        content = await self._call("POST", f"{self._import_path(slug, import_id)}/bulks", body=fields)
        return msgspec.json.decode(content, type=Bulk)

    async def put_bulk(self, slug: str, import_id: str, bulk_id: int, **fields: Any) -> Bulk:
        """Create or replace the bulk ``bulk_id`` (omitted fields take a new bulk's defaults)."""
        content = await self._call(
            "PUT", f"{self._import_path(slug, import_id)}/bulks/{bulk_id}", body=fields
        )
        return msgspec.json.decode(content, type=Bulk)

    async def get_bulk(self, slug: str, import_id: str, bulk_id: int) -> Bulk:
        """One bulk as the control API sees it."""
        return await self._get(f"{self._import_path(slug, import_id)}/bulks/{bulk_id}", Bulk)

    async def patch_bulk(self, slug: str, import_id: str, bulk_id: int, **fields: Any) -> Bulk:
        """Change any fields at once (status, counts, retries, members_errors...)."""
        content = await self._call(
            "PATCH", f"{self._import_path(slug, import_id)}/bulks/{bulk_id}", body=fields
        )
        return msgspec.json.decode(content, type=Bulk)

    async def delete_bulk(self, slug: str, import_id: str, bulk_id: int) -> None:
        """Remove a bulk (it answers 404 and leaves the import's list)."""
        await self._call("DELETE", f"{self._import_path(slug, import_id)}/bulks/{bulk_id}")

    # --- faults ---------------------------------------------------------------------------------

    async def add_fault(
        self,
        kind: FaultKind | int,
        *,
        count: int | None = None,
        p: float | None = None,
        match: str | None = None,
        hang_s: float | None = None,
        retry_after: int | str | None = None,
    ) -> Fault:
        """Inject a fault (``kind`` 500/502/503/429/401/403/404, ``malformed``, ``truncated``, ``nested``,
        ``hang``, ``disconnect``)."""
        body: dict[str, Any] = {"kind": str(kind)}
        optional = {"count": count, "p": p, "match": match, "hang_s": hang_s, "retry_after": retry_after}
        body.update({key: value for key, value in optional.items() if value is not None})
        return msgspec.json.decode(await self._call("POST", "/faults", body=body), type=Fault)

    async def list_faults(self) -> list[Fault]:
        """Faults still able to hit, in the order they are tried."""
        return msgspec.convert((await self._get("/faults", _Items)).items, list[Fault])

    async def clear_faults(self) -> None:
        """Remove every fault."""
        await self._call("DELETE", "/faults")

    async def delete_fault(self, fault_id: int) -> None:
        """Remove one fault."""
        await self._call("DELETE", f"/faults/{fault_id}")

    # --- logs -----------------------------------------------------------------------------------

    async def requests(self, since: int = 0, limit: int = DEFAULT_LOG_PAGE) -> RequestLogPage:
        """Request log entries with ``seq > since``. The next page starts after this page's last
        item (``page.items[-1].seq``); ``page.last_seq`` is the newest entry ever logged."""
        return await self._get("/requests", RequestLogPage, {"since": since, "limit": limit})

    async def flips(self, since: int = 0, limit: int = DEFAULT_LOG_PAGE) -> FlipLogPage:
        """Flip log entries (status changes) with ``seq > since``, paged like :meth:`requests`."""
        return await self._get("/flips", FlipLogPage, {"since": since, "limit": limit})

    async def all_requests(self) -> list[RequestLogEntry]:
        """The whole request log, page by page."""
        return await _whole_log(self.requests)

    async def all_flips(self) -> list[FlipEntry]:
        """The whole flip log, page by page."""
        return await _whole_log(self.flips)

    async def counters(self) -> Counters:
        """Upstream requests by path kind, status and fault; the number of flips."""
        return await self._get("/counters", Counters)

    async def reset(self) -> None:
        """Stop scenarios and forget imports, faults, logs and counts (tokens back to start-up)."""
        await self._call("POST", "/reset")

    # --- scenarios ------------------------------------------------------------------------------

    async def start_scenario(self, name: str, **params: Any) -> ScenarioStatus:
        """Start ``demo``, ``realistic`` or ``random_flips`` with these parameters."""
        body = {"name": name, "params": params}
        return msgspec.json.decode(await self._call("POST", "/scenarios", body=body), type=ScenarioStatus)

    async def scenario(self, scenario_id: int) -> ScenarioStatus:
        """A scenario's status."""
        return await self._get(f"/scenarios/{scenario_id}", ScenarioStatus)

    async def list_scenarios(self) -> list[ScenarioStatus]:
        """Every scenario since the last reset."""
        return msgspec.convert((await self._get("/scenarios", _Items)).items, list[ScenarioStatus])

    async def stop_scenario(self, scenario_id: int) -> ScenarioStatus:
        """Stop a scenario; returns its final status."""
        content = await self._call("DELETE", f"/scenarios/{scenario_id}")
        return msgspec.json.decode(content, type=ScenarioStatus)
