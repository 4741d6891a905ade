"""The simulator's HTTP server: MPC's two read endpoints, plus the control API under ``/_control/``.

Upstream routes answer exactly as MPC does (see ``upstream/mpc-members-import-bulk.md``): the
bulk object, the import with its bulk list, ``{"error": "..."}`` bodies, header checks 470 →
471 → 401, and injected faults before all of that. The hot path is a fault check, three header
look-ups, two dict look-ups and cached bytes; nothing is printed per request (the request log is
an in-memory ring buffer).

Control routes (JSON bodies and answers, no auth; ``I`` = ``/_control/imports/{slug}/{import_id}``)::

    GET    /_control/health
    PUT    /_control/default-token             {"token": str | null}
    PUT    /_control/clubs/{slug}/token        {"token": str | null}
    GET    /_control/imports                   → {"items": [import]}
    POST   /_control/imports                   {"slug", "import_id"?, "bulks"?, "legacy_totals"?} → 201
                                               (409 when import_id exists; omitted = a fresh UUID)
    GET    I
    PUT    I                                   {"bulks"?: [bulk spec], "legacy_totals"?, "created_at"?}
    DELETE I                                   → 204
    POST   I/bulks                             bulk spec → 201 (replaces a bulk with the same id)
    GET    I/bulks/{bulk_id}
    PUT    I/bulks/{bulk_id}                   bulk spec
    PATCH  I/bulks/{bulk_id}                   any of status, counts, retries, members_errors...
    DELETE I/bulks/{bulk_id}                   → 204
    GET    /_control/faults                    → {"items": [fault]}
    POST   /_control/faults                    {"kind", "count"?, "p"?, "match"?, "hang_s"?, "retry_after"?}
    DELETE /_control/faults                    → 204 (all)
    DELETE /_control/faults/{fault_id}         → 204
    GET    /_control/requests?since=N&limit=M  → {"items", "first_seq", "last_seq"}
    GET    /_control/flips?since=N&limit=M     → {"items", "first_seq", "last_seq"}
    GET    /_control/counters
    POST   /_control/reset                     → 204
    GET    /_control/scenarios                 → {"items": [status]}
    POST   /_control/scenarios                 {"name", "params"?} → 201 status
    GET    /_control/scenarios/{id}
    DELETE /_control/scenarios/{id}            → the status, stopped

Bad input answers 400, unknown objects 404, always as ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Self, TypeVar

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from mpc_simulator.scenarios import ScenarioManager, ScenarioStatus
from mpc_simulator.state import (
    BULK_NOT_FOUND,
    DEFAULT_REQUEST_LOG_SIZE,
    DEFAULT_TOKEN,
    IMPORT_NOT_FOUND,
    MAX_LOG_PAGE,
    RATELIMIT_BUCKET_SIZE,
    SLUG_HEADER,
    Answer,
    BulkPatch,
    BulkSpec,
    Fault,
    FaultSpec,
    Health,
    ImportBatch,
    ImportSpec,
    NewImportSpec,
    PathKind,
    Simulator,
    SimulatorError,
    TokenCheck,
    error_body,
)

T = TypeVar("T")

SIMULATOR_KEY: Final = web.AppKey("simulator", Simulator)
SCENARIOS_KEY: Final = web.AppKey("scenarios", ScenarioManager)
ARRIVED_KEY: Final = web.RequestKey("arrived", float)
"""Per request: when its first bytes were read (``time.monotonic()``), set by :func:`_arrival`."""
CONTROL_PREFIX: Final = "/_control"
BULK_ROUTE: Final = "/v3/{slug}/members/imports/{import_id}/bulks/{bulk_id}"
IMPORT_ROUTE: Final = "/v3/{slug}/members/imports/{import_id}"
LISTEN_BACKLOG: Final = 2048
"""Benchmarks open hundreds of connections at once; the default backlog (128) would drop some."""
SHUTDOWN_TIMEOUT_S: Final = 0.5
"""How long stop() lets in-flight requests (a ``hang``) finish before cancelling them."""
NESTED_DEPTH: Final = 10_000
"""How deep the ``nested`` fault buries ``members_errors`` (far past any JSON decoder's limit)."""
MAX_CONTROL_BODY_BYTES: Final = 64 * 1024 * 1024
"""An import of thousands of bulks with their ``members_errors`` is a large but legitimate body."""

_JSON: Final = "application/json"
_FAULT_MESSAGES: Final = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable (maintenance)",
    429: "Too many requests",
    401: "Unauthorized: invalid client authorization token",
    403: "Forbidden: API permit missing",
}
_FAULT_BODIES: Final = {status: error_body(message) for status, message in _FAULT_MESSAGES.items()}
_NOT_FOUND_BODIES: Final[dict[PathKind, bytes]] = {
    "bulk": error_body(BULK_NOT_FOUND),
    "import": error_body(IMPORT_NOT_FOUND),
    "other": error_body("Not found"),
}
_NOTHING_SHOWN: Final[dict[int, str]] = {}


def _json(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


# --- upstream -------------------------------------------------------------------------------------


async def _serve(
    sim: Simulator,
    request: web.Request,
    kind: PathKind,
    slug: str | None,
    import_id: str | None,
    answer: Callable[[], Answer],
) -> web.StreamResponse:
    """Answer one upstream request, through the first fault that hits it, and log it."""
    arrived = request[ARRIVED_KEY]
    fault = sim.pick_fault(request.path) if sim.has_faults else None
    if fault is None or fault.kind == "hang":
        if fault is not None:
            await asyncio.sleep(fault.hang_s)
        result = answer()
        _log(sim, request, arrived, kind, slug, import_id, result.status, result.token, fault, result.shown)
        return _json(result.body, result.status)
    token = sim.token_check(slug or "", request.headers)
    if fault.kind == "disconnect":
        _log(sim, request, arrived, kind, slug, import_id, None, token, fault, _NOTHING_SHOWN)
        if request.transport is not None:
            request.transport.close()
        # Nothing reaches the client: the transport is closed before aiohttp writes this.
        return web.Response(status=204)
    if fault.kind == "malformed":
        # Half of a JSON object never parses: its closing brace is always in the cut half.
        body = answer().body
        _log(sim, request, arrived, kind, slug, import_id, 200, token, fault, _NOTHING_SHOWN)
        return _json(body[: len(body) // 2])
    if fault.kind == "nested":
        _log(sim, request, arrived, kind, slug, import_id, 200, token, fault, _NOTHING_SHOWN)
        return _json(_nested(answer().body))
    if fault.kind == "truncated":
        return await _truncated(sim, request, arrived, kind, slug, import_id, token, fault, answer)
    status = int(fault.kind)
    _log(sim, request, arrived, kind, slug, import_id, status, token, fault, _NOTHING_SHOWN)
    return _json(
        _FAULT_BODIES.get(status) or _NOT_FOUND_BODIES[kind], status, _fault_headers(fault, status, slug)
    )


async def _truncated(
    sim: Simulator,
    request: web.Request,
    arrived: float,
    kind: PathKind,
    slug: str | None,
    import_id: str | None,
    token: TokenCheck,
    fault: Fault,
    answer: Callable[[], Answer],
) -> web.StreamResponse:
    """A 200 whose ``Content-Length`` promises the whole body, half of it sent, then the
    connection closed: the client sees a body cut short, not an invalid one."""
    body = answer().body
    _log(sim, request, arrived, kind, slug, import_id, 200, token, fault, _NOTHING_SHOWN)
    response = web.StreamResponse(status=200)
    response.content_type = _JSON
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


def _nested(body: bytes) -> bytes:
    """The answer with ``members_errors`` nested :data:`NESTED_DEPTH` lists deep: valid JSON that
    no sane decoder follows to the bottom."""
    document = json.loads(body)
    if isinstance(document, dict):
        document["members_errors"] = {"nested@example.com": "NESTED"}
        text = json.dumps(document)
        return text.replace('"NESTED"', "[" * NESTED_DEPTH + "]" * NESTED_DEPTH).encode()
    return body


def _fault_headers(fault: Fault, status: int, slug: str | None) -> dict[str, str] | None:
    if status == 503:
        return {"Retry-After": str(fault.retry_after)}
    if status == 429:
        # MPC's token bucket: the bucket (per customer), what is left (can go below 0), the cost.
        return {
            "Retry-After": str(fault.retry_after),
            "ratelimit-bucket": f"{slug or 'customer'}:{RATELIMIT_BUCKET_SIZE}",
            "ratelimit-remaining": "-1",
            "ratelimit-cost": "1",
        }
    return None


def _log(
    sim: Simulator,
    request: web.Request,
    arrived: float,
    kind: PathKind,
    slug: str | None,
    import_id: str | None,
    status: int | None,
    token: TokenCheck,
    fault: Fault | None,
    shown: dict[int, str],
) -> None:
    sim.record_request(
        arrived_mono=arrived,
        method=request.method,
        path=request.path,
        kind=kind,
        slug=slug,
        import_id=import_id,
        status=status,
        token=token,
        fault=fault,
        shown=shown,
        user_agent=request.headers.get("X-User-Agent"),
        product_name=request.headers.get("X-Product-Name"),
    )


def _upstream_routes(sim: Simulator) -> list[web.RouteDef]:
    async def get_bulk(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        slug, import_id = info["slug"], info["import_id"]
        return await _serve(
            sim,
            request,
            "bulk",
            slug,
            import_id,
            lambda: sim.answer_bulk(slug, import_id, info["bulk_id"], request.headers),
        )

    async def get_import(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        slug, import_id = info["slug"], info["import_id"]
        return await _serve(
            sim,
            request,
            "import",
            slug,
            import_id,
            lambda: sim.answer_import(slug, import_id, request.headers),
        )

    async def not_found(request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX + "/") or request.path == CONTROL_PREFIX:
            return _json(error_body(f"no control route {request.method} {request.path}"), 404)
        token = sim.token_check(request.headers.get(SLUG_HEADER, ""), request.headers)
        _log(sim, request, time.monotonic(), "other", None, None, 404, token, None, _NOTHING_SHOWN)
        return _json(_NOT_FOUND_BODIES["other"], 404)

    return [
        web.get(BULK_ROUTE, get_bulk, allow_head=False),
        web.get(IMPORT_ROUTE, get_import, allow_head=False),
        web.route("*", "/{tail:.*}", not_found),
    ]


# --- control --------------------------------------------------------------------------------------


class TokenBody(msgspec.Struct, forbid_unknown_fields=True):
    token: str | None


class ScenarioStart(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    params: dict[str, Any] = {}


class Items(msgspec.Struct):
    items: list[Any]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_encode: Final = msgspec.json.Encoder().encode


def _ok(value: object, status: int = 200) -> web.Response:
    return _json(_encode(value), status)


def _no_content() -> web.Response:
    return web.Response(status=204)


def _guarded(handler: Handler) -> Handler:
    """Turn bad input and unknown objects into ``{"error": ...}`` answers instead of 500s."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SimulatorError as exc:
            return _json(error_body(exc.message), exc.status)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _json(error_body(f"bad request body: {exc}"), 400)
        except ValueError as exc:
            return _json(error_body(str(exc)), 400)

    return wrapped


async def _body(request: web.Request, kind: type[T]) -> T:
    raw = await request.read()
    return msgspec.json.decode(raw or b"{}", type=kind)


def _int_param(value: str, name: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SimulatorError(400, f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise SimulatorError(400, f"{name} must be at least {minimum}")
    return number


class _Control:
    """The control API's handlers (one instance per app)."""

    def __init__(self, sim: Simulator, scenarios: ScenarioManager) -> None:
        self.sim = sim
        self.scenarios = scenarios

    def routes(self) -> list[web.RouteDef]:
        p = CONTROL_PREFIX
        imp = f"{p}/imports/{{slug}}/{{import_id}}"
        bulk = f"{imp}/bulks/{{bulk_id}}"
        table: list[tuple[str, str, Handler]] = [
            ("GET", f"{p}/health", self.health),
            ("PUT", f"{p}/default-token", self.set_default_token),
            ("PUT", f"{p}/clubs/{{slug}}/token", self.set_club_token),
            ("GET", f"{p}/imports", self.list_imports),
            ("POST", f"{p}/imports", self.create_import),
            ("PUT", f"{p}/imports", self.put_imports),
            ("GET", imp, self.get_import),
            ("PUT", imp, self.put_import),
            ("DELETE", imp, self.delete_import),
            ("POST", f"{imp}/bulks", self.add_bulk),
            ("GET", bulk, self.get_bulk),
            ("PUT", bulk, self.put_bulk),
            ("PATCH", bulk, self.patch_bulk),
            ("DELETE", bulk, self.delete_bulk),
            ("GET", f"{p}/faults", self.list_faults),
            ("POST", f"{p}/faults", self.add_fault),
            ("DELETE", f"{p}/faults", self.clear_faults),
            ("DELETE", f"{p}/faults/{{fault_id}}", self.delete_fault),
            ("GET", f"{p}/requests", self.requests),
            ("GET", f"{p}/flips", self.flips),
            ("GET", f"{p}/counters", self.counters),
            ("POST", f"{p}/reset", self.reset),
            ("GET", f"{p}/scenarios", self.list_scenarios),
            ("POST", f"{p}/scenarios", self.start_scenario),
            ("GET", f"{p}/scenarios/{{scenario_id}}", self.scenario_status),
            ("DELETE", f"{p}/scenarios/{{scenario_id}}", self.stop_scenario),
        ]
        return [web.route(method, path, _guarded(handler)) for method, path, handler in table]

    @staticmethod
    def _import_key(request: web.Request) -> tuple[str, str]:
        return request.match_info["slug"], request.match_info["import_id"]

    @staticmethod
    def _bulk_id(request: web.Request) -> int:
        return _int_param(request.match_info["bulk_id"], "bulk id", 1)

    async def health(self, request: web.Request) -> web.StreamResponse:
        running = sum(s.state == "running" for s in self.scenarios.list_scenarios())
        return _ok(
            Health(
                status="ok",
                imports=self.sim.import_count,
                faults=len(self.sim.list_faults()),
                requests=self.sim.counters().requests,
                scenarios_running=running,
            )
        )

    async def set_default_token(self, request: web.Request) -> web.StreamResponse:
        self.sim.default_token = (await _body(request, TokenBody)).token
        return _no_content()

    async def set_club_token(self, request: web.Request) -> web.StreamResponse:
        self.sim.set_club_token(request.match_info["slug"], (await _body(request, TokenBody)).token)
        return _no_content()

    async def list_imports(self, request: web.Request) -> web.StreamResponse:
        return _ok(Items(self.sim.list_imports()))

    async def create_import(self, request: web.Request) -> web.StreamResponse:
        spec = await _body(request, NewImportSpec)
        import_id = spec.import_id or _fresh_import_id(self.sim)
        if spec.import_id is not None and self.sim.has_import(spec.slug, import_id):
            raise SimulatorError(409, f"import {import_id!r} exists in club {spec.slug!r}; PUT replaces it")
        return _ok(self.sim.put_import(spec.slug, import_id, spec), 201)

    async def put_imports(self, request: web.Request) -> web.StreamResponse:
        batch = await _body(request, ImportBatch)
        for spec in batch.imports:
            if spec.import_id is None:
                raise SimulatorError(400, "every import of a batch needs its import_id")
        for spec in batch.imports:
            self.sim.put_import(spec.slug, spec.import_id or "", spec)
        return _ok({"count": len(batch.imports)})

    async def get_import(self, request: web.Request) -> web.StreamResponse:
        return _ok(self.sim.get_import(*self._import_key(request)))

    async def put_import(self, request: web.Request) -> web.StreamResponse:
        spec = await _body(request, ImportSpec)
        return _ok(self.sim.put_import(*self._import_key(request), spec))

    async def delete_import(self, request: web.Request) -> web.StreamResponse:
        self.sim.delete_import(*self._import_key(request))
        return _no_content()

    async def add_bulk(self, request: web.Request) -> web.StreamResponse:
        spec = await _body(request, BulkSpec)
        return _ok(self.sim.add_bulk(*self._import_key(request), spec), 201)

    async def get_bulk(self, request: web.Request) -> web.StreamResponse:
        slug, import_id = self._import_key(request)
        self.sim.get_import(slug, import_id)  # 404 for an unknown import, before the bulk
        bulk = self.sim.get_bulk(slug, import_id, self._bulk_id(request))
        if bulk is None:
            raise SimulatorError(404, f"no bulk {request.match_info['bulk_id']} in import {import_id!r}")
        return _ok(bulk)

    async def put_bulk(self, request: web.Request) -> web.StreamResponse:
        bulk_id = self._bulk_id(request)
        spec = await _body(request, BulkSpec)
        if spec.id is not None and spec.id != bulk_id:
            raise SimulatorError(400, f"body id {spec.id} differs from the path's {bulk_id}")
        spec.id = bulk_id
        return _ok(self.sim.add_bulk(*self._import_key(request), spec))

    async def patch_bulk(self, request: web.Request) -> web.StreamResponse:
        patch = await _body(request, BulkPatch)
        return _ok(self.sim.patch_bulk(*self._import_key(request), self._bulk_id(request), patch))

    async def delete_bulk(self, request: web.Request) -> web.StreamResponse:
        self.sim.delete_bulk(*self._import_key(request), self._bulk_id(request))
        return _no_content()

    async def list_faults(self, request: web.Request) -> web.StreamResponse:
        return _ok(Items(self.sim.list_faults()))

    async def add_fault(self, request: web.Request) -> web.StreamResponse:
        raw = msgspec.json.decode(await request.read() or b"{}")
        if isinstance(raw, dict) and isinstance(raw.get("kind"), int):
            raw["kind"] = str(raw["kind"])  # {"kind": 503} means what {"kind": "503"} does
        return _ok(self.sim.add_fault(msgspec.convert(raw, FaultSpec)), 201)

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.sim.clear_faults()
        return _no_content()

    async def delete_fault(self, request: web.Request) -> web.StreamResponse:
        self.sim.delete_fault(_int_param(request.match_info["fault_id"], "fault id", 1))
        return _no_content()

    @staticmethod
    def _page(request: web.Request) -> tuple[int, int]:
        since = _int_param(request.query.get("since", "0"), "since")
        limit = _int_param(request.query.get("limit", str(MAX_LOG_PAGE)), "limit", 1)
        return since, limit

    async def requests(self, request: web.Request) -> web.StreamResponse:
        return _ok(self.sim.requests_since(*self._page(request)))

    async def flips(self, request: web.Request) -> web.StreamResponse:
        return _ok(self.sim.flips_since(*self._page(request)))

    async def counters(self, request: web.Request) -> web.StreamResponse:
        return _ok(self.sim.counters())

    async def reset(self, request: web.Request) -> web.StreamResponse:
        await self.scenarios.reset()
        self.sim.reset()
        return _no_content()

    async def list_scenarios(self, request: web.Request) -> web.StreamResponse:
        return _ok(Items(self.scenarios.list_scenarios()))

    async def start_scenario(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request, ScenarioStart)
        return _ok(self.scenarios.start(body.name, body.params), 201)

    async def scenario_status(self, request: web.Request) -> web.StreamResponse:
        return _ok(self.scenarios.status(_int_param(request.match_info["scenario_id"], "scenario id", 1)))

    async def stop_scenario(self, request: web.Request) -> web.StreamResponse:
        scenario_id = _int_param(request.match_info["scenario_id"], "scenario id", 1)
        return _ok(await self.scenarios.stop(scenario_id))


def _fresh_import_id(sim: Simulator) -> str:
    return str(uuid.UUID(int=sim.rng.getrandbits(128), version=4))


# --- app and in-process runner --------------------------------------------------------------------


def create_app(sim: Simulator) -> web.Application:
    """The aiohttp application serving ``sim``: upstream routes, control API, scenario manager."""
    app = web.Application(client_max_size=MAX_CONTROL_BODY_BYTES, middlewares=[_arrival])
    scenarios = ScenarioManager(sim)
    app[SIMULATOR_KEY] = sim
    app[SCENARIOS_KEY] = scenarios
    # Control routes first: the upstream catch-all must not shadow them.
    app.add_routes(_Control(sim, scenarios).routes())
    app.add_routes(_upstream_routes(sim))

    async def stop_scenarios(app: web.Application) -> None:
        await scenarios.stop_all()

    app.on_shutdown.append(stop_scenarios)
    return app


class RunningSimulator:
    """A simulator listening on a socket; ``await stop()`` (or leave ``async with``) to shut it down."""

    def __init__(self, runner: web.AppRunner, app: web.Application, url: str, port: int) -> None:
        self._runner = runner
        self._stopped = False
        self.url = url
        """Base URL, e.g. ``http://127.0.0.1:8081`` (MPC paths and ``/_control/`` hang off it)."""
        self.port = port
        self.sim = app[SIMULATOR_KEY]
        self.scenarios = app[SCENARIOS_KEY]
        self.demo: ScenarioStatus | None = None
        """The demo scenario's status at start, when started with ``demo=True``."""

    async def stop(self) -> None:
        """Stop scenarios, close the listening socket and every connection (idempotent)."""
        if not self._stopped:
            self._stopped = True
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class _ArrivalStampingHandler(RequestHandler):
    """aiohttp's connection protocol, noting when a request's first bytes were read.

    The request log's arrival time is when MPC's front end would have the request. A handler runs
    only after every request read before it in the same turn of the event loop was answered, so
    under a burst the handler starts tens of milliseconds after the request arrived, by a
    different amount each time: stamped there, two requests sent exactly 5 s apart could be
    logged less than 5 s apart. Clients send a request only after the previous answer on the same
    connection, so the first bytes read after an answer belong to the next request.
    """

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.first_bytes_at: float | None = None

    def data_received(self, data: bytes) -> None:
        if self.first_bytes_at is None:
            self.first_bytes_at = time.monotonic()
        super().data_received(data)


@web.middleware
async def _arrival(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """``request[ARRIVED_KEY]``: when the request's first bytes were read (monotonic clock)."""
    protocol = request.protocol
    if not isinstance(protocol, _ArrivalStampingHandler):  # an app served by some other site
        request[ARRIVED_KEY] = time.monotonic()
        return await handler(request)
    first = protocol.first_bytes_at
    request[ARRIVED_KEY] = time.monotonic() if first is None else first
    try:
        return await handler(request)
    finally:
        # Anything read while the handler ran (a body) is this request's, not the next one's.
        protocol.first_bytes_at = None


class _StampingSite(web.SockSite):
    """A listening socket whose connections use :class:`_ArrivalStampingHandler`."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        # The same settings aiohttp gives its own protocol (web.Server.__call__, aiohttp 3.14).
        settings = server._kwargs
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ArrivalStampingHandler(server, loop=loop, **settings),
            sock=self._sock,
            backlog=self._backlog,
        )


async def _listen(host: str, port: int) -> socket.socket:
    loop = asyncio.get_running_loop()
    family, kind, proto, _, address = (
        await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def start(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sim: Simulator | None = None,
    default_token: str | None = DEFAULT_TOKEN,
    clubs: Mapping[str, str] | None = None,
    seed: int | None = None,
    request_log_size: int = DEFAULT_REQUEST_LOG_SIZE,
    time_scale: float = 1.0,
    demo: bool | Mapping[str, Any] = False,
) -> RunningSimulator:
    """Start a simulator on ``host:port`` (0 = a free port) in this event loop.

    Without ``sim`` a new :class:`Simulator` is built from the keyword options. ``demo=True`` (or
    a mapping of demo parameters) starts the demo scenario; its status is in ``.demo``.
    """
    if sim is None:
        sim = Simulator(
            default_token=default_token,
            clubs=clubs,
            seed=seed,
            request_log_size=request_log_size,
            time_scale=time_scale,
        )
    app = create_app(sim)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handle_signals=False)
    await runner.setup()
    try:
        sock = await _listen(host, port)
        site = _StampingSite(runner, sock)
        await site.start()
        bound = sock.getsockname()
        url_host = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
        running = RunningSimulator(runner, app, f"http://{url_host}:{bound[1]}", bound[1])
        if demo:
            running.demo = running.scenarios.start("demo", demo if isinstance(demo, Mapping) else None)
    except BaseException:
        await runner.cleanup()
        raise
    return running
