"""The Redis store: watches, trackers, snapshots, timelines, events and the outbox.

Every multi-key change is one Lua script (:mod:`bridge.store.scripts`), so a poll's snapshot
update, its events, their timeline entries and their outbox entries land together or not at
all, guarded by a compare-and-set on the tracker's version.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Collection, Iterable, Sequence
from typing import Any, Final, TypeVar, get_args

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from bridge.core.codec import encode_event
from bridge.core.model import Event, WatchSnapshot, WatchSpec, WatchState
from bridge.core.schedule import PollState
from bridge.store import keys, scripts
from bridge.store.changes import Change, club_of_tracker, encode_change, publish
from bridge.store.turn import turn_pipeline

DEFAULT_LEASE_S: Final = 60.0
"""How long a claimed import stays with its worker; after that it is due again (the worker died).
Longer than one poll can take: two requests in sequence, each bounded by the upstream deadline."""
ORPHAN_SCAN_BATCH: Final = 500
ORPHAN_CHECK_EVERY_S: Final = 300.0
"""How often (at most, over all workers) the sweeper looks for imports missing from the schedule."""
TRIM_EVERY_S: Final = 600.0
"""How often (at most, over all workers) the sweeper trims the watch indexes of ended watches
whose retention ran out."""
TRIM_BATCH: Final = 500
"""Index entries checked per step while trimming."""
LIST_SCAN_BATCH: Final = 100
"""Index entries read per round trip while listing watches."""
EVENT_TTL_EXTRA_S: Final = 60 * 86_400.0
"""Events outlive the longest watch (expires_after <= 30 days) plus retention."""
ATTACHMENT_TTL_S: Final = 6 * 3600.0
"""What a destination gets beside an event outlives that delivery's retries with room to spare,
and no more: Slack's attachment is an unmasked errors summary, personal data. The notifier deletes
it once sent; MPC itself drops ``members_errors`` after 24 h."""

T = TypeVar("T")


class ClaimedDelivery(msgspec.Struct, frozen=True):
    """A delivery a worker claimed from the outbox, with the state read in the same step."""

    event_id: str
    destination: str
    delivered: bool = False
    """The destination has the event already (an earlier run was recorded)."""
    body: bytes | None = None
    """The stored event (``None`` once it expired)."""
    tries: int = 0
    """Earlier runs that ended in "retry later"."""


class OutboxClaim(msgspec.Struct, frozen=True):
    claimed: list[ClaimedDelivery]
    next_due: float | None
    """When the earliest entry left falls due (a retry, a lease), if the claim looked: ``None``
    when the outbox is empty or when the claim took as many as it could (look again at once)."""
    looked: bool


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What a webhook delivery writes beside its delivered mark, in the same step: its log, its
    place in the subscription's index, and the subscription's health."""

    log_key: str
    log: bytes
    retention_ms: int
    index_key: str
    index_member: str
    index_score_ms: int
    kept: int
    health_key: str
    last_success_ms: int | None = None
    """The subscription's last success to record (``None``: leave its health as it is)."""
    changes: tuple[Change, ...] = ()
    """Notes published once it is written (:mod:`bridge.store.changes`)."""
    mark_ttl_ms: int | None = None
    """How long the delivered mark lives when its event is short-lived (a test event); by default
    as long as an event does."""


class LimitReached(Exception):
    """A per-club limit is reached (arguments: the limit, and the club it was reached for):
    nothing was written."""

    @property
    def limit(self) -> int:
        return int(self.args[0])


_snapshot_encoder: Final = msgspec.msgpack.Encoder()
_snapshot_decoder: Final = msgspec.msgpack.Decoder(WatchSnapshot)
_poll_state_decoder: Final = msgspec.msgpack.Decoder(PollState)
_spec_decoder: Final = msgspec.msgpack.Decoder(WatchSpec)
_W_DOC: Final = keys.W_DOC.encode()
_W_STATE: Final = keys.W_STATE.encode()
_W_SNAPSHOT: Final = keys.W_SNAPSHOT.encode()
_W_UPDATED: Final = keys.W_UPDATED.encode()
_W_ENDED: Final = keys.W_ENDED.encode()
WATCH_STATES: Final[tuple[WatchState, ...]] = get_args(WatchState)


def now_ms(now: float) -> int:
    return int(now * 1000)


def due_ms(due: float) -> int:
    """A due time in whole milliseconds, rounded up: an import is never claimed before it is due,
    so the floor between two of its requests is not cut by the rounding."""
    return math.ceil(due * 1000)


def _trailing_defaults_dropped(values: tuple[Any, ...], defaults: tuple[Any, ...]) -> tuple[Any, ...]:
    """An array-like struct's fields without the defaults at its end (it decodes to the same)."""
    end = len(values)
    while end and values[end - 1] == defaults[end - 1]:
        end -= 1
    return values[:end]


_SNAPSHOT_DEFAULTS: Final = msgspec.structs.astuple(WatchSnapshot())
_POLL_STATE_DEFAULTS: Final = msgspec.structs.astuple(PollState())


def encode_snapshot(snapshot: WatchSnapshot) -> bytes:
    """Compact msgpack (an array, without the defaults at its end): one is kept per watch."""
    return _snapshot_encoder.encode(
        _trailing_defaults_dropped(msgspec.structs.astuple(snapshot), _SNAPSHOT_DEFAULTS)
    )


def encode_poll_state(state: PollState) -> bytes:
    """Like :func:`encode_snapshot`, and without ``last_polled``: the tracker keeps that apart (its
    ``lp``, in ms, which the scripts read) and the claim puts it back."""
    kept = msgspec.structs.astuple(msgspec.structs.replace(state, last_polled=PollState().last_polled))
    return _snapshot_encoder.encode(_trailing_defaults_dropped(kept, _POLL_STATE_DEFAULTS))


def encode_spec(spec: WatchSpec) -> bytes:
    """Compact msgpack (the Struct is ``array_like``): a spec is stored for every watch."""
    return _snapshot_encoder.encode(spec)


class ClaimedTracker(msgspec.Struct, kw_only=True):
    """One import a worker now owns until it commits (or its lease runs out)."""

    tid: str
    version: str
    poll_state: PollState
    watches: dict[str, WatchSpec]
    snapshots: dict[str, WatchSnapshot]
    first_token: tuple[int, float] | None = None
    """The token of the poll's first request, taken from its club's budget by the claim: (granted,
    0 or 1; seconds until the next token). ``None``: the poll takes its tokens itself."""


class ClaimBudget(msgspec.Struct, frozen=True, kw_only=True):
    """A claim that also takes the first request's token for the first ``takes`` imports it claims
    (one per import, from its club's budget: ``rate`` per second, up to ``burst``)."""

    rate: float
    burst: int
    takes: int


class Claim(msgspec.Struct, kw_only=True):
    trackers: list[ClaimedTracker]
    next_due: float | None
    """When the earliest import still scheduled is due (epoch s), if any."""


class NewEvent(msgspec.Struct, kw_only=True, frozen=True):
    watch_id: str
    event: Event
    destinations: tuple[str, ...]
    attachments: tuple[tuple[str, bytes], ...] = ()
    """(destination, payload): what a destination gets beside the event, stored with it at
    ``bridge:attachment:{eid}|{destination}`` for :data:`ATTACHMENT_TTL_S`; never in the event."""


class CommitPlan(msgspec.Struct, kw_only=True):
    """What one poll of one import writes."""

    tid: str
    version: str
    now: float
    due: float
    poll_state: PollState
    snapshots: dict[str, WatchSnapshot]
    events: list[NewEvent]
    ended: dict[str, WatchSnapshot]
    """Watches that reached a final state in this poll, with their final snapshot."""


class CommitResult(msgspec.Struct, kw_only=True, frozen=True):
    committed: bool
    inserted: tuple[str, ...] = ()
    """Ids of the events that were new (those already stored were somebody else's news)."""


class WatchRecord(msgspec.Struct, kw_only=True):
    spec: WatchSpec
    state: WatchState
    created_at: float
    updated_at: float
    ended_at: float | None
    snapshot: WatchSnapshot | None


async def resolved(value: Awaitable[T] | T) -> T:
    """redis-py types some asyncio commands as ``Awaitable[X] | X``: this awaits either."""
    if inspect.isawaitable(value):
        return await value
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms_to_s(value: Any) -> float:
    return float(_text(value)) / 1000.0


def _changes_of(plans: Sequence[CommitPlan], results: Sequence[CommitResult]) -> list[Change]:
    """A note per watch that got a new event or ended in a committed poll (a poll that changed
    nothing but the time it was seen stays quiet: most polls are such)."""
    changed: dict[str, str] = {}
    for plan, result in zip(plans, results, strict=True):
        if not result.committed:
            continue
        club = club_of_tracker(plan.tid)
        inserted = set(result.inserted)
        for new in plan.events:
            if new.event.id in inserted:
                changed[new.watch_id] = club
        for wid in plan.ended:
            changed[wid] = club
    return [Change(kind="watch", watch_id=wid, club=club) for wid, club in changed.items()]


async def index_size(redis: Any, indexes: Sequence[str]) -> int:
    """How many entries these watch indexes hold together (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.zcard(index)
        sizes: list[int] = await pipe.execute()
    return sum(sizes)


async def clubs_with_watches(redis: Any, *, indexed: bool = False) -> list[str]:
    """The clubs with watches, sorted. A club whose every watch is gone stays in the set until the
    sweeper's next trim; ``indexed``: only the clubs that still have a watch in an index."""
    clubs = sorted(_text(member) for member in await resolved(redis.smembers(keys.WATCH_CLUBS)))
    if not indexed or not clubs:
        return clubs
    async with redis.pipeline(transaction=False) as pipe:
        for club in clubs:
            pipe.exists(*(keys.watch_index(club, state) for state in WATCH_STATES))
        found: list[int] = await pipe.execute()
    return [club for club, count in zip(clubs, found, strict=True) if count]


async def active_watches(redis: Any) -> int:
    """How many watches are active, over every club."""
    clubs = await clubs_with_watches(redis)
    return await index_size(redis, [keys.watch_index(club, "active") for club in clubs])


class RedisStore:
    """All reads and writes of the bridge's state (the API and the workers share it)."""

    def __init__(
        self,
        redis: Redis,
        *,
        retention_s: float,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.redis = redis
        self.retention_ms = now_ms(retention_s)
        self.event_ttl_ms = now_ms(retention_s + EVENT_TTL_EXTRA_S)
        self.lease_ms = now_ms(lease_s)
        self._claim = scripts.register(redis, "claim")
        self._commit = scripts.register(redis, "commit")
        self._create = scripts.register(redis, "create_watch")
        self._stop = scripts.register(redis, "stop_watch")
        self._poll_soon = scripts.register(redis, "poll_soon")
        self._release = scripts.register(redis, "release")
        self._explicit = scripts.register(redis, "record_explicit")
        self._claim_outbox = scripts.register(redis, "outbox_claim")
        self._delivered = scripts.register(redis, "outbox_delivered")
        self._postpone = scripts.register(redis, "outbox_postpone")
        self._trim = scripts.register(redis, "trim_index")
        self._forget_club = scripts.register(redis, "forget_club")
        self._index_page = scripts.register(redis, "index_page")
        self._turn = turn_pipeline(redis)

    # ------------------------------------------------------------------ polling

    async def claim(self, now: float, limit: int, budget: ClaimBudget | None = None) -> Claim:
        """Lease up to ``limit`` due imports; with ``budget``, the first ``budget.takes`` of them
        come with their first request's token (the same round trip)."""
        args: list[Any] = [now_ms(now), self.lease_ms, limit]
        if budget is not None and budget.takes > 0:
            args += [repr(budget.rate), budget.burst, budget.takes]
        raw_claimed, first = await self._claim(keys=[keys.SCHEDULE, keys.INFLIGHT], args=args)
        trackers = [self._claimed(*entry) for entry in raw_claimed]
        return Claim(trackers=trackers, next_due=None if first is None else _ms_to_s(first))

    @staticmethod
    def _claimed(
        tid: bytes, fields: list[bytes], docs: list[bytes], granted: int | None = None, wait_ms: int = 0
    ) -> ClaimedTracker:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        watches = {
            _text(wid): _spec_decoder.decode(doc) for wid, doc in zip(docs[::2], docs[1::2], strict=True)
        }
        snapshots = {}
        prefix = keys.F_SNAPSHOT_PREFIX.encode()
        for field, value in values.items():
            if field.startswith(prefix):
                wid = field[len(prefix) :].decode()
                if wid in watches:
                    snapshots[wid] = _snapshot_decoder.decode(value)
        raw_state = values.get(keys.F_POLL_STATE.encode())
        poll_state = _poll_state_decoder.decode(raw_state) if raw_state else PollState()
        last_poll = values.get(keys.F_LAST_POLL.encode())
        if last_poll is not None:
            poll_state = msgspec.structs.replace(poll_state, last_polled=_ms_to_s(last_poll))
        return ClaimedTracker(
            tid=_text(tid),
            version=_text(values.get(keys.F_VERSION.encode(), b"0")),
            poll_state=poll_state,
            watches=watches,
            snapshots=snapshots,
            first_token=None if granted is None else (int(granted), int(wait_ms) / 1000.0),
        )

    def _commit_args(self, plan: CommitPlan) -> list[Any]:
        args: list[Any] = [
            plan.tid,
            plan.version,
            now_ms(plan.now),
            due_ms(plan.due),
            self.retention_ms,
            self.event_ttl_ms,
            now_ms(ATTACHMENT_TTL_S),
        ]
        fields: list[Any] = [
            keys.F_POLL_STATE,
            encode_poll_state(plan.poll_state),
            keys.F_LAST_POLL,
            now_ms(plan.poll_state.last_polled),
        ]
        for wid, snapshot in plan.snapshots.items():
            fields += [keys.snapshot_field(wid), encode_snapshot(snapshot)]
        args += [len(fields) // 2, *fields, len(plan.events)]
        for new in plan.events:
            args += [
                new.watch_id,
                new.event.id,
                encode_event(new.event),
                len(new.destinations),
                *new.destinations,
            ]
            args.append(len(new.attachments))
            for destination, payload in new.attachments:
                args += [destination, payload]
        args.append(len(plan.ended))
        club = club_of_tracker(plan.tid)
        for wid, snapshot in plan.ended.items():
            args += [
                wid,
                snapshot.state,
                encode_snapshot(snapshot),
                keys.watch_index(club, snapshot.state),
            ]
        return args

    async def commit_many(self, plans: Sequence[CommitPlan]) -> list[CommitResult]:
        """Commit several polls in one round trip; each is atomic on its own."""
        if not plans:
            return []
        replies = await self._commit_pipeline(plans)
        results = [
            CommitResult(
                committed=reply[0] == 1,
                inserted=tuple(_text(e) for e in (reply[1] if len(reply) > 1 else ())),
            )
            for reply in replies
        ]
        await publish(self.redis, _changes_of(plans, results))
        return results

    async def _commit_pipeline(self, plans: Sequence[CommitPlan]) -> list[Any]:
        if len(plans) == 1:
            # One poll (the usual case on a quiet worker): the script alone, which loads itself
            # into Redis when Redis does not have it (after a restart or a failover).
            return [await self._commit(keys=self._commit_keys(plans[0]), args=self._commit_args(plans[0]))]
        # Several: EVALSHA straight into one pipeline. redis-py's way (the script called with the
        # pipeline as its client) first asks SCRIPT EXISTS, a round trip more for every batch. A
        # NOSCRIPT answer means Redis ran nothing for that poll: the script is loaded, and those
        # polls are sent again.
        replies = await self._evalsha_commits(plans)
        missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await self.redis.script_load(self._commit.script)
            again = await self._evalsha_commits([plans[index] for index in missing])
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _evalsha_commits(self, plans: Sequence[CommitPlan]) -> list[Any]:
        """The commit script's answer for each plan, or the error Redis answered for it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for plan in plans:
                commit_keys = self._commit_keys(plan)
                pipe.evalsha(self._commit.sha, len(commit_keys), *commit_keys, *self._commit_args(plan))
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    @staticmethod
    def _commit_keys(plan: CommitPlan) -> list[str]:
        active = keys.watch_index(club_of_tracker(plan.tid), "active")
        return [keys.SCHEDULE, keys.INFLIGHT, keys.OUTBOX, active]

    async def release(self, tids: Iterable[str], due: float) -> int:
        """Hand claimed imports back, due at ``due`` (a worker stopping before it could poll them:
        now; a poll that could not run: later)."""
        tids = list(tids)
        if not tids:
            return 0
        return int(await self._release(keys=[keys.SCHEDULE, keys.INFLIGHT], args=[now_ms(due), *tids]))

    async def pause_club(self, slug: str, until: float) -> None:
        """No worker calls MPC for this club before ``until`` (MPC answered 429/503 with Retry-After)."""
        ttl_ms = max(1, now_ms(until - time.time()))
        await self.redis.set(keys.club_pause(slug), now_ms(until), px=ttl_ms)

    # ------------------------------------------------------------------ watches

    async def create_watch(
        self, spec: WatchSpec, fingerprint: str, min_interval_s: float, *, max_per_club: int = 0
    ) -> tuple[bool, str]:
        """Store a new watch and schedule its import; ``(False, existing id)`` when an identical
        active watch exists. Raises :class:`LimitReached` when the club already has
        ``max_per_club`` active watches (0: no limit); counted in the same atomic step."""
        created, wid = await self._create(
            keys=[
                keys.SCHEDULE,
                keys.INFLIGHT,
                keys.watch_index(spec.loyalty_club_slug, "active"),
                keys.WATCH_CLUBS,
            ],
            args=[
                spec.id,
                spec.tracker_id,
                fingerprint,
                encode_spec(spec),
                now_ms(spec.created_at),
                now_ms(min_interval_s),
                spec.loyalty_club_slug,
                max_per_club,
            ],
        )
        if created == -1:
            raise LimitReached(max_per_club)
        if created == 1:
            await publish(self.redis, [Change(kind="created", watch_id=spec.id, club=spec.loyalty_club_slug)])
        return created == 1, _text(wid)

    async def stop_watch(self, spec: WatchSpec, now: float) -> bool:
        """Stop an active watch; False when it had already ended."""
        slug = spec.loyalty_club_slug
        stopped, _ = await self._stop(
            keys=[
                keys.SCHEDULE,
                keys.INFLIGHT,
                keys.watch_index(slug, "active"),
                keys.watch_index(slug, "stopped"),
            ],
            args=[spec.id, now_ms(now), self.retention_ms, spec.tracker_id],
        )
        if stopped == 1:
            await publish(self.redis, [Change(kind="watch", watch_id=spec.id, club=spec.loyalty_club_slug)])
        return bool(stopped == 1)

    async def poll_soon(self, spec: WatchSpec, now: float, min_interval_s: float) -> tuple[str, float]:
        """Bring the watch's import forward in the schedule, to the earliest time the minimum
        interval and the club's pause allow: ``(outcome, when)``, see ``lua/poll_soon.lua``."""
        outcome, at = await self._poll_soon(
            keys=[keys.SCHEDULE, keys.INFLIGHT],
            args=[spec.tracker_id, now_ms(now), now_ms(min_interval_s), spec.loyalty_club_slug],
        )
        return _text(outcome), int(at) / 1000.0

    async def get_watch(self, wid: str) -> WatchRecord | None:
        fields = await resolved(self.redis.hgetall(keys.watch(wid)))
        doc = fields.get(_W_DOC) if fields else None
        if doc is None:
            return None
        spec = _spec_decoder.decode(doc)
        state: WatchState = msgspec.convert(_text(fields[_W_STATE]), WatchState)
        raw_snapshot = fields.get(_W_SNAPSHOT)
        if raw_snapshot is None and state == "active":
            raw_snapshot = await resolved(
                self.redis.hget(keys.tracker(spec.tracker_id), keys.snapshot_field(wid))
            )
        # Created: the millisecond the index holds (the spec's own time, to the millisecond);
        # updated: the end, or the creation (a field of its own only when it is neither).
        created_at = now_ms(spec.created_at) / 1000.0
        ended_at = _ms_to_s(fields[_W_ENDED]) if _W_ENDED in fields else None
        updated_at = _ms_to_s(fields[_W_UPDATED]) if _W_UPDATED in fields else ended_at or created_at
        return WatchRecord(
            spec=spec,
            state=state,
            created_at=created_at,
            updated_at=updated_at,
            ended_at=ended_at,
            snapshot=_snapshot_decoder.decode(raw_snapshot) if raw_snapshot else None,
        )

    async def list_watches(
        self,
        *,
        slug: str | None,
        state: str | None,
        offset: int,
        limit: int,
        clubs: Collection[str] | None = None,
    ) -> tuple[list[WatchRecord], int | None]:
        """Newest first, filtered (``clubs``: only these clubs' watches); the offset to continue
        from, or ``None`` at the end.

        The watches are in one index per club and state; a list reads the indexes its filters
        leave merged (``lua/index_page.lua``). Ended watches leave the indexes lazily: an id whose
        watch expired is skipped and dropped.
        """
        indexes = await self._indexes(slug, state, clubs)
        if not indexes:
            return [], None
        found: list[WatchRecord] = []
        position = offset
        while len(found) < limit:
            ids, origins = await self._index_page(keys=indexes, args=[position, LIST_SCAN_BATCH])
            if not ids:
                return found, None
            for raw, origin in zip(ids, origins, strict=True):
                position += 1
                wid = _text(raw)
                record = await self.get_watch(wid)
                if record is None:
                    await self.redis.zrem(indexes[int(origin) - 1], wid)
                    position -= 1  # the merged indexes shrank under us
                    continue
                if (slug and record.spec.loyalty_club_slug != slug) or (state and record.state != state):
                    continue
                if clubs is not None and record.spec.loyalty_club_slug not in clubs:
                    continue
                found.append(record)
                if len(found) == limit:
                    break
        more = await index_size(self.redis, indexes) > position
        return found, position if more else None

    async def _indexes(self, slug: str | None, state: str | None, clubs: Collection[str] | None) -> list[str]:
        """The watch indexes a list with these filters reads."""
        if slug:
            slugs = [slug]
        elif clubs is not None:
            slugs = sorted(clubs)
        else:
            slugs = await self.clubs_with_watches()
        states: Sequence[str] = [state] if state else WATCH_STATES
        return [keys.watch_index(club, each) for club in slugs for each in states]

    async def clubs_with_watches(self, *, indexed: bool = False) -> list[str]:
        return await clubs_with_watches(self.redis, indexed=indexed)

    async def timeline(self, wid: str, offset: int, limit: int) -> list[bytes]:
        """Event bodies of a watch's timeline, oldest first, from ``offset``."""
        ids = await resolved(self.redis.lrange(keys.timeline(wid), offset, offset + limit - 1))
        if not ids:
            return []
        bodies = await self.redis.mget([keys.event(_text(eid)) for eid in ids])
        return [body for body in bodies if body is not None]

    # ------------------------------------------------------------------ events and outbox

    async def get_event(self, eid: str) -> bytes | None:
        body: bytes | None = await self.redis.get(keys.event(eid))
        return body

    async def get_events(self, eids: list[str]) -> dict[str, bytes]:
        """The stored bodies of these events, in one round trip (expired ones are left out)."""
        if not eids:
            return {}
        bodies = await self.redis.mget([keys.event(eid) for eid in eids])
        return {eid: body for eid, body in zip(eids, bodies, strict=True) if body is not None}

    async def outbox_older_than(self, before: float, limit: int) -> list[tuple[str, str]]:
        """Outbox entries due before ``before`` (waiting, or leased by a worker that died)."""
        entries = await self.redis.zrangebyscore(keys.OUTBOX, "-inf", now_ms(before), start=0, num=limit)
        return [keys.split_outbox_entry(_text(entry)) for entry in entries]

    async def outbox_size(self) -> int:
        return int(await self.redis.zcard(keys.OUTBOX))

    async def claim_deliveries(self, now: float, limit: int, lease_s: float) -> OutboxClaim:
        """Up to ``limit`` due deliveries, each leased until ``now + lease_s`` (a worker that dies
        holding one leaves it due again then), with what running them needs: one round trip."""
        raw: list[Any] = await self._claim_outbox(
            keys=[keys.OUTBOX], args=[now_ms(now), limit, now_ms(now + lease_s)]
        )
        claimed = [
            ClaimedDelivery(
                *keys.split_outbox_entry(_text(raw[i])),
                delivered=raw[i + 1] != b"",
                body=raw[i + 2] or None,
                tries=int(raw[i + 3]),
            )
            for i in range(0, len(raw) - len(raw) % 4, 4)
        ]
        next_due: float | None = None
        if len(raw) % 4:
            last = raw[-1]
            next_due = None if last == b"" else int(last) / 1000.0
        return OutboxClaim(claimed=claimed, next_due=next_due, looked=len(raw) % 4 == 1)

    async def delivery_state(self, eid: str, destination: str) -> ClaimedDelivery:
        """What a claim would read for this delivery, without claiming it (tools and tests)."""
        mark, body, tries = await self.redis.mget(
            [keys.delivered(eid, destination), keys.event(eid), keys.outbox_tries(eid, destination)]
        )
        return ClaimedDelivery(eid, destination, mark is not None, body, int(tries or 0))

    async def settle_delivered(
        self, claimed: ClaimedDelivery, *, record: DeliveryRecord | None = None
    ) -> None:
        """Record that a destination has the event, in one step: its delivered mark (living as
        long as the event), its outbox entry gone, and ``record`` (a webhook's log and health)."""
        eid, destination = claimed.event_id, claimed.destination
        mark_ttl = self.event_ttl_ms
        if record is not None and record.mark_ttl_ms is not None:
            mark_ttl = min(mark_ttl, record.mark_ttl_ms)
        script_keys = [keys.delivered(eid, destination), keys.OUTBOX, keys.outbox_tries(eid, destination)]
        args: list[Any] = [keys.outbox_entry(eid, destination), mark_ttl, "1" if claimed.tries else "0"]
        if record is not None:
            script_keys += [record.log_key, record.index_key, record.health_key]
            args += [
                record.log,
                record.retention_ms,
                record.index_score_ms,
                record.index_member,
                record.kept,
                "" if record.last_success_ms is None else record.last_success_ms,
            ]
        changes = record.changes if record is not None else ()
        # The script and its notes in one round trip, shared with the deliveries settled in the
        # same turn of the loop.
        commands: list[tuple[Any, ...]] = [
            ("EVALSHA", self._delivered.sha, len(script_keys), *script_keys, *args)
        ]
        commands += [("PUBLISH", keys.CHANGES, encode_change(change)) for change in changes]
        replies = await self._turn.execute(commands)
        if isinstance(replies[0], NoScriptError):  # Redis restarted or failed over: load it again
            await self._delivered(keys=script_keys, args=args)
            await publish(self.redis, changes)
        elif isinstance(replies[0], Exception):
            raise replies[0]

    async def postpone_in_outbox(
        self, eid: str, destination: str, until: float, *, counted: bool = True
    ) -> None:
        """A delivery runs again at ``until`` (``XX``: an entry settled meanwhile is not brought
        back); ``counted``: this run counts as a try (its notifier backs off by them)."""
        await self._postpone(
            keys=[keys.OUTBOX, keys.outbox_tries(eid, destination)],
            args=[
                keys.outbox_entry(eid, destination),
                now_ms(until),
                "1" if counted else "0",
                self.event_ttl_ms,
            ],
        )

    async def hand_back(self, entries: Iterable[tuple[str, str]], due: float) -> None:
        """Deliveries this worker holds but will not run (it stops): due again at ``due``."""
        scored = {keys.outbox_entry(eid, destination): now_ms(due) for eid, destination in entries}
        if scored:
            await self.redis.zadd(keys.OUTBOX, scored, xx=True)

    async def was_delivered(self, eid: str, destination: str) -> bool:
        return bool(await self.redis.exists(keys.delivered(eid, destination)))

    async def attachment(self, eid: str, destination: str) -> bytes | None:
        """What ``destination`` gets beside the event (written with it), if anything."""
        value: bytes | None = await self.redis.get(keys.attachment(eid, destination))
        return value

    async def drop_attachment(self, eid: str, destination: str) -> None:
        """The destination has what it needed: its attachment goes (it may be personal data)."""
        await self.redis.delete(keys.attachment(eid, destination))

    async def record_explicit(
        self,
        *,
        event_id: str,
        new_event: Event | None,
        destination: str,
        log_key: str,
        log: bytes,
        index_key: str,
        index_member: str,
        created_at: float,
        kept: int,
        ttl_s: float | None = None,
    ) -> bool:
        """A delivery someone asked for, in one atomic step: ``new_event`` (stored when given),
        the delivery's ``log`` and its ``index_member`` in ``index_key`` (the newest ``kept``),
        and the outbox entry of ``(event_id, destination)``. False when the event is not stored
        (it expired): then nothing was written. ``ttl_s``: how long the new event and the log are
        kept, when shorter than usual (a test event)."""
        written = await self._explicit(
            keys=[keys.event(event_id), log_key, index_key, keys.OUTBOX],
            args=[
                encode_event(new_event) if new_event is not None else b"",
                self.event_ttl_ms if ttl_s is None else now_ms(ttl_s),
                log,
                self.retention_ms if ttl_s is None else now_ms(ttl_s),
                now_ms(created_at),
                index_member,
                kept,
                keys.outbox_entry(event_id, destination),
                now_ms(time.time()),
            ],
        )
        return bool(written)

    async def drop_from_outbox(self, eid: str, destination: str) -> None:
        """Give up on a destination (it refused for good); the attempt log says why."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.OUTBOX, keys.outbox_entry(eid, destination))
            pipe.delete(keys.outbox_tries(eid, destination))
            await pipe.execute()

    # ------------------------------------------------------------------ integrity

    async def orphan_check_due(self) -> bool:
        """Whether this sweeper should look for lost imports (at most every
        :data:`ORPHAN_CHECK_EVERY_S`, whatever the number of workers)."""
        return bool(
            await self.redis.set(keys.ORPHANS_CHECKED, b"1", nx=True, px=now_ms(ORPHAN_CHECK_EVERY_S))
        )

    async def trim_due(self) -> bool:
        """Whether this sweeper should trim the indexes (at most every :data:`TRIM_EVERY_S`)."""
        return bool(await self.redis.set(keys.INDEXES_TRIMMED, b"1", nx=True, px=now_ms(TRIM_EVERY_S)))

    async def trim_indexes(self, batch: int = TRIM_BATCH) -> int:
        """Drop the entries of watches whose retention ran out from every watch index, and the
        clubs left without any index from the set of clubs. Listing does it too, lazily, but only
        for what it reads; this keeps indexes nobody lists from growing."""
        dropped = 0
        for club in await self.clubs_with_watches():
            indexes = [keys.watch_index(club, state) for state in WATCH_STATES]
            for index in indexes:
                cursor = 0
                while True:
                    cursor, entries = await self.redis.zscan(index, cursor=cursor, count=batch)
                    if entries:
                        dropped += await self._trim(keys=[index], args=[wid for wid, _ in entries])
                    if cursor == 0:
                        break
            await self._forget_club(keys=[keys.WATCH_CLUBS, *indexes], args=[club])
        return int(dropped)

    async def reschedule_orphans(self, now: float, batch: int = ORPHAN_SCAN_BATCH) -> int:
        """Imports with an active watch that are neither scheduled nor leased (lost in a Redis
        restart without a full AOF, say) are made due again. Reads every active watch: run it
        rarely (:data:`ORPHAN_CHECK_EVERY_S`)."""
        fixed = 0
        for club in await self.clubs_with_watches():
            fixed += await self._reschedule_orphans_of(keys.watch_index(club, "active"), now, batch)
        return fixed

    async def _reschedule_orphans_of(self, index: str, now: float, batch: int) -> int:
        fixed = 0
        cursor = 0
        while True:
            cursor, entries = await self.redis.zscan(index, cursor=cursor, count=batch)
            if entries:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for wid, _ in entries:
                        pipe.hget(keys.watch(_text(wid)), keys.W_DOC)
                    raw_docs = await pipe.execute()
                tids = sorted({_spec_decoder.decode(doc).tracker_id for doc in raw_docs if doc})
                async with self.redis.pipeline(transaction=False) as pipe:
                    for tid in tids:
                        pipe.zscore(keys.SCHEDULE, tid)
                        pipe.zscore(keys.INFLIGHT, tid)
                    scores = await pipe.execute()
                lost = [
                    tid
                    for tid, s, f in zip(tids, scores[::2], scores[1::2], strict=True)
                    if s is None and f is None
                ]
                if lost:
                    await self.redis.zadd(keys.SCHEDULE, {tid: now_ms(now) for tid in lost}, nx=True)
                    fixed += len(lost)
            if cursor == 0:
                return fixed
