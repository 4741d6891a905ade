"""Scenario 4, upstream: MPC misbehaves on 30 % of the requests while bulks move on.

The simulator answers about 30 % of the requests for the faulted clubs with a 500, a 503 or 429
with ``Retry-After``, a hang past the bridge's timeout, malformed JSON or a body cut short, while
the scenario moves every bulk through its statuses (each held long enough to be seen). One
import also goes through an outage of :data:`OUTAGE_FAILURES` failures in a row, and a club with
its own token (set through the credentials route) has that token revoked at the end.

Passes when: no event was false (every bulk event names a status the bulk really had, in order,
and nothing else was invented); every status MPC showed the bridge was announced and delivered by
webhook; no request for a club arrived while a ``Retry-After`` it was given ran; every
``watch.upstream_failing`` / ``watch.upstream_recovered`` matches a real run of at least
``failing_after`` failed polls in the simulator's request log, and every such run was announced;
the revoked token stopped its watch in ``error`` with exactly one event.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec

from bridge_tools.payload_contract import PayloadContract
from bridge_tools.webhook_receiver import Received, WebhookReceiver
from chaos._faultstack import (
    ApiClient,
    FaultStack,
    fault_stack,
    wait_for,
    write_log,
)
from chaos.model import Outcome, RunContext, Size
from mpc_simulator.control import SimulatorControl
from mpc_simulator.state import FaultKind, FlipEntry, RequestLogEntry

NAME: Final = "upstream"
WORKERS_FULL: Final = 2
"""Worker processes at full size (the Redis-shared pauses, holds and card lock between them)."""
SEED: Final = 4
POLL_MIN_S: Final = 0.2
POLL_MAX_S: Final = 1.0
UPSTREAM_TIMEOUT_S: Final = 0.4
"""The bridge's read timeout (connect timeout the same): a ``hang`` of :data:`HANG_S` outlasts it."""
HANG_S: Final = 1.5
RETRY_AFTER_S: Final = 1
FAILING_AFTER: Final = 5
FAULT_P: Final[dict[FaultKind, float]] = {
    "500": 0.07,
    "503": 0.03,
    "429": 0.03,
    "hang": 0.07,
    "malformed": 0.07,
    "truncated": 0.07,
}
"""Tried in this order, each with its own dice: together about 30 % of the requests."""
FAULT_MATCH: Final = "/v3/flt-"
"""Only the faulted clubs (``flt-*``); the club with its own token is left alone until revoked."""
OUTAGE_FAILURES: Final = 8
"""A run of 500s on one import: ``watch.upstream_failing`` then ``watch.upstream_recovered``."""
OUTAGE_QUIET_S: Final = 12.0
"""The outage import's bulk keeps ``waiting`` this long: the outage must not hide a status."""
HOLD_S: Final = 2.5
"""How long each status is held: several polls, even through faults and ``Retry-After``."""
RETRY_AFTER_GRACE_S: Final = 0.25
"""Requests already sent when MPC answered 429/503 may still arrive this long after the answer."""
SETTLE_TIMEOUT_S: Final = 60.0
TOKEN_MATCHED: Final = "match"  # noqa: S105 - what the request log says of a right token
STAMP_S: Final = 0.001
"""Event timestamps are cut to the millisecond."""
AFTER_END_S: Final = 1.0
"""A request already on its way when the watch ended (its last bulk seen terminal)."""
AUTH_CLUB: Final = "auth-club"
AUTH_TIMEOUT_S: Final = 15.0
AFTER_401_GRACE_S: Final = 1.0
"""Requests already on their way when the first 401 was answered."""

Step = tuple[str, dict[str, Any]]
PLANS: Final[tuple[tuple[Step, ...], ...]] = (
    (("working", {}), ("finished", {"members_created_number": 10, "members_updated_number": 2})),
    (
        ("working", {}),
        ("waiting_for_retry", {"retries": 1}),
        ("working", {}),
        (
            "finished",
            {
                "members_created_number": 5,
                "members_with_validation_errors_number": 1,
                "members_errors": {
                    "joe@example.com": {
                        "properties": [{"error": {"language": [{"error": "value_not_match", "value": "pl"}]}}]
                    }
                },
            },
        ),
    ),
    (("working", {}), ("waiting_for_retry", {"retries": 5}), ("failed", {})),
)
EVENT_STATUS: Final = {
    "bulk.started": "working",
    "bulk.retrying": "waiting_for_retry",
    "bulk.finished": "finished",
    "bulk.failed": "failed",
}
EXPECTED_TYPES: Final = {*EVENT_STATUS, "bulk.discovered", "import.completed"}
FAILING_TYPES: Final = ("watch.upstream_failing", "watch.upstream_recovered")


@dataclass
class Watched:
    """One import under watch: its club, id, watch, the bulks the watch follows and their plans."""

    slug: str
    import_id: str
    whole: bool
    bulks: dict[int, tuple[Step, ...]]
    unwatched: dict[int, tuple[Step, ...]] = field(default_factory=dict)
    start_s: float = 0.0
    late: dict[int, tuple[Step, ...]] = field(default_factory=dict)
    """Bulks added to the import after the start (a whole-import watch discovers them)."""
    watch_id: str = ""

    def primary(self, entry: RequestLogEntry) -> bool:
        """Whether a request is the one request a poll of this import depends on."""
        if entry.slug != self.slug or entry.import_id != self.import_id:
            return False
        if self.whole:
            return entry.kind == "import"
        (only,) = self.bulks
        return entry.kind == "bulk" and entry.path.endswith(f"/bulks/{only}")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def arrival(entry: RequestLogEntry) -> float:
    return entry.t - entry.duration_s


def failed(entry: RequestLogEntry) -> bool | None:
    """A request's outcome as the bridge saw it: failed, succeeded, or ``None`` (a 429 is neither)."""
    if entry.status == 429:
        return None
    if entry.fault is not None:
        return True  # 500/503, a hang past the timeout, a malformed or cut body, a dropped connection
    return entry.status not in (200, 404)


# ---------------------------------------------------------------------------------------- setup


def layout(size: Size) -> list[Watched]:
    clubs = 3 if size.short else 6
    imports: list[Watched] = []
    next_id = 5001
    for c in range(clubs):
        slug = f"flt-{chr(ord('a') + c)}"
        per_club = 1 if size.short else 2
        for i in range(per_club):
            ids = list(range(next_id, next_id + 4))
            next_id += 4
            imports.append(
                Watched(
                    slug,
                    f"imp-{c}-{i}-whole",
                    True,
                    {ids[0]: PLANS[0], ids[1]: PLANS[1], ids[2]: PLANS[2]},
                    start_s=0.5 * (c + i),
                    late={ids[3]: PLANS[(c + i) % len(PLANS)]},
                )
            )
            ids = list(range(next_id, next_id + 2))
            next_id += 2
            imports.append(
                Watched(
                    slug,
                    f"imp-{c}-{i}-named",
                    False,
                    {ids[0]: PLANS[(c + i + 1) % len(PLANS)]},
                    unwatched={ids[1]: PLANS[0]},
                    start_s=0.3 + 0.5 * (c + i),
                )
            )
    imports.append(
        Watched("flt-a", "imp-outage", False, {next_id: PLANS[1]}, start_s=OUTAGE_QUIET_S),
    )
    return imports


async def drive_bulk(
    control: SimulatorControl, slug: str, import_id: str, bulk_id: int, plan: Sequence[Step], start_s: float
) -> None:
    await asyncio.sleep(start_s)
    for status, fields in plan:
        await control.patch_bulk(slug, import_id, bulk_id, status=status, **fields)
        await asyncio.sleep(HOLD_S)


async def drive(control: SimulatorControl, imports: list[Watched], auth: Watched) -> None:
    jobs = []
    for imp in imports:
        for bulk_id, plan in {**imp.bulks, **imp.unwatched}.items():
            jobs.append(drive_bulk(control, imp.slug, imp.import_id, bulk_id, plan, imp.start_s))
        for bulk_id, plan in imp.late.items():
            jobs.append(add_late(control, imp, bulk_id, plan))
    # The club with its own token: one bulk starts working and stays so (its watch stays active).
    (auth_bulk,) = auth.bulks
    jobs.append(drive_bulk(control, auth.slug, auth.import_id, auth_bulk, auth.bulks[auth_bulk], 0.5))
    await asyncio.gather(*jobs)


async def add_late(control: SimulatorControl, imp: Watched, bulk_id: int, plan: Sequence[Step]) -> None:
    await asyncio.sleep(imp.start_s + HOLD_S * 1.5)
    await control.add_bulk(imp.slug, imp.import_id, id=bulk_id)
    await drive_bulk(control, imp.slug, imp.import_id, bulk_id, plan, HOLD_S)


async def settle(api: ApiClient, imports: list[Watched]) -> bool:
    async def ended() -> bool:
        states = [(await api.watch(imp.watch_id))["state"] for imp in imports]
        return all(state != "active" for state in states)

    return await wait_for(ended, SETTLE_TIMEOUT_S, 0.5)


# ---------------------------------------------------------------------------------------- checks


@dataclass
class Findings:
    false_events: list[str] = field(default_factory=list)
    unannounced: list[str] = field(default_factory=list)
    shown_flips: int = 0
    announced_flips: int = 0
    hidden_round_trips: int = 0


def check_bulk_events(
    imp: Watched,
    bulk_id: int,
    events: list[dict[str, Any]],
    flips: list[FlipEntry],
    shown: list[tuple[float, str]],
    found: Findings,
) -> None:
    shown = sorted(shown)
    """Events of one bulk against its flips: a subsequence of real statuses, and every shown one."""
    statuses = [f.to for f in flips]
    matched: set[int] = set()
    index = -1
    for event in events:
        data = event["data"]
        status = data.get("status") if event["type"] == "bulk.discovered" else EVENT_STATUS[event["type"]]
        at = epoch(event["timestamp"]) + STAMP_S
        # The flip it announces: the latest with its status that had happened by then (an event
        # can announce neither a status to come nor one already announced).
        later = [k for k in range(index + 1, len(statuses)) if statuses[k] == status and flips[k].t <= at][
            -1:
        ]
        if not later or data.get("status") != status:
            found.false_events.append(f"{imp.import_id} bulk {bulk_id}: {event['type']} {data.get('status')}")
            continue
        previous = data.get("previous_status")
        if previous is not None and previous not in statuses[: later[0]]:
            found.false_events.append(
                f"{imp.import_id} bulk {bulk_id}: {event['type']} after {previous}, never before"
            )
        if event["type"] == "bulk.retrying" and data.get("retries") != flips[later[0]].retries:
            found.false_events.append(f"{imp.import_id} bulk {bulk_id}: retrying with wrong retries")
        matched.add(later[0])
        # A bulk discovered already working is also announced as started: same status, next event.
        index = later[0] - 1 if event["type"] == "bulk.discovered" else later[0]
    for k, flip in enumerate(flips):
        if k == 0 and not imp.whole:
            continue  # the bulk as it was when the watch began: nothing to announce
        until = flips[k + 1].t if k + 1 < len(flips) else float("inf")
        if not any(flip.t <= t < until and status == flip.to for t, status in shown):
            continue  # MPC never showed this status to the bridge: skipping it is allowed
        seen_before = [status for t, status in shown if t < flip.t]
        if seen_before and seen_before[-1] == flip.to:
            # Back to the status the bridge saw last (working, an unseen retry, working again):
            # no status change to see, so none to announce (nothing is invented for steps not seen).
            found.hidden_round_trips += 1
            continue
        found.shown_flips += 1
        if k in matched:
            found.announced_flips += 1
        else:
            found.unannounced.append(f"{imp.import_id} bulk {bulk_id}: {flip.to} (flip {flip.seq})")


LISTING_ANNOUNCES: Final = frozenset({"working"})
"""What an import listing alone lets the bridge announce, for a bulk whose details it already has
(``bridge.core.diff.LISTING_SUFFICES``); anything else needs the bulk's own answer."""


def shown_statuses(requests: list[RequestLogEntry]) -> dict[int, list[tuple[float, str]]]:
    """When MPC showed the bridge which status of a bulk, in a way it could announce.

    A bulk's own answer shows its status; a listing shows only what a listing can announce, and
    only for a bulk the bridge already had the details of (a new bulk is fetched before it is
    announced: when that fetch fails or waits for a ``Retry-After``, the listing was not enough).
    """
    shown: dict[int, list[tuple[float, str]]] = defaultdict(list)
    detailed: set[int] = set()
    for entry in sorted((e for e in requests if e.status == 200 and e.fault is None), key=lambda e: e.t):
        for bulk_id, status in entry.shown.items():
            if entry.kind == "bulk":
                detailed.add(bulk_id)
            elif bulk_id not in detailed or status not in LISTING_ANNOUNCES:
                continue
            shown[bulk_id].append((entry.t, status))
    return shown


def check_events(
    imports: list[Watched],
    timelines: dict[str, list[dict[str, Any]]],
    flips: list[FlipEntry],
    requests: list[RequestLogEntry],
) -> Findings:
    found = Findings()
    by_bulk: dict[int, list[FlipEntry]] = defaultdict(list)
    for flip in flips:
        by_bulk[flip.bulk_id].append(flip)
    shown = shown_statuses(requests)
    for imp in imports:
        events = timelines[imp.watch_id]
        followed = {**imp.bulks, **imp.late}
        for event in events:
            kind = event["type"]
            if kind not in EXPECTED_TYPES and kind not in FAILING_TYPES:
                found.false_events.append(f"{imp.import_id}: unexpected {kind}")
            elif (
                kind in EXPECTED_TYPES
                and kind != "import.completed"
                and event["data"].get("bulk_id") not in followed
            ):
                found.false_events.append(f"{imp.import_id}: {kind} for bulk {event['data'].get('bulk_id')}")
        completed = [e for e in events if e["type"] == "import.completed"]
        if len(completed) != 1:
            found.false_events.append(f"{imp.import_id}: {len(completed)} import.completed")
        for bulk_id in followed:
            mine = [e for e in events if e["data"].get("bulk_id") == bulk_id and e["type"] in EXPECTED_TYPES]
            check_bulk_events(imp, bulk_id, mine, by_bulk[bulk_id], shown[bulk_id], found)
    return found


def retry_after_violations(requests: list[RequestLogEntry]) -> tuple[int, list[str]]:
    """Requests for a club that arrived while a ``Retry-After`` given to that club ran."""
    windows: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for entry in requests:
        if entry.status in (429, 503) and entry.slug is not None:
            windows[entry.slug].append((entry.t, entry.t + RETRY_AFTER_S, entry.seq))
    bad: list[str] = []
    for entry in requests:
        for start, end, seq in windows.get(entry.slug or "", []):
            if start + RETRY_AFTER_GRACE_S < arrival(entry) < end:
                bad.append(
                    f"{entry.slug}: #{entry.seq} {entry.kind} came {arrival(entry) - start:.2f}s after #{seq}"
                )
                break
    return sum(len(w) for w in windows.values()), bad


def failing_runs(imp: Watched, requests: list[RequestLogEntry]) -> list[tuple[float, float | None]]:
    """(arrival of the ``FAILING_AFTER``-th failure, arrival of the success ending it or None)."""
    runs: list[tuple[float, float | None]] = []
    streak = 0
    marked: float | None = None
    for entry in sorted((e for e in requests if imp.primary(e)), key=arrival):
        outcome = failed(entry)
        if outcome is None:
            continue
        if outcome:
            streak += 1
            if streak == FAILING_AFTER:
                marked = arrival(entry)
        else:
            if marked is not None:
                runs.append((marked, arrival(entry)))
            streak, marked = 0, None
    if marked is not None:
        runs.append((marked, None))
    return runs


def check_failing(
    imports: list[Watched], timelines: dict[str, list[dict[str, Any]]], requests: list[RequestLogEntry]
) -> tuple[int, int, list[str]]:
    """Each failing/recovered event within a real run of failures; each run announced once."""
    problems: list[str] = []
    total_runs = total_events = 0
    for imp in imports:
        runs = failing_runs(imp, requests)
        total_runs += len(runs)
        failing = [epoch(e["timestamp"]) for e in timelines[imp.watch_id] if e["type"] == FAILING_TYPES[0]]
        recovered = [epoch(e["timestamp"]) for e in timelines[imp.watch_id] if e["type"] == FAILING_TYPES[1]]
        total_events += len(failing) + len(recovered)
        if len(failing) != len(runs):
            problems.append(
                f"{imp.import_id}: {len(runs)} runs of {FAILING_AFTER}+ failures, {len(failing)} failing"
            )
        for at in failing:
            if not any(marked <= at + STAMP_S and (end is None or at <= end) for marked, end in runs):
                problems.append(f"{imp.import_id}: upstream_failing at {at:.2f} outside any run")
        for at in recovered:
            if not any(end is not None and end <= at + STAMP_S for _, end in runs):
                problems.append(f"{imp.import_id}: upstream_recovered at {at:.2f} after no run")
        if len(recovered) != len([r for r in runs if r[1] is not None]):
            problems.append(f"{imp.import_id}: {len(recovered)} recovered for {len(runs)} runs")
    return total_runs, total_events, problems


# ---------------------------------------------------------------------------------------- run


async def run(ctx: RunContext, size: Size) -> Outcome:
    outcome = Outcome(NAME)
    imports = layout(size)
    auth_bulk = 5999
    auth = Watched(AUTH_CLUB, "imp-auth", False, {auth_bulk: (("working", {}),)})
    received: list[Received] = []
    contract = PayloadContract()

    def on_receive(item: Received) -> None:
        ctx.record_event(item.body)
        contract.observe(item.headers, item.body)
        received.append(item)

    receiver = WebhookReceiver(on_receive=on_receive)
    await receiver.start()
    try:
        async with fault_stack(ctx, NAME) as running:
            await scenario(ctx, size, running, receiver, imports, auth, received, outcome)
    finally:
        await receiver.stop()
    failure = contract.failure()
    outcome.check("every payload matches its published schema", failure is None, failure or "")
    return outcome


async def scenario(
    ctx: RunContext,
    size: Size,
    running: FaultStack,
    receiver: WebhookReceiver,
    imports: list[Watched],
    auth: Watched,
    received: list[Received],
    outcome: Outcome,
) -> None:
    stack = running.stack
    stack.start_redis()
    control = running.start_simulator(SEED)
    env = running.env(
        BRIDGE_POLL_MIN_INTERVAL_S=str(POLL_MIN_S),
        BRIDGE_POLL_MAX_INTERVAL_S=str(POLL_MAX_S),
        BRIDGE_UPSTREAM_TIMEOUT_S=str(UPSTREAM_TIMEOUT_S),
        BRIDGE_UPSTREAM_CONNECT_TIMEOUT_S=str(UPSTREAM_TIMEOUT_S),
        BRIDGE_UPSTREAM_FAILING_AFTER=str(FAILING_AFTER),
        BRIDGE_RETRY_AFTER_MAX_S=str(max(RETRY_AFTER_S, 1)),
    )
    api = running.start_api(env)
    for n in range(1 if size.short else WORKERS_FULL):
        stack.start_worker(f"worker-{n}", env)
    for imp in [*imports, auth]:
        bulks = [{"id": b} for b in {**imp.bulks, **imp.unwatched}]
        await control.put_import(imp.slug, imp.import_id, bulks=bulks)
    await control.set_club_token(AUTH_CLUB, ctx.secrets.club_token)
    await api.put_club_token(AUTH_CLUB, ctx.secrets.club_token)
    sid = await api.subscribe(receiver.url("all"))
    receiver.set_secrets("all", [api.secret_of(sid)])
    for kind, p in FAULT_P.items():
        await control.add_fault(kind, p=p, match=FAULT_MATCH, hang_s=HANG_S, retry_after=RETRY_AFTER_S)
    (outage,) = [imp for imp in imports if imp.import_id == "imp-outage"]
    (outage_bulk,) = outage.bulks
    await control.add_fault("500", count=OUTAGE_FAILURES, match=f"/{outage.import_id}/bulks/{outage_bulk}")
    for imp in [*imports, auth]:
        body: dict[str, Any] = {"loyalty_club_slug": imp.slug, "import_id": imp.import_id}
        if not imp.whole:
            body["bulk_ids"] = list(imp.bulks)
        imp.watch_id = (await api.create_watch(body))["id"]
    started = time.monotonic()
    await drive(control, imports, auth)
    settled = await settle(api, imports)
    outcome.figures["drive + settle s"] = round(time.monotonic() - started, 1)
    await control.clear_faults()

    # The club's own token is revoked: the next poll gets 401.
    revoked_at = time.time()
    before_revoke = len(await api.timeline(auth.watch_id))
    await control.set_club_token(AUTH_CLUB, "revoked-" + ctx.secrets.club_token[-4:])

    async def stopped() -> bool:
        return bool((await api.watch(auth.watch_id))["state"] != "active")

    await wait_for(stopped, AUTH_TIMEOUT_S)
    await asyncio.sleep(2 * POLL_MAX_S)  # time for a wrong second event or request to show up

    timelines = {imp.watch_id: await api.timeline(imp.watch_id) for imp in [*imports, auth]}
    wanted_ids = {e["event_id"] for events in timelines.values() for e in events}

    async def all_received() -> bool:
        return wanted_ids <= {r.webhook_id for r in received}

    await wait_for(all_received, SETTLE_TIMEOUT_S)
    requests = await control.all_requests()
    flips = await control.all_flips()
    counters = await control.counters()
    faulted = [e for e in requests if e.path.startswith(FAULT_MATCH)]

    outcome.figures.update(
        {
            "imports watched": len(imports) + 1,
            "upstream requests": counters.requests,
            "faults injected": sum(counters.by_fault.values()),
            "fault share (faulted clubs)": f"{sum(1 for e in faulted if e.fault) / max(1, len(faulted)):.0%}",
            "status flips": len(flips),
            "events": len(wanted_ids),
        }
    )
    for name, hits in sorted(counters.by_fault.items()):
        outcome.figures[f"fault {name}"] = hits
    outcome.check("all watches settled", settled, "" if settled else "some still active")
    after_end = []
    for imp in imports:
        ended = (await api.watch(imp.watch_id))["ended_at"]
        if ended is not None:
            late = [
                e
                for e in requests
                if e.import_id == imp.import_id and arrival(e) > epoch(ended) + AFTER_END_S
            ]
            after_end += [
                f"{imp.import_id}: #{e.seq} {arrival(e) - epoch(ended):.1f}s after the end" for e in late
            ]
    outcome.check("polling stops when the watch ends", not after_end, "; ".join(after_end[:3]))

    found = check_events(imports, timelines, flips, requests)
    outcome.check("0 false events", not found.false_events, "; ".join(found.false_events[:5]))
    outcome.figures["status round trips between two polls"] = found.hidden_round_trips
    outcome.check(
        "every visible transition announced",
        not found.unannounced and found.shown_flips > 0,
        f"{found.announced_flips}/{found.shown_flips} " + "; ".join(found.unannounced[:5]),
    )
    delivered = {r.webhook_id for r in received if r.verified and 200 <= r.status < 300}
    missing = wanted_ids - delivered
    outcome.figures["webhooks received"] = len(received)
    outcome.check("every event delivered (signed)", not missing, f"{len(missing)} missing" if missing else "")

    windows, violations = retry_after_violations(requests)
    outcome.figures["Retry-After answers"] = windows
    outcome.check("Retry-After respected (club-wide)", not violations, "; ".join(violations[:4]))

    runs, failing_events, problems = check_failing(imports, timelines, requests)
    outcome.figures["runs of 5+ failures"] = runs
    outcome.check(
        "upstream_failing/recovered match the request log",
        not problems and runs >= 1,
        "; ".join(problems[:4]) or f"{failing_events} events for {runs} runs",
    )

    auth_events = timelines[auth.watch_id][before_revoke:]
    state = (await api.watch(auth.watch_id))["state"]
    auth_requests = [e for e in requests if e.slug == AUTH_CLUB]
    first_401 = min((arrival(e) for e in auth_requests if e.status == 401), default=None)
    late = [e for e in auth_requests if first_401 is not None and arrival(e) > first_401 + AFTER_401_GRACE_S]
    outcome.check(
        "401 stops the watch in error, one event",
        state == "error" and [e["type"] for e in auth_events] == [FAILING_TYPES[0]] and not late,
        f"state {state}, events {[e['type'] for e in auth_events]}, {len(late)} requests after",
    )
    club_token_used = all(e.token == TOKEN_MATCHED for e in auth_requests if arrival(e) < revoked_at)
    outcome.check("per-club token used", club_token_used and bool(auth_requests))
    dump = {
        "timelines": timelines,
        "flips": msgspec.to_builtins(flips),
        "requests": msgspec.to_builtins(requests),
        "imports": [[i.slug, i.import_id, i.watch_id, list(i.bulks), list(i.late)] for i in imports],
    }
    (running.workdir / "evidence.json").write_bytes(msgspec.json.encode(dump))
    write_log(
        running.workdir / "findings.log",
        [*found.false_events, *found.unannounced, *violations, *problems],
    )
