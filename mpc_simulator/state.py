"""In-memory model of the MPC simulator: clubs, imports, bulks, faults and logs. No I/O.

The HTTP layer (:mod:`mpc_simulator.server`) asks this model for an :class:`Answer` to each
upstream request and hands it the outcome to log; the control API and the scenarios change the
model through :class:`Simulator` methods, which keep three promises:

- every bulk status change lands in the flip log (``source`` says who made it);
- the JSON bytes MPC would send for a bulk or an import are encoded once and cached until that
  bulk or import changes, so the upstream GET path costs a few dict look-ups;
- tokens are only ever compared, never stored in a log (the request log says ``match``,
  ``mismatch`` or ``missing``).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

DEFAULT_TOKEN: Final = "sim-token"  # noqa: S105 - the simulator's well-known default
"""Token accepted for every club that has no token of its own (``--token``)."""
DEFAULT_REQUEST_LOG_SIZE: Final = 100_000
"""Request log entries kept (a ring buffer: the oldest go first)."""
DEFAULT_FLIP_LOG_SIZE: Final = 200_000
"""Flip log entries kept; a random-flips benchmark at 100 flips/s fills this in ~30 min."""
MAX_LOG_PAGE: Final = 100_000
"""Most entries one request-log or flip-log page returns."""
DEFAULT_LOG_PAGE: Final = 10_000
MAX_RETRIES: Final = 5
"""MPC's background job gives up after the 5th failed retry."""
FIRST_BULK_ID: Final = 4101
"""Bulk ids handed out when the caller gives none (MPC ids are global integers)."""
DEFAULT_OPERATION: Final = "create"
DEFAULT_HANG_S: Final = 30.0
MAX_HANG_S: Final = 3600.0
DEFAULT_RETRY_AFTER_S: Final = 1
RATELIMIT_BUCKET_SIZE: Final = 600
"""Reported in ``ratelimit-bucket`` on an injected 429 (MPC does not publish its real size)."""

BulkStatus = Literal["waiting", "working", "finished", "failed", "waiting_for_retry"]
BULK_STATUSES: Final[tuple[BulkStatus, ...]] = get_args(BulkStatus)
TERMINAL_STATUSES: Final[frozenset[BulkStatus]] = frozenset({"finished", "failed"})
Source = Literal["control", "scenario"]
TokenCheck = Literal["match", "mismatch", "missing"]
PathKind = Literal["bulk", "import", "other"]
FaultKind = Literal[
    "500", "502", "503", "429", "401", "403", "404", "malformed", "truncated", "nested", "hang", "disconnect"
]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)

REQUIRED_HEADERS: Final = ("X-Product-Name", "X-User-Agent", "X-Loyalty-Club-Slug")
"""Checked in this order; the first one missing answers 470."""
SLUG_HEADER: Final = "X-Loyalty-Club-Slug"
TOKEN_HEADER: Final = "X-Client-Authorization"  # noqa: S105 - a header name

IMPORT_NOT_FOUND: Final = "Import with such ID wasn't found"
BULK_NOT_FOUND: Final = "Bulk with such ID wasn't found"

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
MembersErrors = dict[str, Any]
"""``{"joe@example.com": {"properties": [{"error": {"language": [{...}]}}]}}``, kept as given."""


class SimulatorError(Exception):
    """Bad control input or an unknown object; ``status`` is the HTTP status the control API answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now_iso() -> str:
    """The current UTC time the way MPC writes it: ``2018-07-30T17:14:03.738Z``."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def error_body(message: str) -> bytes:
    """MPC's error body ``{"error": "..."}``."""
    return msgspec.json.encode({"error": message})


# --- wire shapes (field order = MPC's key order) -------------------------------------------------


class Bulk(msgspec.Struct, frozen=True, kw_only=True):
    """One bulk, exactly the object ``GET .../bulks/{bulk_id}`` returns."""

    id: int
    import_id: str
    request_number: int
    operation: str
    status: BulkStatus
    members_in_payload_number: int
    members_created_number: int
    members_updated_number: int
    members_with_validation_errors_number: int
    retries: int
    members_errors: MembersErrors
    created_at: str


class BulkRef(msgspec.Struct, frozen=True):
    """A bulk as listed by ``GET .../imports/{import_id}``."""

    id: int
    request_number: int
    status: BulkStatus


class ImportView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET .../imports/{import_id}`` as the current MPC docs spell it."""

    members_in_payload_number: int
    members_created_number: int
    members_updated_number: int
    members_with_validation_errors_number: int
    created_at: str
    bulks: list[BulkRef]


class LegacyImportView(msgspec.Struct, frozen=True, kw_only=True):
    """The same, with the older docs' ``members_in_payloads_number`` spelling."""

    members_in_payloads_number: int
    members_created_number: int
    members_updated_number: int
    members_with_validation_errors_number: int
    created_at: str
    bulks: list[BulkRef]


# --- control input --------------------------------------------------------------------------------


class BulkSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A bulk to create or replace. Omitted fields take MPC's values for a new bulk."""

    id: PosInt | None = None
    """Omitted: the next free simulator id."""
    request_number: PosInt | None = None
    """Omitted: its position in the import (``put_import``) or one past the highest (``add_bulk``)."""
    operation: str = DEFAULT_OPERATION
    status: BulkStatus = "waiting"
    members_in_payload_number: NonNegInt = 0
    members_created_number: NonNegInt = 0
    members_updated_number: NonNegInt = 0
    members_with_validation_errors_number: NonNegInt = 0
    retries: NonNegInt = 0
    members_errors: MembersErrors = {}
    created_at: str | None = None
    """Omitted: now."""


class BulkPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Fields to change on a bulk; anything left out stays as it is."""

    status: BulkStatus | msgspec.UnsetType = msgspec.UNSET
    request_number: PosInt | msgspec.UnsetType = msgspec.UNSET
    operation: str | msgspec.UnsetType = msgspec.UNSET
    members_in_payload_number: NonNegInt | msgspec.UnsetType = msgspec.UNSET
    members_created_number: NonNegInt | msgspec.UnsetType = msgspec.UNSET
    members_updated_number: NonNegInt | msgspec.UnsetType = msgspec.UNSET
    members_with_validation_errors_number: NonNegInt | msgspec.UnsetType = msgspec.UNSET
    retries: NonNegInt | msgspec.UnsetType = msgspec.UNSET
    members_errors: MembersErrors | msgspec.UnsetType = msgspec.UNSET
    created_at: str | msgspec.UnsetType = msgspec.UNSET


class ImportSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /_control/imports/{slug}/{import_id}``."""

    bulks: list[BulkSpec] = []
    legacy_totals: bool = False
    """Spell the payload total ``members_in_payloads_number`` in the import answer (older docs)."""
    created_at: str | None = None


class ImportBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /_control/imports``: many imports at once (benchmarks create thousands)."""

    imports: list[NewImportSpec]


class NewImportSpec(ImportSpec, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /_control/imports``: like :class:`ImportSpec`, with the club and an optional id."""

    slug: NonEmptyStr
    import_id: NonEmptyStr | None = None
    """Omitted: a fresh UUID."""


class ImportDetail(msgspec.Struct, frozen=True, kw_only=True):
    """An import as the control API shows it: every bulk in full, ordered by request number."""

    slug: str
    import_id: str
    created_at: str
    legacy_totals: bool
    bulks: list[Bulk]


class FaultSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A fault to inject into upstream answers.

    Without ``count`` and ``p`` it hits every matching request until cleared; with ``count`` the
    next ``count`` matching requests; with ``p`` each matching request with probability ``p``
    (seeded); with both, a fraction ``p`` until ``count`` hits.
    """

    kind: FaultKind
    count: PosInt | None = None
    p: Probability | None = None
    match: str | None = None
    """Only requests whose path contains this string."""
    hang_s: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_HANG_S)] = DEFAULT_HANG_S
    retry_after: NonNegInt | str = DEFAULT_RETRY_AFTER_S
    """``Retry-After`` on 429/503: delta-seconds, or a string sent verbatim (e.g. an HTTP date)."""


class Fault(msgspec.Struct, kw_only=True):
    """An injected fault and how often it has hit."""

    id: int
    kind: FaultKind
    count: int | None
    p: float | None
    match: str | None
    hang_s: float
    retry_after: int | str
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.hits >= self.count


# --- logs -----------------------------------------------------------------------------------------


class RequestLogEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One upstream request as the simulator answered it.

    (``gc=False``: 100,000 of these hold no cycles, and the cyclic GC need not walk them.)

    ``t``/``t_mono`` are taken when the answer was decided (after a ``hang``), so they pair with
    ``shown``; ``duration_s`` is the time since the request arrived. ``status`` is ``None`` when
    the connection was dropped. ``shown`` maps bulk id → the status the answer showed (empty when
    the answer showed none: an error, a malformed body).
    """

    seq: int
    t: float
    t_mono: float
    duration_s: float
    method: str
    path: str
    kind: PathKind
    slug: str | None
    import_id: str | None
    status: int | None
    token: TokenCheck
    fault: FaultKind | None
    fault_id: int | None
    shown: dict[int, str]
    user_agent: str | None = None
    """``X-User-Agent`` and ``X-Product-Name`` as sent (the token is never logged)."""
    product_name: str | None = None


class FlipEntry(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A bulk status change (``from`` is ``None`` when the bulk appeared)."""

    seq: int
    t: float
    t_mono: float
    slug: str
    import_id: str
    bulk_id: int
    from_: BulkStatus | None = msgspec.field(name="from")
    to: BulkStatus
    retries: int
    source: Source


class Counters(msgspec.Struct, kw_only=True):
    """Upstream request counts since start (or the last reset)."""

    requests: int
    by_kind: dict[str, int]
    by_status: dict[str, int]
    """Keyed by HTTP status, or ``"dropped"`` for a disconnect."""
    by_fault: dict[str, int]
    flips: int


class RequestLogPage(msgspec.Struct, kw_only=True):
    """A page of the request log.

    ``last_seq`` is the newest seq ever logged (pass it as ``since`` next time); ``first_seq`` the
    oldest still held, so a reader can tell it fell behind the ring buffer.
    """

    items: list[RequestLogEntry]
    first_seq: int
    last_seq: int


class FlipLogPage(msgspec.Struct, kw_only=True):
    """A page of the flip log (``first_seq``/``last_seq`` as in :class:`RequestLogPage`)."""

    items: list[FlipEntry]
    first_seq: int
    last_seq: int


class Health(msgspec.Struct, kw_only=True):
    """Body of ``GET /_control/health``."""

    status: str
    imports: int
    faults: int
    requests: int
    scenarios_running: int


class Answer(msgspec.Struct, frozen=True):
    """What the simulator answers to one upstream request, before any fault."""

    status: int
    body: bytes
    shown: dict[int, str]
    token: TokenCheck


# --- internals ------------------------------------------------------------------------------------


class _ImportRecord(msgspec.Struct, kw_only=True):
    """An import and its encoded-answer caches (never encoded itself)."""

    slug: str
    import_id: str
    created_at: str
    legacy_totals: bool
    bulks: dict[int, Bulk]
    bulk_bodies: dict[int, tuple[bytes, dict[int, str]]] = {}
    """Encoded bulk and what it shows, per bulk id (shared by every log entry that showed it)."""
    body: bytes | None = None
    shown: dict[int, str] = {}

    def ordered(self) -> list[Bulk]:
        return sorted(self.bulks.values(), key=lambda b: (b.request_number, b.id))

    def invalidate(self, bulk_id: int) -> None:
        self.bulk_bodies.pop(bulk_id, None)
        self.body = None


_NOTHING_SHOWN: Final[dict[int, str]] = {}
_MISSING_BODIES: Final = {name: error_body(f"Header {name} is missing") for name in REQUIRED_HEADERS}
_INCORRECT_SLUG_BODY: Final = error_body(f"Header {SLUG_HEADER} is incorrect")
_UNAUTHORIZED_BODY: Final = error_body("Unauthorized: invalid client authorization token")
_IMPORT_NOT_FOUND_BODY: Final = error_body(IMPORT_NOT_FOUND)
_BULK_NOT_FOUND_BODY: Final = error_body(BULK_NOT_FOUND)


def _since(entries: deque[Any], since: int, limit: int) -> list[Any]:
    """Entries with ``seq > since`` from a seq-ordered deque, without scanning the older ones."""
    if not entries:
        return []
    first = entries[0].seq
    start = max(0, since - first + 1)
    return list(islice(entries, start, start + limit))


class Simulator:
    """The whole simulated MPC: state, faults, logs. Not thread-safe; one event loop owns it."""

    def __init__(
        self,
        *,
        default_token: str | None = DEFAULT_TOKEN,
        clubs: Mapping[str, str] | None = None,
        seed: int | None = None,
        request_log_size: int = DEFAULT_REQUEST_LOG_SIZE,
        flip_log_size: int = DEFAULT_FLIP_LOG_SIZE,
        time_scale: float = 1.0,
    ) -> None:
        """``default_token`` is accepted for clubs without their own (``None``: any token is);
        ``clubs`` maps slug → token; ``seed`` drives fault probabilities and scenario RNGs;
        ``time_scale`` is the default speed factor of scenarios."""
        if request_log_size < 1 or flip_log_size < 1:
            raise ValueError("log sizes must be at least 1")
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.seed = seed
        self.time_scale = time_scale
        self._initial_default_token = default_token
        self._initial_clubs = dict(clubs or {})
        self.default_token = default_token
        self.clubs: dict[str, str] = dict(self._initial_clubs)
        self.rng = random.Random(seed)
        self._imports: dict[tuple[str, str], _ImportRecord] = {}
        self._faults: list[Fault] = []
        self._next_fault_id = 1
        self._next_bulk_id = FIRST_BULK_ID
        self._requests: deque[RequestLogEntry] = deque(maxlen=request_log_size)
        self._flips: deque[FlipEntry] = deque(maxlen=flip_log_size)
        self._request_seq = 0
        self._flip_seq = 0
        self._reset_counters()
        self._encode = msgspec.json.Encoder().encode

    def _reset_counters(self) -> None:
        self._count_total = 0
        self._count_kind: dict[str, int] = {}
        self._count_status: dict[int | None, int] = {}
        self._count_fault: dict[str, int] = {}
        self._count_flips = 0

    def reset(self) -> None:
        """Back to the start-up configuration: no imports, faults, log entries or counts.

        Sequence numbers and bulk ids keep growing, so a reader polling ``since`` a seq it saw
        before the reset, or a bridge that saw an old bulk id, is never confused.
        """
        self.default_token = self._initial_default_token
        self.clubs = dict(self._initial_clubs)
        self.rng = random.Random(self.seed)
        self._imports.clear()
        self._faults.clear()
        self._requests.clear()
        self._flips.clear()
        self._reset_counters()

    # --- clubs ----------------------------------------------------------------------------------

    def set_club_token(self, slug: str, token: str | None) -> None:
        """Give a club its own token (``None``: back to the default token)."""
        if token is None:
            self.clubs.pop(slug, None)
        else:
            self.clubs[slug] = token

    def expected_token(self, slug: str) -> str | None:
        """The token a club's requests must carry (``None``: any token will do)."""
        return self.clubs.get(slug, self.default_token)

    # --- imports and bulks ----------------------------------------------------------------------

    def reserve_bulk_ids(self, n: int) -> int:
        """Reserve ``n`` consecutive fresh bulk ids and return the first one (scenarios plan ahead)."""
        first = self._next_bulk_id
        self._next_bulk_id += n
        return first

    def _bulk_from_spec(self, spec: BulkSpec, import_id: str, request_number: int) -> Bulk:
        if spec.id is None:
            bulk_id = self._next_bulk_id
            self._next_bulk_id += 1
        else:
            bulk_id = spec.id
            self._next_bulk_id = max(self._next_bulk_id, bulk_id + 1)
        return Bulk(
            id=bulk_id,
            import_id=import_id,
            request_number=spec.request_number if spec.request_number is not None else request_number,
            operation=spec.operation,
            status=spec.status,
            members_in_payload_number=spec.members_in_payload_number,
            members_created_number=spec.members_created_number,
            members_updated_number=spec.members_updated_number,
            members_with_validation_errors_number=spec.members_with_validation_errors_number,
            retries=spec.retries,
            members_errors=spec.members_errors,
            created_at=spec.created_at or now_iso(),
        )

    def _record(self, slug: str, import_id: str) -> _ImportRecord:
        record = self._imports.get((slug, import_id))
        if record is None:
            raise SimulatorError(404, f"no import {import_id!r} in club {slug!r}")
        return record

    def _bulk(self, slug: str, import_id: str, bulk_id: int) -> tuple[_ImportRecord, Bulk]:
        record = self._record(slug, import_id)
        bulk = record.bulks.get(bulk_id)
        if bulk is None:
            raise SimulatorError(404, f"no bulk {bulk_id} in import {import_id!r} of club {slug!r}")
        return record, bulk

    def _store(self, record: _ImportRecord, bulk: Bulk, before: Bulk | None, source: Source) -> None:
        record.bulks[bulk.id] = bulk
        record.invalidate(bulk.id)
        if before is None or before.status != bulk.status:
            self._flip(record, bulk, None if before is None else before.status, source)

    def _flip(self, record: _ImportRecord, bulk: Bulk, before: BulkStatus | None, source: Source) -> None:
        self._flip_seq += 1
        self._count_flips += 1
        self._flips.append(
            FlipEntry(
                seq=self._flip_seq,
                t=time.time(),
                t_mono=time.monotonic(),
                slug=record.slug,
                import_id=record.import_id,
                bulk_id=bulk.id,
                from_=before,
                to=bulk.status,
                retries=bulk.retries,
                source=source,
            )
        )

    def put_import(
        self,
        slug: str,
        import_id: str,
        spec: ImportSpec | None = None,
        *,
        source: Source = "control",
    ) -> ImportDetail:
        """Create or replace an import. A replaced import keeps the flip history of bulks it keeps."""
        spec = spec or ImportSpec()
        if not slug or not import_id:
            raise SimulatorError(400, "slug and import_id must not be empty")
        ids = [b.id for b in spec.bulks if b.id is not None]
        if len(ids) != len(set(ids)):
            raise SimulatorError(400, "bulk ids must be unique within an import")
        old = self._imports.get((slug, import_id))
        record = _ImportRecord(
            slug=slug,
            import_id=import_id,
            created_at=spec.created_at or (old.created_at if old else now_iso()),
            legacy_totals=spec.legacy_totals,
            bulks={},
        )
        self._imports[(slug, import_id)] = record
        for position, bulk_spec in enumerate(spec.bulks, start=1):
            bulk = self._bulk_from_spec(bulk_spec, import_id, position)
            self._store(record, bulk, old.bulks.get(bulk.id) if old else None, source)
        return self._detail(record)

    def add_bulk(self, slug: str, import_id: str, spec: BulkSpec, *, source: Source = "control") -> Bulk:
        """Add a bulk to an import, or replace the bulk with the same id."""
        record = self._record(slug, import_id)
        next_number = max((b.request_number for b in record.bulks.values()), default=0) + 1
        before = record.bulks.get(spec.id) if spec.id is not None else None
        if before is not None and spec.request_number is None:
            next_number = before.request_number
        bulk = self._bulk_from_spec(spec, import_id, next_number)
        self._store(record, bulk, before, source)
        return bulk

    def patch_bulk(
        self, slug: str, import_id: str, bulk_id: int, patch: BulkPatch, *, source: Source = "control"
    ) -> Bulk:
        """Change any fields of a bulk in one step (a status change is logged as one flip)."""
        record, before = self._bulk(slug, import_id, bulk_id)
        changes = {f: v for f in patch.__struct_fields__ if (v := getattr(patch, f)) is not msgspec.UNSET}
        if not changes:
            return before
        bulk = msgspec.structs.replace(before, **changes)
        self._store(record, bulk, before, source)
        return bulk

    def delete_bulk(self, slug: str, import_id: str, bulk_id: int) -> None:
        """Remove a bulk: it answers 404 from now on and leaves the import's list."""
        record, _ = self._bulk(slug, import_id, bulk_id)
        del record.bulks[bulk_id]
        record.invalidate(bulk_id)

    def delete_import(self, slug: str, import_id: str) -> None:
        """Remove an import and its bulks (both answer 404 from now on)."""
        self._record(slug, import_id)
        del self._imports[(slug, import_id)]

    def has_import(self, slug: str, import_id: str) -> bool:
        """Whether the import exists."""
        return (slug, import_id) in self._imports

    @property
    def import_count(self) -> int:
        return len(self._imports)

    def get_bulk(self, slug: str, import_id: str, bulk_id: int) -> Bulk | None:
        """The bulk, or ``None``."""
        record = self._imports.get((slug, import_id))
        return None if record is None else record.bulks.get(bulk_id)

    def get_import(self, slug: str, import_id: str) -> ImportDetail:
        """An import with all its bulks (raises :class:`SimulatorError` 404 when unknown)."""
        return self._detail(self._record(slug, import_id))

    def list_imports(self) -> list[ImportDetail]:
        """Every import, in creation order."""
        return [self._detail(record) for record in self._imports.values()]

    @staticmethod
    def _detail(record: _ImportRecord) -> ImportDetail:
        return ImportDetail(
            slug=record.slug,
            import_id=record.import_id,
            created_at=record.created_at,
            legacy_totals=record.legacy_totals,
            bulks=record.ordered(),
        )

    # --- upstream answers -----------------------------------------------------------------------

    def token_check(self, slug: str, headers: Mapping[str, str]) -> TokenCheck:
        """How the request's token compares with the club's: what the request log keeps of it."""
        presented = headers.get(TOKEN_HEADER)
        if not presented:
            return "missing"
        expected = self.clubs.get(slug, self.default_token)
        return "match" if expected is None or presented == expected else "mismatch"

    def _check_headers(self, slug: str, headers: Mapping[str, str]) -> tuple[Answer | None, TokenCheck]:
        """MPC's header checks in MPC's order: 470 missing, 471 slug mismatch, 401 token."""
        auth = self.token_check(slug, headers)
        for name in REQUIRED_HEADERS:
            if not headers.get(name):
                return Answer(470, _MISSING_BODIES[name], _NOTHING_SHOWN, auth), auth
        if headers[SLUG_HEADER] != slug:
            return Answer(471, _INCORRECT_SLUG_BODY, _NOTHING_SHOWN, auth), auth
        if auth != "match":
            return Answer(401, _UNAUTHORIZED_BODY, _NOTHING_SHOWN, auth), auth
        return None, auth

    def answer_bulk(self, slug: str, import_id: str, bulk_id: str, headers: Mapping[str, str]) -> Answer:
        """The answer to ``GET /v3/{slug}/members/imports/{import_id}/bulks/{bulk_id}``."""
        refused, token = self._check_headers(slug, headers)
        if refused is not None:
            return refused
        record = self._imports.get((slug, import_id))
        if record is None:
            return Answer(404, _IMPORT_NOT_FOUND_BODY, _NOTHING_SHOWN, token)
        # MPC's ids are integers; anything else cannot name a bulk.
        bulk = record.bulks.get(int(bulk_id)) if bulk_id.isdigit() else None
        if bulk is None:
            return Answer(404, _BULK_NOT_FOUND_BODY, _NOTHING_SHOWN, token)
        cached = record.bulk_bodies.get(bulk.id)
        if cached is None:
            cached = record.bulk_bodies[bulk.id] = (self._encode(bulk), {bulk.id: bulk.status})
        return Answer(200, cached[0], cached[1], token)

    def answer_import(self, slug: str, import_id: str, headers: Mapping[str, str]) -> Answer:
        """The answer to ``GET /v3/{slug}/members/imports/{import_id}``."""
        refused, token = self._check_headers(slug, headers)
        if refused is not None:
            return refused
        record = self._imports.get((slug, import_id))
        if record is None:
            return Answer(404, _IMPORT_NOT_FOUND_BODY, _NOTHING_SHOWN, token)
        if record.body is None:
            record.body, record.shown = self._encode_import(record)
        return Answer(200, record.body, record.shown, token)

    def _encode_import(self, record: _ImportRecord) -> tuple[bytes, dict[int, str]]:
        bulks = record.ordered()
        refs = [BulkRef(b.id, b.request_number, b.status) for b in bulks]
        payload = sum(b.members_in_payload_number for b in bulks)
        created = sum(b.members_created_number for b in bulks)
        updated = sum(b.members_updated_number for b in bulks)
        invalid = sum(b.members_with_validation_errors_number for b in bulks)
        view: ImportView | LegacyImportView
        if record.legacy_totals:
            view = LegacyImportView(
                members_in_payloads_number=payload,
                members_created_number=created,
                members_updated_number=updated,
                members_with_validation_errors_number=invalid,
                created_at=record.created_at,
                bulks=refs,
            )
        else:
            view = ImportView(
                members_in_payload_number=payload,
                members_created_number=created,
                members_updated_number=updated,
                members_with_validation_errors_number=invalid,
                created_at=record.created_at,
                bulks=refs,
            )
        return self._encode(view), {b.id: b.status for b in bulks}

    # --- faults ---------------------------------------------------------------------------------

    def add_fault(self, spec: FaultSpec) -> Fault:
        """Inject a fault; faults are tried in the order they were added."""
        fault = Fault(
            id=self._next_fault_id,
            kind=spec.kind,
            count=spec.count,
            p=spec.p,
            match=spec.match,
            hang_s=spec.hang_s,
            retry_after=spec.retry_after,
        )
        self._next_fault_id += 1
        self._faults.append(fault)
        return fault

    def list_faults(self) -> list[Fault]:
        """Every fault still able to hit (exhausted ``count`` faults are dropped)."""
        return list(self._faults)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    def delete_fault(self, fault_id: int) -> None:
        """Remove one fault."""
        for index, fault in enumerate(self._faults):
            if fault.id == fault_id:
                del self._faults[index]
                return
        raise SimulatorError(404, f"no fault {fault_id}")

    @property
    def has_faults(self) -> bool:
        return bool(self._faults)

    def pick_fault(self, path: str) -> Fault | None:
        """The fault that hits this request, if any (and count the hit).

        The first fault whose ``match`` fits and whose dice (``p``) say yes wins; a fault whose
        dice say no lets the next one try.
        """
        if not self._faults:
            return None
        for fault in self._faults:
            if fault.match is not None and fault.match not in path:
                continue
            if fault.p is not None and self.rng.random() >= fault.p:
                continue
            fault.hits += 1
            if fault.exhausted:
                self._faults.remove(fault)
            return fault
        return None

    # --- logs and counters ----------------------------------------------------------------------

    def record_request(
        self,
        *,
        arrived_mono: float,
        method: str,
        path: str,
        kind: PathKind,
        slug: str | None,
        import_id: str | None,
        status: int | None,
        token: TokenCheck,
        fault: Fault | None,
        shown: dict[int, str],
        user_agent: str | None = None,
        product_name: str | None = None,
    ) -> None:
        """Log one upstream request and count it."""
        self._request_seq += 1
        t_mono = time.monotonic()
        fault_kind = None if fault is None else fault.kind
        self._requests.append(
            RequestLogEntry(
                seq=self._request_seq,
                t=time.time(),
                t_mono=t_mono,
                duration_s=t_mono - arrived_mono,
                method=method,
                path=path,
                kind=kind,
                slug=slug,
                import_id=import_id,
                status=status,
                token=token,
                fault=fault_kind,
                fault_id=None if fault is None else fault.id,
                shown=shown,
                user_agent=user_agent,
                product_name=product_name,
            )
        )
        self._count_total += 1
        self._count_kind[kind] = self._count_kind.get(kind, 0) + 1
        self._count_status[status] = self._count_status.get(status, 0) + 1
        if fault_kind is not None:
            self._count_fault[fault_kind] = self._count_fault.get(fault_kind, 0) + 1

    def requests_since(self, since: int = 0, limit: int = DEFAULT_LOG_PAGE) -> RequestLogPage:
        """Request log entries with ``seq > since``, oldest first, at most ``limit``."""
        items: list[RequestLogEntry] = _since(self._requests, since, _page_limit(limit))
        first = self._requests[0].seq if self._requests else self._request_seq + 1
        return RequestLogPage(items=items, first_seq=first, last_seq=self._request_seq)

    def flips_since(self, since: int = 0, limit: int = DEFAULT_LOG_PAGE) -> FlipLogPage:
        """Flip log entries with ``seq > since``, oldest first, at most ``limit``."""
        items: list[FlipEntry] = _since(self._flips, since, _page_limit(limit))
        first = self._flips[0].seq if self._flips else self._flip_seq + 1
        return FlipLogPage(items=items, first_seq=first, last_seq=self._flip_seq)

    def iter_flips(self) -> Iterable[FlipEntry]:
        """Every flip still held, oldest first."""
        return iter(self._flips)

    def counters(self) -> Counters:
        """Requests by path kind, by status and by fault, and the number of flips."""
        return Counters(
            requests=self._count_total,
            by_kind=dict(self._count_kind),
            by_status={("dropped" if s is None else str(s)): n for s, n in self._count_status.items()},
            by_fault=dict(self._count_fault),
            flips=self._count_flips,
        )


def _page_limit(limit: int) -> int:
    if limit < 1:
        raise SimulatorError(400, "limit must be at least 1")
    return min(limit, MAX_LOG_PAGE)
