"""The console's routes under ``/ui``: sign-in, the pages, their forms and the live stream.

Pages are rendered on the server (Jinja, autoescaped); htmx and its SSE extension, served from
this package, swap in the fragments the stream sends when something changes. Forms are plain
HTML forms posting to these routes, so every action also works without scripts. Every answer
carries a strict Content-Security-Policy: scripts, styles and connections from this origin only,
no inline code.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader, Cookie, State
from litestar.exceptions import HTTPException
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from bridge.api.auth import KeyRing, Principal, admin_key_id
from bridge.api.errors import ApiError, decode_strictly
from bridge.api.schemas import IMPORT_ID_PATTERN, SLUG_PATTERN, WatchCreate
from bridge.api.subscriptions import (
    SubscriptionCreate,
    SubscriptionPatch,
    create_subscription,
    delivery_out,
    redeliver_delivery,
    rotate_secret,
    subscription_out,
    test_subscription,
    update_subscription,
    visible_subscription,
)
from bridge.api.watches import WATCH_ID_PATTERN, create_watch, stop_watch
from bridge.config import Settings
from bridge.console.access import principal_for_key, principal_now
from bridge.console.hub import ChangeHub
from bridge.console.pages import (
    DELIVERIES_SHOWN,
    SystemRates,
    club_views,
    failure_counts,
    subscription_list,
    system_view,
    watch_detail,
    watch_row,
    watch_rows,
)
from bridge.console.session import (
    COOKIE_PATH,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_TOKEN_S,
    Session,
    SessionStore,
    new_token,
    tokens_match,
)
from bridge.delivery.model import Dispatch
from bridge.slack.state import SlackState
from bridge.store.apikeys import ApiKeyStore
from bridge.store.changes import Change
from bridge.store.redis_store import RedisStore, WatchRecord
from bridge.upstream.budget import ClubBudget
from bridge.upstream.credentials import CredentialStore
from bridge.webhooks.guard import UrlGuard
from bridge.webhooks.model import DELIVERY_ID_PATTERN, SUBSCRIPTION_ID_PATTERN
from bridge.webhooks.store import SubscriptionStore

T = TypeVar("T")

PACKAGE_DIR: Final = Path(__file__).parent
STATIC_PATH: Final = "/ui/static"
PING_EVERY_S: Final = 15.0
"""A comment line this often keeps proxies from closing a quiet stream and notices a session that
ended (the stream stops then)."""
MAX_FORM_FIELD_CHARS: Final = 8192
STATIC_MAX_AGE_S: Final = 3600
SHARED_RESULTS_KEPT: Final = 256
EXCERPT_CHARS: Final = 500
"""How much of a request body (the event sent) the attempt log shows."""
"""Per-note results (a watch read, a rendered row) kept for the streams still handling that note."""
WATCH_STATES: Final = ("active", "completed", "stopped", "expired", "error")
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_env: Final = Environment(
    loader=FileSystemLoader(PACKAGE_DIR / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals.update(static=STATIC_PATH, states=WATCH_STATES, csrf_field=CSRF_FIELD)


OptionalQuery = Annotated[str | None, QueryParameter()]
IdPath = Annotated[str, PathParameter()]
StateQuery = Annotated[str | None, QueryParameter(name="state")]
"""``state`` is a name Litestar reserves for the app's state: the query parameter is renamed."""


class ConsoleState:
    """What the console's routes share in one API process (``app.state.console``)."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.sessions = SessionStore(redis, lifetime_s=settings.console_session_s)
        self.hub = ChangeHub(redis)
        self.slack = SlackState(redis, ttl_s=settings.retention_s)
        self.budget = ClubBudget(redis, rate=settings.mpc_club_rate, burst=settings.mpc_club_burst)
        self.rates = SystemRates()
        self.admin_ids = frozenset(admin_key_id(k.reveal().encode()) for k in settings.api_keys)
        """Ids of the admin keys configured now: a session of another admin key has ended."""
        self._shared: OrderedDict[tuple[int, str], tuple[Change, asyncio.Future[Any]]] = OrderedDict()

    async def shared(self, change: Change, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """``make()`` once per note however many streams handle it: the hub hands the same note
        object to every stream, so one watch read and one render serve them all. The note is
        kept with its result, so its ``id`` is not reused while cached."""
        key = (id(change), what)
        found = self._shared.get(key)
        if found is None or found[0] is not change:
            future: asyncio.Future[Any] = asyncio.ensure_future(make())
            self._shared[key] = found = (change, future)
            while len(self._shared) > SHARED_RESULTS_KEPT:
                self._shared.popitem(last=False)
        result: T = await asyncio.shield(found[1])
        return result


class SignInRequired(HTTPException):
    status_code = 303


class Forbidden(HTTPException):
    status_code = 403


# ---------------------------------------------------------------------------- helpers


def render(name: str, status: int = 200, **context: Any) -> Response[str]:
    html = _env.get_template(name).render(**context)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def fragment(name: str, **context: Any) -> str:
    return _env.get_template(name).render(**context)


def _state(request: Request[Any, Any, Any]) -> State:
    state: State = request.app.state
    return state


def console_of(request: Request[Any, Any, Any]) -> ConsoleState:
    console: ConsoleState = _state(request).console
    return console


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def _cookie(request: Request[Any, Any, Any], key: str, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


async def current_session(request: Request[Any, Any, Any]) -> Session:
    """The signed-in session, with what its key may do now; or a redirect to the sign-in page
    (no session, or its key was revoked: then the session ends too)."""
    console = console_of(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    session = await console.sessions.get(session_id)
    if session is None:
        raise SignInRequired()
    api_keys: ApiKeyStore | None = getattr(_state(request), "api_keys", None)
    principal = await principal_now(session.principal, admin_ids=console.admin_ids, api_keys=api_keys)
    if principal is None:
        await console.sessions.end(session_id)
        raise SignInRequired()
    return msgspec.structs.replace(session, principal=principal)


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields[name] = value[:MAX_FORM_FIELD_CHARS]
    return fields


async def checked_session(request: Request[Any, Any, Any]) -> tuple[Session, dict[str, str]]:
    """A state-changing request: signed in, and carrying the session's CSRF token."""
    session = await current_session(request)
    form = await _form(request)
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not tokens_match(given, session.csrf):
        raise Forbidden(detail="the form is stale or did not come from this console: reload the page")
    return session, form


def _page(
    request: Request[Any, Any, Any], session: Session, name: str, status: int = 200, **context: Any
) -> Response[str]:
    return render(
        name,
        status,
        principal=session.principal,
        csrf=session.csrf,
        path=request.url.path,
        **context,
    )


def _back(form: Mapping[str, str], default: str) -> str:
    """Where a form returns to: a console path only (never another site)."""
    target = form.get("back", "")
    return target if target.startswith("/ui/") and "//" not in target and "\\" not in target else default


def _store(request: Request[Any, Any, Any]) -> RedisStore:
    store: RedisStore = _state(request).store
    return store


def _subscriptions(request: Request[Any, Any, Any]) -> SubscriptionStore:
    subscriptions: SubscriptionStore = _state(request).subscriptions
    return subscriptions


def _dispatch(request: Request[Any, Any, Any]) -> Dispatch:
    dispatch: Dispatch = _state(request).dispatch
    return dispatch


WATCH_FIELDS: Final = frozenset({"loyalty_club_slug", "import_id", "bulk_ids", "slack"})
SUBSCRIPTION_FIELDS: Final = frozenset({"url", "event_types", "loyalty_club_slug", "import_id"})


def _field_errors(exc: ApiError, fields: frozenset[str]) -> dict[str, str]:
    """The API's error, by form field (what is about no field of the form: under ``form``)."""
    errors: dict[str, str] = {}
    details = exc.details if isinstance(exc.details, list) else []
    for detail in details:
        if isinstance(detail, dict):
            key = str(detail.get("key") or "form").split(".")[0].split("[")[0]
            key = "slack_channel" if key == "slack" else key if key in fields else "form"
            message = str(detail.get("message", exc.detail))
            errors.setdefault(key, str(exc.detail) if key == "form" else message)
    if not errors:
        errors["form"] = str(exc.detail)
    return errors


# ---------------------------------------------------------------------------- sign-in


@get("/", include_in_schema=False)
async def home() -> Redirect:
    return Redirect("/ui/watches", status_code=303)


@get("/sign-in", include_in_schema=False)
async def sign_in_page(request: Request[Any, Any, Any]) -> Response[str]:
    token = new_token()
    response = render("sign_in.html", csrf=token, error=None)
    response.set_cookie(_cookie(request, SIGN_IN_COOKIE, token, SIGN_IN_TOKEN_S))
    return response


@post("/sign-in", include_in_schema=False, status_code=303)
async def sign_in(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await _form(request)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not tokens_match(form.get(CSRF_FIELD), expected):
        raise Forbidden(detail="the sign-in form is stale: reload the page")
    keyring: KeyRing = _state(request).keyring
    principal = await principal_for_key(keyring, form.get("api_key", ""))
    if principal is None:
        token = new_token()
        failed = render("sign_in.html", 401, csrf=token, error="That key is not valid.")
        failed.set_cookie(_cookie(request, SIGN_IN_COOKIE, token, SIGN_IN_TOKEN_S))
        return failed
    sessions = console_of(request).sessions
    session_id, _ = await sessions.start(principal)
    response = Redirect("/ui/watches", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(_cookie(request, SESSION_COOKIE, session_id, int(sessions.lifetime_s)))
    response.delete_cookie(SIGN_IN_COOKIE, path=COOKIE_PATH)
    return response


@post("/sign-out", include_in_schema=False, status_code=303)
async def sign_out(request: Request[Any, Any, Any]) -> Redirect:
    await checked_session(request)
    await console_of(request).sessions.end(request.cookies.get(SESSION_COOKIE))
    response = Redirect("/ui/sign-in", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


# ---------------------------------------------------------------------------- watches


def _filter(value: str | None, pattern_ok: bool) -> str | None:
    return value if value and pattern_ok else None


def _list_filters(
    club: str | None, state: str | None, q: str | None
) -> tuple[str | None, str | None, str | None]:
    """The watch list's filters as the page and its stream both apply them (a bad one is dropped)."""
    club = _filter(club, bool(club and re.fullmatch(SLUG_PATTERN.strip("^$"), club)))
    state = state if state in WATCH_STATES else None
    q = _filter((q or "").strip(), bool(q and re.fullmatch(IMPORT_ID_PATTERN.strip("^$"), q.strip())))
    return club, state, q


@get("/watches", include_in_schema=False)
async def watches_page(
    request: Request[Any, Any, Any],
    club: OptionalQuery = None,
    state_filter: StateQuery = None,
    q: OptionalQuery = None,
) -> Response[str]:
    session = await current_session(request)
    club, state, q = _list_filters(club, state_filter, q)
    rows = await watch_rows(_store(request), session.principal, club=club, state=state, import_id=q)
    stream = "/ui/stream?" + urlencode({k: v for k, v in (("club", club), ("state", state), ("q", q)) if v})
    return _page(request, session, "watches.html", rows=rows, club=club, state=state, q=q, stream=stream)


@get("/watches/new", include_in_schema=False)
async def new_watch_page(request: Request[Any, Any, Any]) -> Response[str]:
    session = await current_session(request)
    return _page(request, session, "new_watch.html", values={}, errors={})


def _watch_body(form: Mapping[str, str]) -> bytes:
    """The form as the API's JSON body, so it is checked exactly as ``POST /v1/watches`` is."""
    body: dict[str, Any] = {
        "loyalty_club_slug": form.get("loyalty_club_slug", "").strip(),
        "import_id": form.get("import_id", "").strip(),
    }
    bulk_text = form.get("bulk_ids", "").replace(",", " ").split()
    if bulk_text:
        body["bulk_ids"] = [int(b) if b.isdigit() and len(b) < 20 else b for b in bulk_text]
    channel = form.get("slack_channel", "").strip()
    if channel:
        body["slack"] = {"channel": channel}
    if form.get("notify_progress") == "on":
        body["notify_progress"] = True
    return msgspec.json.encode(body)


@post("/watches", include_in_schema=False, status_code=303)
async def create_watch_form(request: Request[Any, Any, Any]) -> Response[Any]:
    session, form = await checked_session(request)
    settings: Settings = _state(request).settings
    try:
        data = decode_strictly(_watch_body(form), WatchCreate)
        watch, _ = await create_watch(_store(request), settings, session.principal, data)
    except ApiError as exc:
        status = exc.status_code
        return _page(
            request, session, "new_watch.html", status, values=form, errors=_field_errors(exc, WATCH_FIELDS)
        )
    return Redirect(f"/ui/watches/{watch.id}", status_code=303, headers=SECURITY_HEADERS)


async def _seen_watch(
    request: Request[Any, Any, Any], principal: Principal, watch_id: str
) -> WatchRecord | None:
    """The watch, when the id is well formed, the watch exists and the principal sees its club."""
    if not re.fullmatch(WATCH_ID_PATTERN.strip("^$"), watch_id):
        return None
    record = await _store(request).get_watch(watch_id)
    if record is None or not principal.sees(record.spec.loyalty_club_slug):
        return None
    return record


async def _visible_watch(request: Request[Any, Any, Any], principal: Principal, watch_id: str) -> WatchRecord:
    record = await _seen_watch(request, principal, watch_id)
    if record is None:  # an unseen club's watch is not found either
        raise ApiError(404, "not_found", "no such watch")
    return record


@get("/watches/{watch_id:str}", include_in_schema=False)
async def watch_page(request: Request[Any, Any, Any], watch_id: IdPath) -> Response[str]:
    session = await current_session(request)
    record = await _visible_watch(request, session.principal, watch_id)
    detail = await watch_detail(
        _store(request), _subscriptions(request), console_of(request).slack, record, session.principal
    )
    return _page(request, session, "watch.html", detail=detail, stream=f"/ui/stream?watch={watch_id}")


@post("/watches/{watch_id:str}/stop", include_in_schema=False, status_code=303)
async def stop_watch_form(request: Request[Any, Any, Any], watch_id: IdPath) -> Redirect:
    session, _ = await checked_session(request)
    await _visible_watch(request, session.principal, watch_id)
    await stop_watch(_store(request), session.principal, watch_id)
    return Redirect(f"/ui/watches/{watch_id}", status_code=303, headers=SECURITY_HEADERS)


@post("/deliveries/{delivery_id:str}/redeliver", include_in_schema=False, status_code=303)
async def redeliver_form(request: Request[Any, Any, Any], delivery_id: IdPath) -> Redirect:
    session, form = await checked_session(request)
    if not re.fullmatch(DELIVERY_ID_PATTERN.strip("^$"), delivery_id):
        raise ApiError(404, "not_found", "no such delivery")
    subscriptions = _subscriptions(request)
    again = await redeliver_delivery(
        subscriptions, _store(request), _dispatch(request), session.principal, delivery_id
    )
    back = _back(form, f"/ui/subscriptions/{again.subscription_id}")
    return Redirect(back, status_code=303, headers=SECURITY_HEADERS)


# ---------------------------------------------------------------------------- subscriptions


async def _subscriptions_page(
    request: Request[Any, Any, Any], session: Session, status: int = 200, **extra: Any
) -> Response[str]:
    subs = await subscription_list(_subscriptions(request), session.principal)
    context: dict[str, Any] = {"values": {}, "errors": {}, "secret": None, **extra}
    return _page(request, session, "subscriptions.html", status, subscriptions=subs, **context)


@get("/subscriptions", include_in_schema=False)
async def subscriptions_page(request: Request[Any, Any, Any]) -> Response[str]:
    return await _subscriptions_page(request, await current_session(request))


@post("/subscriptions", include_in_schema=False, status_code=200)
async def create_subscription_form(request: Request[Any, Any, Any]) -> Response[str]:
    session, form = await checked_session(request)
    body: dict[str, Any] = {"url": form.get("url", "").strip()}
    for field in ("loyalty_club_slug", "import_id"):
        if form.get(field, "").strip():
            body[field] = form[field].strip()
    types = form.get("event_types", "").replace(",", " ").split()
    if types:
        body["event_types"] = types
    guard: UrlGuard = _state(request).webhook_guard
    try:
        data = decode_strictly(msgspec.json.encode(body), SubscriptionCreate)
        settings: Settings = _state(request).settings
        created = await create_subscription(_subscriptions(request), guard, session.principal, settings, data)
    except ApiError as exc:
        status = exc.status_code
        return await _subscriptions_page(
            request, session, status, values=form, errors=_field_errors(exc, SUBSCRIPTION_FIELDS)
        )
    # The secret is in this answer only: shown once, never stored in the page's URL or cache.
    return await _subscriptions_page(request, session, secret={"id": created.id, "value": created.secret})


async def _visible_subscription(request: Request[Any, Any, Any], principal: Principal, sid: str) -> Any:
    if not re.fullmatch(SUBSCRIPTION_ID_PATTERN.strip("^$"), sid):
        raise ApiError(404, "not_found", "no such subscription")
    return await visible_subscription(_subscriptions(request), sid, principal)


@get("/subscriptions/{sid:str}", include_in_schema=False)
async def subscription_page(request: Request[Any, Any, Any], sid: IdPath) -> Response[str]:
    session = await current_session(request)
    sub = await _visible_subscription(request, session.principal, sid)
    subscriptions = _subscriptions(request)
    found, _ = await subscriptions.list_deliveries(sid, 0, DELIVERIES_SHOWN)
    bodies = await _store(request).get_events(sorted({d.event_id for d in found}))
    return _page(
        request,
        session,
        "subscription.html",
        sub=subscription_out(sub, time.time()),
        failures=await failure_counts(subscriptions, sid),
        deliveries=[delivery_out(d) for d in found],
        requests={eid: body.decode(errors="replace")[:EXCERPT_CHARS] for eid, body in bodies.items()},
        secret=None,
    )


@post("/subscriptions/{sid:str}/rotate", include_in_schema=False, status_code=200)
async def rotate_form(request: Request[Any, Any, Any], sid: IdPath) -> Response[str]:
    session, _ = await checked_session(request)
    await _visible_subscription(request, session.principal, sid)
    rotated = await rotate_secret(_subscriptions(request), session.principal, sid)
    return await _subscriptions_page(request, session, secret={"id": sid, "value": rotated.secret})


@post("/subscriptions/{sid:str}/test", include_in_schema=False, status_code=303)
async def test_form(request: Request[Any, Any, Any], sid: IdPath) -> Redirect:
    session, _ = await checked_session(request)
    await _visible_subscription(request, session.principal, sid)
    await test_subscription(
        _subscriptions(request),
        _store(request),
        _dispatch(request),
        session.principal,
        _state(request).settings,
        sid,
    )
    return Redirect(f"/ui/subscriptions/{sid}", status_code=303, headers=SECURITY_HEADERS)


@post("/subscriptions/{sid:str}/enabled", include_in_schema=False, status_code=303)
async def enable_form(request: Request[Any, Any, Any], sid: IdPath) -> Redirect:
    session, form = await checked_session(request)
    await _visible_subscription(request, session.principal, sid)
    guard: UrlGuard = _state(request).webhook_guard
    change = SubscriptionPatch(enabled=form.get("enabled") == "true")
    await update_subscription(
        _subscriptions(request), guard, session.principal, _state(request).settings, sid, change
    )
    return Redirect(_back(form, "/ui/subscriptions"), status_code=303, headers=SECURITY_HEADERS)


@post("/subscriptions/{sid:str}/redeliver-failed", include_in_schema=False, status_code=303)
async def redeliver_failed_form(request: Request[Any, Any, Any], sid: IdPath) -> Redirect:
    session, form = await checked_session(request)
    await _visible_subscription(request, session.principal, sid)
    session.principal.check_write()
    since = _since(form.get("since", ""))
    subscriptions = _subscriptions(request)
    found, _ = await subscriptions.list_deliveries(sid, 0, DELIVERIES_SHOWN)
    for delivery in found:
        if delivery.state == "failed" and delivery.created_at >= since:
            try:
                await redeliver_delivery(
                    subscriptions, _store(request), _dispatch(request), session.principal, delivery.id
                )
            except ApiError:
                continue  # its event expired: nothing to send again
    return Redirect(f"/ui/subscriptions/{sid}", status_code=303, headers=SECURITY_HEADERS)


def _since(text: str) -> float:
    """A ``datetime-local`` value (UTC) as epoch seconds; anything else: the last day."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return time.time() - 86_400.0


# ---------------------------------------------------------------------------- clubs, system


@get("/clubs", include_in_schema=False)
async def clubs_page(request: Request[Any, Any, Any]) -> Response[str]:
    session = await current_session(request)
    credentials: CredentialStore = _state(request).credentials
    clubs = await club_views(
        _state(request).redis, _store(request), credentials, console_of(request).budget, session.principal
    )
    return _page(request, session, "clubs.html", clubs=clubs)


@get("/system", include_in_schema=False)
async def system_page(request: Request[Any, Any, Any]) -> Response[str]:
    session = await current_session(request)
    if session.principal.clubs is not None:
        raise Forbidden(detail="the system page is for keys that see every club")
    console = console_of(request)
    view = await system_view(_state(request).redis, console.hub.listeners, console.rates)
    return _page(request, session, "system.html", system=view)


# ---------------------------------------------------------------------------- the live stream


class StreamFilter(msgspec.Struct, kw_only=True, frozen=True):
    watch: str | None = None
    club: str | None = None
    state: str | None = None
    q: str | None = None


async def _watch_events(
    request: Request[Any, Any, Any], session: Session, wanted: StreamFilter, change: Change
) -> list[ServerSentEventMessage]:
    """The fragments one change sends to one stream (none when it may not see it)."""
    principal, csrf = session.principal, session.csrf
    if change.kind == "delivery":
        if wanted.watch is None:
            return []
        record = await _seen_watch(request, principal, wanted.watch)
        if record is None:
            return []
        detail = await watch_detail(
            _store(request), _subscriptions(request), console_of(request).slack, record, principal
        )
        if not any(e.item.event_id == change.event_id for e in detail.events):
            return []
        return [
            ServerSentEventMessage(
                event="timeline", data=fragment("_timeline.html", detail=detail, csrf=csrf)
            )
        ]
    if not principal.sees(change.club) or (wanted.club and change.club != wanted.club):
        return []
    if wanted.watch is not None and change.watch_id != wanted.watch:
        return []
    console = console_of(request)
    record = await console.shared(change, "record", lambda: _store(request).get_watch(change.watch_id))
    if record is None:
        return []
    if wanted.watch is not None:
        return await _detail_messages(request, record, session)
    row = await console.shared(change, "row", lambda: _render_row(record))
    if change.kind == "created":
        state_ok = not wanted.state or record.state == wanted.state
        if state_ok and (not wanted.q or record.spec.import_id == wanted.q):
            return [ServerSentEventMessage(event="new-watch", data=row)]
        return []
    return [ServerSentEventMessage(event=f"w-{change.watch_id}", data=row)]


async def _detail_messages(
    request: Request[Any, Any, Any], record: WatchRecord, session: Session
) -> list[ServerSentEventMessage]:
    """A watch page's three live parts, as they are now."""
    detail = await watch_detail(
        _store(request), _subscriptions(request), console_of(request).slack, record, session.principal
    )
    return [
        ServerSentEventMessage(event="summary", data=fragment("_summary.html", detail=detail)),
        ServerSentEventMessage(event="bulks", data=fragment("_bulks.html", detail=detail)),
        ServerSentEventMessage(
            event="timeline", data=fragment("_timeline.html", detail=detail, csrf=session.csrf)
        ),
    ]


async def _snapshot(
    request: Request[Any, Any, Any], session: Session, wanted: StreamFilter
) -> list[ServerSentEventMessage]:
    """What the page shows, as it is now: the first thing every stream sends, after it listens.

    A page is rendered before its stream connects, and a browser reconnects by itself after a
    dropped connection; a change made in either gap reached no stream. Sending the current state
    on every (re)connect closes both gaps (a change that comes during the snapshot is sent after it).
    """
    if wanted.watch is not None:
        record = await _seen_watch(request, session.principal, wanted.watch)
        return [] if record is None else await _detail_messages(request, record, session)
    club, state, q = _list_filters(wanted.club, wanted.state, wanted.q)
    rows = await watch_rows(_store(request), session.principal, club=club, state=state, import_id=q)
    table = fragment("_watch_table.html", rows=rows, club=club, state=state, q=q)
    return [ServerSentEventMessage(event="rows", data=table)]


async def _render_row(record: WatchRecord) -> str:
    return fragment("_watch_row.html", row=watch_row(record))


@get("/stream", include_in_schema=False)
async def stream(
    request: Request[Any, Any, Any],
    watch: OptionalQuery = None,
    club: OptionalQuery = None,
    state_filter: StateQuery = None,
    q: OptionalQuery = None,
) -> ServerSentEvent:
    state = state_filter
    session = await current_session(request)
    wanted = StreamFilter(watch=watch, club=club, state=state if state in WATCH_STATES else None, q=q)
    console = console_of(request)

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        nonlocal session
        queue = await console.hub.subscribe()
        try:
            yield ServerSentEventMessage(comment="live")
            for message in await _snapshot(request, session, wanted):
                yield message
            while True:
                try:
                    change = await asyncio.wait_for(queue.get(), timeout=PING_EVERY_S)
                    if change is None:
                        return  # the process is stopping; the browser reconnects by itself
                except TimeoutError:
                    try:  # the session may have ended, or its key been revoked or narrowed
                        session = await current_session(request)
                    except SignInRequired:
                        yield ServerSentEventMessage(event="signed-out", data="")
                        return
                    yield ServerSentEventMessage(comment="ping")
                    continue
                for message in await _watch_events(request, session, wanted, change):
                    yield message
        finally:
            console.hub.unsubscribe(queue)

    return ServerSentEvent(events(), headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})


# ---------------------------------------------------------------------------- the router


def end_console_streams(app: Any) -> None:
    """End the console's open streams, so a stopping API drains at once (a signal handler may call
    it: see ``bridge.server.serve``'s ``on_stop``)."""
    console: ConsoleState | None = getattr(app.state, "console", None)
    if console is not None:
        console.hub.end_streams_threadsafe()


def _signed_out(request: Request[Any, Any, Any], _: SignInRequired) -> Response[Any]:
    return Redirect("/ui/sign-in", status_code=303, headers=SECURITY_HEADERS)


def _forbidden(request: Request[Any, Any, Any], exc: Forbidden) -> Response[str]:
    return render("error.html", 403, title="Not allowed", message=str(exc.detail))


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[str]:
    return render(
        "error.html",
        exc.status_code,
        title="Not found" if exc.status_code == 404 else "Refused",
        message=str(exc.detail),
    )


def console_router() -> Router:
    return Router(
        path="/ui",
        route_handlers=[
            home,
            sign_in_page,
            sign_in,
            sign_out,
            watches_page,
            new_watch_page,
            create_watch_form,
            watch_page,
            stop_watch_form,
            redeliver_form,
            subscriptions_page,
            create_subscription_form,
            subscription_page,
            rotate_form,
            test_form,
            enable_form,
            redeliver_failed_form,
            clubs_page,
            system_page,
            stream,
        ],
        exception_handlers={SignInRequired: _signed_out, Forbidden: _forbidden, ApiError: _api_error},
        include_in_schema=False,
    )


def static_router() -> Router:
    """htmx, its SSE extension, the stylesheet and the console's own script, from this package."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[PACKAGE_DIR / "static"],
        name="console-static",
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=STATIC_MAX_AGE_S, public=True),
        after_request=_nosniff,
    )


async def _nosniff(response: Response[Any]) -> Response[Any]:
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
