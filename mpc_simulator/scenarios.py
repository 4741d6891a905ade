"""Timed scripts the simulator plays by itself: ``demo``, ``realistic`` and ``random_flips``.

``demo`` and ``realistic`` are *plans*: a pure function of the parameters and a seeded RNG
(:func:`plan_demo`, :func:`plan_realistic`) returns every step with its instant, and the
:class:`ScenarioManager` plays them on the server's event loop, dividing every instant by the
time scale. ``random_flips`` is live: at random instants it advances one of its bulks by one
valid lifecycle step (:func:`next_transition`), whatever state control calls left it in.

Every change goes through :class:`~mpc_simulator.state.Simulator` with ``source="scenario"``,
so the flip log carries the wall time of each change for latency benchmarks.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from mpc_simulator.state import (
    MAX_RETRIES,
    TERMINAL_STATUSES,
    BulkPatch,
    BulkSpec,
    BulkStatus,
    ImportSpec,
    MembersErrors,
    NonEmptyStr,
    PosInt,
    Probability,
    Simulator,
    SimulatorError,
)

DEMO_SLUG: Final = "infinity-mall"
DEMO_BULK_MEMBERS: Final = 1000
"""Bulks A, B and C of the demo are full MPC bulks (MPC takes at most 1000 members per request)."""
DEMO_LATE_BULK_MEMBERS: Final = 25
MAX_BULK_MEMBERS: Final = 1000
MAX_SCENARIO_BULKS: Final = 100_000
"""Most bulks one scenario may create (a plan holds ~5 steps per bulk in memory)."""
MAX_RATE: Final = 10_000.0
"""Most flips per second ``random_flips`` accepts (after the time scale)."""

ScenarioName = Literal["demo", "realistic", "random_flips"]
SCENARIO_NAMES: Final[tuple[ScenarioName, ...]] = ("demo", "realistic", "random_flips")
ScenarioState = Literal["running", "finished", "stopped", "failed"]
Seconds = Annotated[float, msgspec.Meta(ge=0.0)]
TimeScale = Annotated[float, msgspec.Meta(gt=0.0)]


# --- realistic member identifiers and validation errors ------------------------------------------

_FIRST_NAMES: Final = (
    "kari", "ola", "ingrid", "lars", "nora", "emil", "sofie", "jonas", "maja", "henrik",
    "astrid", "magnus", "thea", "sindre", "ida", "joe", "anna", "piotr", "agnieszka", "mats",
)  # fmt: skip
_LAST_NAMES: Final = (
    "nordmann", "hansen", "johansen", "olsen", "larsen", "andersen", "pedersen", "nilsen",
    "berg", "haugen", "kowalski", "nowak", "lund", "dahl", "bakken",
)  # fmt: skip
_EMAIL_DOMAINS: Final = ("example.com", "example.org", "example.net", "example.no")
_NOT_SUPPORTED_LANGUAGES: Final = ("pl", "de", "sv", "da", "fi", "uk", "lt")
_SUPPORTED_LANGUAGES: Final = "en, no"
_BAD_DATES: Final = ("31.02.1990", "1987-13-01", "2001/05/17", "19-07-1975", "00-00-0000", "1999-02-30")
_BAD_GENDERS: Final = ("m", "f", "unknown", "kvinne", "mann")
_BAD_POSTAL_CODES: Final = ("12", "ABCD", "000000", "9 99")

ErrorKind = Literal[
    "language_value_not_match",
    "birth_date_invalid_format",
    "gender_value_not_match",
    "zip_code_invalid_format",
]
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = (
    "language_value_not_match",
    "birth_date_invalid_format",
    "gender_value_not_match",
    "zip_code_invalid_format",
)


def fake_email(rng: random.Random) -> str:
    """A plausible member e-mail on a reserved example domain."""
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    return f"{first}.{last}{rng.randrange(1, 1000)}@{rng.choice(_EMAIL_DOMAINS)}"


def fake_msisdn(rng: random.Random) -> str:
    """A plausible Norwegian mobile number (``+47`` and 8 digits starting with 4 or 9)."""
    return f"+47{rng.choice('49')}{rng.randrange(10**7):07d}"


def validation_error(kind: ErrorKind, rng: random.Random) -> tuple[str, dict[str, str]]:
    """One MPC validation error, ``(property, detail)``, shaped like the documentation's example."""
    if kind == "language_value_not_match":
        value = rng.choice(_NOT_SUPPORTED_LANGUAGES)
        return "language", {
            "error": "value_not_match",
            "value": value,
            "values": _SUPPORTED_LANGUAGES,
            "property": "language",
        }
    if kind == "birth_date_invalid_format":
        return "birth_date", {
            "error": "invalid_format",
            "value": rng.choice(_BAD_DATES),
            "property": "birth_date",
        }
    if kind == "gender_value_not_match":
        return "gender", {
            "error": "value_not_match",
            "value": rng.choice(_BAD_GENDERS),
            "values": "male, female, other",
            "property": "gender",
        }
    return "zip_code", {
        "error": "invalid_format",
        "value": rng.choice(_BAD_POSTAL_CODES),
        "property": "zip_code",
    }


def member_errors(errors: list[tuple[str, dict[str, str]]]) -> dict[str, Any]:
    """One member's entry of ``members_errors``: ``{"properties": [{"error": {prop: [detail]}}]}``."""
    return {"properties": [{"error": {prop: [detail]}} for prop, detail in errors]}


def make_members_errors(
    rng: random.Random, n: int, kinds: list[ErrorKind] | None = None, *, msisdn_share: float = 0.3
) -> MembersErrors:
    """``members_errors`` for ``n`` invalid members (``kinds[i]`` for member i, else random kinds).

    Members are keyed by e-mail or, for ``msisdn_share`` of them, by mobile number, as MPC does.
    A few random members get two errors, as real payloads do.
    """
    errors: MembersErrors = {}
    while len(errors) < n:
        index = len(errors)
        key = fake_msisdn(rng) if rng.random() < msisdn_share else fake_email(rng)
        if key in errors:
            continue
        if kinds is not None and index < len(kinds):
            details = [validation_error(kinds[index], rng)]
        else:
            details = [
                validation_error(kind, rng)
                for kind in rng.sample(ERROR_KINDS, 2 if rng.random() < 0.1 else 1)
            ]
        errors[key] = member_errors(details)
    return errors


def outcome_patch(
    rng: random.Random,
    payload: int,
    *,
    error_rate: float,
    nothing_p: float,
    retries: int | None = None,
) -> BulkPatch:
    """A ``finished`` patch with consistent counts: created + updated + invalid = payload.

    With probability ``nothing_p`` nothing is imported (every member invalid); otherwise about
    ``error_rate`` of the members are invalid.
    """
    if rng.random() < nothing_p:
        invalid = payload
    else:
        mean = payload * error_rate
        invalid = (
            min(payload, max(0, round(rng.gauss(mean, math.sqrt(mean * (1.0 - error_rate)))))) if mean else 0
        )
    valid = payload - invalid
    created = round(valid * rng.uniform(0.5, 0.95))
    patch = BulkPatch(
        status="finished",
        members_created_number=created,
        members_updated_number=valid - created,
        members_with_validation_errors_number=invalid,
        members_errors=make_members_errors(rng, invalid),
    )
    if retries is not None:
        patch.retries = retries
    return patch


# --- lifecycle ------------------------------------------------------------------------------------


def is_valid_transition(
    before: BulkStatus, before_retries: int, after: BulkStatus, after_retries: int
) -> bool:
    """Whether one step of MPC's bulk lifecycle leads from ``before`` to ``after``.

    ``waiting → working``; ``working → finished``; ``working → waiting_for_retry`` with one more
    retry (at most 5); ``working → failed`` once 5 retries are spent; ``waiting_for_retry →
    working``. Terminal statuses lead nowhere.
    """
    if before == "waiting":
        return after == "working" and after_retries == before_retries
    if before == "waiting_for_retry":
        return after == "working" and after_retries == before_retries
    if before == "working":
        if after == "finished":
            return after_retries == before_retries
        if after == "waiting_for_retry":
            return after_retries == before_retries + 1 <= MAX_RETRIES
        if after == "failed":
            return after_retries == before_retries == MAX_RETRIES
    return False


def next_transition(
    status: BulkStatus, retries: int, rng: random.Random, *, finish_p: float
) -> tuple[BulkStatus, int] | None:
    """A random valid next ``(status, retries)`` for a bulk, or ``None`` when it is terminal.

    A working bulk finishes with probability ``finish_p``; otherwise its job fails: it waits for
    a retry while retries remain, and fails for good after the 5th.
    """
    if status in TERMINAL_STATUSES:
        return None
    if status in ("waiting", "waiting_for_retry"):
        return "working", retries
    if rng.random() < finish_p:
        return "finished", retries
    if retries < MAX_RETRIES:
        return "waiting_for_retry", retries + 1
    return "failed", retries


# --- plans ----------------------------------------------------------------------------------------


class PutImportStep(msgspec.Struct, tag="put_import", kw_only=True):
    slug: str
    import_id: str
    spec: ImportSpec


class AddBulkStep(msgspec.Struct, tag="add_bulk", kw_only=True):
    slug: str
    import_id: str
    spec: BulkSpec


class PatchBulkStep(msgspec.Struct, tag="patch_bulk", kw_only=True):
    slug: str
    import_id: str
    bulk_id: int
    patch: BulkPatch


Step = PutImportStep | AddBulkStep | PatchBulkStep


class TimedStep(msgspec.Struct, frozen=True):
    """A step and its instant in scenario seconds (divided by the time scale when played)."""

    at_s: float
    step: Step


class ImportRef(msgspec.Struct, kw_only=True):
    """An import a scenario drives, with the bulks it (will) hold."""

    slug: str
    import_id: str
    bulk_ids: list[int]


class Plan(msgspec.Struct, kw_only=True):
    """Every step of a scripted scenario, ordered by instant (stable for equal instants)."""

    steps: list[TimedStep]
    imports: list[ImportRef]

    @property
    def duration_s(self) -> float:
        return self.steps[-1].at_s if self.steps else 0.0


def apply_step(sim: Simulator, step: Step) -> None:
    """Carry out one step on the simulator as the scenario source."""
    if isinstance(step, PutImportStep):
        sim.put_import(step.slug, step.import_id, step.spec, source="scenario")
    elif isinstance(step, AddBulkStep):
        sim.add_bulk(step.slug, step.import_id, step.spec, source="scenario")
    else:
        sim.patch_bulk(step.slug, step.import_id, step.bulk_id, step.patch, source="scenario")


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID from the scenario's RNG, so a seeded run is reproducible."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _PlanBuilder:
    def __init__(self) -> None:
        self.steps: list[TimedStep] = []

    def put(self, at_s: float, slug: str, import_id: str, spec: ImportSpec) -> None:
        self.steps.append(TimedStep(at_s, PutImportStep(slug=slug, import_id=import_id, spec=spec)))

    def add(self, at_s: float, slug: str, import_id: str, spec: BulkSpec) -> None:
        self.steps.append(TimedStep(at_s, AddBulkStep(slug=slug, import_id=import_id, spec=spec)))

    def patch(self, at_s: float, slug: str, import_id: str, bulk_id: int, patch: BulkPatch) -> None:
        self.steps.append(
            TimedStep(at_s, PatchBulkStep(slug=slug, import_id=import_id, bulk_id=bulk_id, patch=patch))
        )

    def build(self, imports: list[ImportRef]) -> Plan:
        return Plan(steps=sorted(self.steps, key=lambda s: s.at_s), imports=imports)


class DemoParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Parameters of ``demo`` (all optional)."""

    slug: NonEmptyStr = DEMO_SLUG
    import_id: NonEmptyStr | None = None
    """Omitted: a fresh UUID."""
    legacy_totals: bool = False
    time_scale: TimeScale | None = None
    """Omitted: the simulator's ``--time-scale``."""
    seed: int | None = None


DEMO_TIMELINE: Final[dict[str, list[tuple[float, BulkStatus, int]]]] = {
    # bulk: [(instant at time scale 1, status, retries)]; the import starts with A, B, C waiting.
    "A": [(3.0, "working", 0), (12.0, "finished", 0)],
    "B": [(5.0, "working", 0), (11.0, "waiting_for_retry", 1), (17.0, "working", 1), (28.0, "finished", 1)],
    "C": [
        (7.0, "working", 0),
        (10.0, "waiting_for_retry", 1),
        (13.0, "working", 1),
        (16.0, "waiting_for_retry", 2),
        (19.0, "working", 2),
        (22.0, "waiting_for_retry", 3),
        (25.0, "working", 3),
        (28.5, "waiting_for_retry", 4),
        (31.0, "working", 4),
        (34.0, "waiting_for_retry", 5),
        (37.0, "working", 5),
        (40.0, "failed", 5),
    ],
    # D is posted into the import at 15 s, while the others run.
    "D": [(20.0, "working", 0), (26.0, "finished", 0)],
}
DEMO_LATE_BULK_AT_S: Final = 15.0
DEMO_B_ERRORS: Final[list[ErrorKind]] = [
    "language_value_not_match",
    "language_value_not_match",
    "birth_date_invalid_format",
]


def plan_demo(params: DemoParams, rng: random.Random, first_bulk_id: int) -> Plan:
    """The demo import: four bulks (ids ``first_bulk_id`` … +3) over ~40 s at time scale 1.

    A finishes clean; B retries once then finishes with 3 validation errors (two
    ``language/value_not_match``, one ``birth_date/invalid_format``); C retries 5 times and fails;
    D is added at 15 s and finishes with nothing imported (every member invalid).
    """
    slug, import_id = params.slug, params.import_id or _uuid(rng)
    ids = dict(zip("ABCD", range(first_bulk_id, first_bulk_id + 4), strict=True))
    plan = _PlanBuilder()
    plan.put(
        0.0,
        slug,
        import_id,
        ImportSpec(
            bulks=[BulkSpec(id=ids[name], members_in_payload_number=DEMO_BULK_MEMBERS) for name in "ABC"],
            legacy_totals=params.legacy_totals,
        ),
    )
    plan.add(
        DEMO_LATE_BULK_AT_S,
        slug,
        import_id,
        BulkSpec(
            id=ids["D"],
            request_number=4,
            operation="update",
            members_in_payload_number=DEMO_LATE_BULK_MEMBERS,
        ),
    )
    finals: dict[str, BulkPatch] = {}
    created_a = rng.randrange(700, 900)
    finals["A"] = BulkPatch(
        status="finished",
        members_created_number=created_a,
        members_updated_number=DEMO_BULK_MEMBERS - created_a,
        members_with_validation_errors_number=0,
    )
    created_b = rng.randrange(600, 800)
    finals["B"] = BulkPatch(
        status="finished",
        members_created_number=created_b,
        members_updated_number=DEMO_BULK_MEMBERS - len(DEMO_B_ERRORS) - created_b,
        members_with_validation_errors_number=len(DEMO_B_ERRORS),
        members_errors=make_members_errors(rng, len(DEMO_B_ERRORS), DEMO_B_ERRORS, msisdn_share=0.34),
    )
    finals["D"] = BulkPatch(
        status="finished",
        members_created_number=0,
        members_updated_number=0,
        members_with_validation_errors_number=DEMO_LATE_BULK_MEMBERS,
        members_errors=make_members_errors(rng, DEMO_LATE_BULK_MEMBERS),
    )
    for name, timeline in DEMO_TIMELINE.items():
        for at_s, status, retries in timeline:
            patch = finals[name] if status == "finished" else BulkPatch(status=status)
            patch.retries = retries
            plan.patch(at_s, slug, import_id, ids[name], patch)
    return plan.build([ImportRef(slug=slug, import_id=import_id, bulk_ids=list(ids.values()))])


class RealisticParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Parameters of ``realistic``; durations are in MPC seconds, divided by ``time_scale`` when played."""

    imports: PosInt = 3
    bulks_per_import: PosInt = 5
    slugs: Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [DEMO_SLUG]
    )
    """Imports are spread over these clubs in turn."""
    members_per_bulk: Annotated[int, msgspec.Meta(ge=1, le=MAX_BULK_MEMBERS)] = MAX_BULK_MEMBERS
    """Every bulk but an import's last carries this many members; the last carries 1 to this many."""
    start_spread_s: Seconds = 60.0
    """Imports are created at random instants within this window."""
    arrival_s: Seconds = 2.0
    """Mean gap between two bulks posted into one import (imports grow while they run)."""
    wait_s: Seconds = 180.0
    """Mean time an import's first bulk waits before the job queue picks it up."""
    gap_s: Seconds = 5.0
    """Mean pause between two jobs of one import (bulks are processed one after another)."""
    work_s: Seconds = 40.0
    """Mean time a job works on a bulk."""
    retry_p: Probability = 0.1
    """Chance one job attempt fails (→ ``waiting_for_retry``) for a bulk that eventually finishes."""
    retry_wait_s: Seconds = 90.0
    """Mean time a bulk waits for its retry."""
    fail_p: Probability = 0.02
    """Chance a bulk is doomed: every attempt fails and it ends ``failed`` after 5 retries."""
    nothing_p: Probability = 0.02
    """Chance a finished bulk imported nothing (every member invalid)."""
    error_rate: Probability = 0.01
    """Mean share of invalid members in a finished bulk."""
    purge_errors_after_s: Seconds | None = None
    """Empty ``members_errors`` this long after a bulk finished (MPC deletes personal data after 24 h)."""
    legacy_totals: bool = False
    operation: NonEmptyStr = "create"
    time_scale: TimeScale | None = None
    seed: int | None = None


def plan_realistic(params: RealisticParams, rng: random.Random, first_bulk_id: int) -> Plan:
    """N imports x M bulks following MPC-like timing, as one job queue per import would run them."""
    total = params.imports * params.bulks_per_import
    if total > MAX_SCENARIO_BULKS:
        raise SimulatorError(400, f"at most {MAX_SCENARIO_BULKS} bulks per scenario (asked {total})")
    plan = _PlanBuilder()
    refs: list[ImportRef] = []
    next_id = first_bulk_id
    for index in range(params.imports):
        slug = params.slugs[index % len(params.slugs)]
        import_id = _uuid(rng)
        ids = list(range(next_id, next_id + params.bulks_per_import))
        next_id += params.bulks_per_import
        refs.append(ImportRef(slug=slug, import_id=import_id, bulk_ids=ids))
        _plan_import(plan, params, rng, slug, import_id, ids)
    return plan.build(refs)


def _expo(rng: random.Random, mean: float) -> float:
    return rng.expovariate(1.0 / mean) if mean > 0 else 0.0


def _plan_import(
    plan: _PlanBuilder, params: RealisticParams, rng: random.Random, slug: str, import_id: str, ids: list[int]
) -> None:
    created = rng.uniform(0.0, params.start_spread_s)
    payloads = [params.members_per_bulk] * len(ids)
    payloads[-1] = rng.randint(1, params.members_per_bulk)
    posted: list[float] = []
    at = created
    for position, (bulk_id, payload) in enumerate(zip(ids, payloads, strict=True), start=1):
        spec = BulkSpec(
            id=bulk_id, request_number=position, operation=params.operation, members_in_payload_number=payload
        )
        if position == 1:
            plan.put(at, slug, import_id, ImportSpec(bulks=[spec], legacy_totals=params.legacy_totals))
        else:
            at += _expo(rng, params.arrival_s)
            plan.add(at, slug, import_id, spec)
        posted.append(at)

    doomed = {bulk_id for bulk_id in ids if rng.random() < params.fail_p}
    retries = dict.fromkeys(ids, 0)
    # The job queue: (instant the job can run, request order, bulk index). New bulks in order of
    # posting; a bulk waiting for a retry re-enters when its retry is due.
    queue: list[tuple[float, int, int]] = [(posted[i], i, i) for i in range(len(ids))]
    heapq.heapify(queue)
    worker_free = created + _expo(rng, params.wait_s)
    order = len(ids)
    while queue:
        ready, _, index = heapq.heappop(queue)
        bulk_id = ids[index]
        start = max(worker_free, ready)
        plan.patch(start, slug, import_id, bulk_id, BulkPatch(status="working"))
        # A job always takes some time: a zero-length job would put two flips at one instant.
        end = start + max(params.work_s * rng.uniform(0.5, 1.5), 1e-3)
        attempt_fails = bulk_id in doomed or (
            retries[bulk_id] < MAX_RETRIES and rng.random() < params.retry_p
        )
        if attempt_fails and retries[bulk_id] == MAX_RETRIES:
            plan.patch(end, slug, import_id, bulk_id, BulkPatch(status="failed"))
        elif attempt_fails:
            retries[bulk_id] += 1
            plan.patch(
                end, slug, import_id, bulk_id, BulkPatch(status="waiting_for_retry", retries=retries[bulk_id])
            )
            heapq.heappush(queue, (end + max(_expo(rng, params.retry_wait_s), 1e-3), order, index))
            order += 1
        else:
            patch = outcome_patch(
                rng, payloads[index], error_rate=params.error_rate, nothing_p=params.nothing_p
            )
            plan.patch(end, slug, import_id, bulk_id, patch)
            if params.purge_errors_after_s is not None and patch.members_errors:
                plan.patch(
                    end + params.purge_errors_after_s, slug, import_id, bulk_id, BulkPatch(members_errors={})
                )
        worker_free = end + _expo(rng, params.gap_s)


class BulkKey(msgspec.Struct, frozen=True, kw_only=True):
    """One bulk of the simulator."""

    slug: str
    import_id: str
    bulk_id: int


class RandomFlipsParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Parameters of ``random_flips``; ``rate`` and ``duration_s`` are scaled by ``time_scale``."""

    bulks: list[BulkKey] | None = None
    """Bulks to flip (they must exist); omitted: ``imports`` x ``bulks_per_import`` new waiting bulks."""
    imports: PosInt = 1
    bulks_per_import: PosInt = 10
    slug: NonEmptyStr = DEMO_SLUG
    rate: Annotated[float, msgspec.Meta(gt=0.0)] = 5.0
    """Flips per second (Poisson arrivals)."""
    duration_s: Seconds | None = None
    """Stop after this long; omitted: when every bulk is terminal (or ``max_flips``)."""
    max_flips: PosInt | None = None
    finish_p: Probability = 0.3
    """Chance a working bulk finishes (otherwise it waits for a retry, or fails after the 5th)."""
    refill: bool = False
    """When every bulk is terminal, add a new waiting bulk to one of the imports and go on."""
    members_per_bulk: Annotated[int, msgspec.Meta(ge=1, le=MAX_BULK_MEMBERS)] = 100
    error_rate: Probability = 0.01
    nothing_p: Probability = 0.02
    legacy_totals: bool = False
    time_scale: TimeScale | None = None
    seed: int | None = None


# --- the manager ----------------------------------------------------------------------------------


class ScenarioStatus(msgspec.Struct, kw_only=True):
    """Where a scenario stands (``steps_total`` is ``None`` for ``random_flips``)."""

    id: int
    name: ScenarioName
    state: ScenarioState
    time_scale: float
    seed: int
    started_t: float
    ended_t: float | None = None
    steps_done: int = 0
    steps_total: int | None = None
    steps_skipped: int = 0
    """Steps that found their import or bulk gone (deleted through the control API)."""
    flips: int = 0
    imports: list[ImportRef] = []
    error: str | None = None


class _Run:
    def __init__(self, status: ScenarioStatus) -> None:
        self.status = status
        self.task: asyncio.Task[None] | None = None


class ScenarioManager:
    """Starts, tracks and stops scenarios on the running event loop."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._runs: dict[int, _Run] = {}
        self._next_id = 1
        self._seeds = random.Random(sim.seed)

    def start(self, name: str, params: Mapping[str, Any] | None = None) -> ScenarioStatus:
        """Start a scenario; its first instant (e.g. the demo's import) is applied before returning.

        Raises :class:`SimulatorError`: 404 for an unknown name (or a named bulk that does not
        exist), 400 for bad parameters.
        """
        params = dict(params or {})
        try:
            if name == "demo":
                demo = msgspec.convert(params, DemoParams)
                return self._start_plan(
                    "demo", demo.seed, demo.time_scale, lambda r: self._plan_demo(demo, r)
                )
            if name == "realistic":
                real = msgspec.convert(params, RealisticParams)
                return self._start_plan(
                    "realistic", real.seed, real.time_scale, lambda r: self._plan_real(real, r)
                )
            if name == "random_flips":
                return self._start_flips(msgspec.convert(params, RandomFlipsParams))
        except msgspec.ValidationError as exc:
            raise SimulatorError(400, f"bad parameters for scenario {name!r}: {exc}") from None
        raise SimulatorError(404, f"unknown scenario {name!r} (known: {', '.join(SCENARIO_NAMES)})")

    def _plan_demo(self, params: DemoParams, rng: random.Random) -> Plan:
        return plan_demo(params, rng, self.sim.reserve_bulk_ids(len(DEMO_TIMELINE)))

    def _plan_real(self, params: RealisticParams, rng: random.Random) -> Plan:
        total = params.imports * params.bulks_per_import
        if total > MAX_SCENARIO_BULKS:
            raise SimulatorError(400, f"at most {MAX_SCENARIO_BULKS} bulks per scenario (asked {total})")
        return plan_realistic(params, rng, self.sim.reserve_bulk_ids(total))

    def _new_run(
        self, name: ScenarioName, seed: int | None, time_scale: float | None
    ) -> tuple[_Run, random.Random]:
        seed = self._seeds.getrandbits(63) if seed is None else seed
        status = ScenarioStatus(
            id=self._next_id,
            name=name,
            state="running",
            time_scale=time_scale or self.sim.time_scale,
            seed=seed,
            started_t=time.time(),
        )
        self._next_id += 1
        run = _Run(status)
        self._runs[status.id] = run
        return run, random.Random(seed)

    def _start_plan(
        self,
        name: ScenarioName,
        seed: int | None,
        time_scale: float | None,
        make_plan: Callable[[random.Random], Plan],
    ) -> ScenarioStatus:
        run, rng = self._new_run(name, seed, time_scale)
        try:
            plan = make_plan(rng)
        except Exception:
            del self._runs[run.status.id]
            raise
        run.status.steps_total = len(plan.steps)
        run.status.imports = plan.imports
        started = time.monotonic()
        # Steps due at once are applied now, so the caller can rely on the import existing.
        first = 0
        while first < len(plan.steps) and plan.steps[first].at_s <= 0:
            self._apply(run, plan.steps[first].step)
            first += 1
        run.task = asyncio.get_running_loop().create_task(
            self._guard(run, self._play(run, plan.steps[first:], started)), name=f"scenario-{run.status.id}"
        )
        return self.status(run.status.id)

    def _start_flips(self, params: RandomFlipsParams) -> ScenarioStatus:
        keys: list[BulkKey]
        if params.bulks is not None:
            for key in params.bulks:
                if self.sim.get_bulk(key.slug, key.import_id, key.bulk_id) is None:
                    raise SimulatorError(
                        404, f"no bulk {key.bulk_id} in import {key.import_id!r} of {key.slug!r}"
                    )
            keys = list(params.bulks)
        elif params.imports * params.bulks_per_import > MAX_SCENARIO_BULKS:
            raise SimulatorError(400, f"at most {MAX_SCENARIO_BULKS} bulks per scenario")
        else:
            keys = []
        run, rng = self._new_run("random_flips", params.seed, params.time_scale)
        if params.bulks is None:
            for _ in range(params.imports):
                import_id = _uuid(rng)
                spec = ImportSpec(
                    bulks=[
                        BulkSpec(members_in_payload_number=params.members_per_bulk)
                        for _ in range(params.bulks_per_import)
                    ],
                    legacy_totals=params.legacy_totals,
                )
                detail = self.sim.put_import(params.slug, import_id, spec, source="scenario")
                keys.extend(
                    BulkKey(slug=params.slug, import_id=import_id, bulk_id=b.id) for b in detail.bulks
                )
        grouped: dict[tuple[str, str], list[int]] = {}
        for key in keys:
            grouped.setdefault((key.slug, key.import_id), []).append(key.bulk_id)
        run.status.imports = [ImportRef(slug=s, import_id=i, bulk_ids=ids) for (s, i), ids in grouped.items()]
        run.task = asyncio.get_running_loop().create_task(
            self._guard(run, self._flip_loop(run, params, rng, keys)), name=f"scenario-{run.status.id}"
        )
        return self.status(run.status.id)

    def _apply(self, run: _Run, step: Step) -> None:
        try:
            apply_step(self.sim, step)
        except SimulatorError:
            # Control calls may delete what a scenario drives; the scenario carries on with the rest.
            run.status.steps_skipped += 1
            return
        run.status.steps_done += 1
        if isinstance(step, PatchBulkStep) and step.patch.status is not msgspec.UNSET:
            run.status.flips += 1

    async def _guard(self, run: _Run, body: Coroutine[Any, Any, None]) -> None:
        try:
            await body
        except asyncio.CancelledError:
            run.status.state = "stopped"
            run.status.ended_t = time.time()
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must show in the status, not vanish with the task
            run.status.state = "failed"
            run.status.error = f"{type(exc).__name__}: {exc}"
        else:
            run.status.state = "finished"
        run.status.ended_t = time.time()

    async def _play(self, run: _Run, steps: list[TimedStep], started: float) -> None:
        scale = run.status.time_scale
        for timed in steps:
            delay = started + timed.at_s / scale - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._apply(run, timed.step)

    async def _flip_loop(
        self, run: _Run, params: RandomFlipsParams, rng: random.Random, keys: list[BulkKey]
    ) -> None:
        scale = run.status.time_scale
        rate = min(params.rate * scale, MAX_RATE)
        started = time.monotonic()
        deadline = None if params.duration_s is None else started + params.duration_s / scale
        live = list(keys)
        next_at = started
        while params.max_flips is None or run.status.flips < params.max_flips:
            next_at += rng.expovariate(rate)
            if deadline is not None and next_at > deadline:
                return
            delay = next_at - time.monotonic()
            # Behind schedule at a high rate: still yield, or the server would stop answering.
            await asyncio.sleep(max(delay, 0.0))
            if not self._flip_one(run, params, rng, live, keys):
                return

    def _flip_one(
        self,
        run: _Run,
        params: RandomFlipsParams,
        rng: random.Random,
        live: list[BulkKey],
        keys: list[BulkKey],
    ) -> bool:
        while live:
            index = rng.randrange(len(live))
            key = live[index]
            bulk = self.sim.get_bulk(key.slug, key.import_id, key.bulk_id)
            step = (
                None
                if bulk is None
                else next_transition(bulk.status, bulk.retries, rng, finish_p=params.finish_p)
            )
            if bulk is None or step is None:
                live[index] = live[-1]
                live.pop()
                continue
            status, retries = step
            if status == "finished":
                patch = outcome_patch(
                    rng,
                    bulk.members_in_payload_number,
                    error_rate=params.error_rate,
                    nothing_p=params.nothing_p,
                    retries=retries,
                )
            else:
                patch = BulkPatch(status=status, retries=retries)
            self._apply(
                run, PatchBulkStep(slug=key.slug, import_id=key.import_id, bulk_id=key.bulk_id, patch=patch)
            )
            return True
        return params.refill and self._refill(run, params, rng, live, keys)

    def _refill(
        self,
        run: _Run,
        params: RandomFlipsParams,
        rng: random.Random,
        live: list[BulkKey],
        keys: list[BulkKey],
    ) -> bool:
        imports = [ref for ref in run.status.imports if self._exists(ref)]
        if not imports:
            return False
        ref = rng.choice(imports)
        bulk = self.sim.add_bulk(
            ref.slug,
            ref.import_id,
            BulkSpec(members_in_payload_number=params.members_per_bulk),
            source="scenario",
        )
        ref.bulk_ids.append(bulk.id)
        key = BulkKey(slug=ref.slug, import_id=ref.import_id, bulk_id=bulk.id)
        keys.append(key)
        live.append(key)
        return True

    def _exists(self, ref: ImportRef) -> bool:
        try:
            self.sim.get_import(ref.slug, ref.import_id)
        except SimulatorError:
            return False
        return True

    def status(self, scenario_id: int) -> ScenarioStatus:
        """A snapshot of one scenario's status (404 when unknown)."""
        run = self._runs.get(scenario_id)
        if run is None:
            raise SimulatorError(404, f"no scenario {scenario_id}")
        return msgspec.structs.replace(run.status)

    def list_scenarios(self) -> list[ScenarioStatus]:
        """Every scenario started since the last reset, oldest first."""
        return [msgspec.structs.replace(run.status) for run in self._runs.values()]

    async def stop(self, scenario_id: int) -> ScenarioStatus:
        """Stop a scenario (a finished one is left as it is) and return its status."""
        run = self._runs.get(scenario_id)
        if run is None:
            raise SimulatorError(404, f"no scenario {scenario_id}")
        await self._cancel(run)
        return self.status(scenario_id)

    async def stop_all(self) -> None:
        """Stop every running scenario."""
        for run in list(self._runs.values()):
            await self._cancel(run)

    async def reset(self) -> None:
        """Stop everything and forget every scenario (with :meth:`Simulator.reset`)."""
        await self.stop_all()
        self._runs.clear()
        self._seeds = random.Random(self.sim.seed)

    @staticmethod
    async def _cancel(run: _Run) -> None:
        task = run.task
        if task is None or task.done():
            return
        task.cancel()
        # wait() rather than await: the task's CancelledError must not look like our own cancellation.
        await asyncio.wait([task])
