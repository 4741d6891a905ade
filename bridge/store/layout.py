"""The layout version of the bridge's data in Redis, and the steps that upgrade it in place.

Every change to the layout (a key, a hash field, what a script stores) raises
:data:`LAYOUT_VERSION` and adds the step that upgrades data written by the version before.
``bridge migrate`` runs the steps; the API and the workers run them at start too unless
``BRIDGE_MIGRATE_ON_START=false`` (a lock makes one process do it while the others wait). A
process never runs against a layout newer than its own: it stops with one line instead.

Data written before the layout had a version counts as version :data:`UNVERSIONED`; an empty
database simply gets the current version.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from bridge.core.model import WatchSnapshot, WatchSpec
from bridge.store import keys, scripts
from bridge.store.redis_store import encode_snapshot

LAYOUT_VERSION: Final = 6
UNVERSIONED: Final = 1
"""The layout of every release before the version was stored."""
LOCK_TTL_S: Final = 300.0
"""A migration holds its lock this long at most (a process killed mid-migration frees it then)."""
LOCK_WAIT_S: Final = 0.2
"""How often a process waiting for another one's migration looks again."""
SCAN_COUNT: Final = 1000
L4_STATES: Final = ("active", "completed", "stopped", "expired", "error")
"""The watch states of layout 4, each with its global index (``bridge:watches:state:{state}``)."""

Step = Callable[[Any], Awaitable[int]]
"""Upgrades the data from the version before to its own; answers how many keys it changed.
A step may run again after a crash (it must be safe to repeat)."""


class LayoutError(Exception):
    """The data cannot be used by this bridge as it is; the message says what to do."""


async def _slack_errors_become_attachments(redis: Any) -> int:
    """2: the unmasked errors summary Slack may show, written beside an event, moves from
    ``bridge:slack:errors:{eid}`` to the general ``bridge:attachment:{eid}|slack``."""
    legacy_prefix = keys.PREFIX + "slack:errors:"
    moved = 0
    async for key in redis.scan_iter(match=legacy_prefix + "*", count=SCAN_COUNT):
        name = key.decode() if isinstance(key, bytes) else str(key)
        # RENAME keeps the key's TTL; a key that expired meanwhile is simply gone.
        renamed = await scripts.register(redis, "rename_if_exists")(
            keys=[name, keys.attachment(name.removeprefix(legacy_prefix), "slack")]
        )
        moved += int(renamed)
    return moved


async def _keys_limited_to_clubs(redis: Any) -> int:
    """3: managed API keys (``bridge:api-keys*``) and club-limited subscriptions and watches.
    Nothing stored before needs rewriting: a subscription or watch without ``clubs`` or
    ``created_by`` is an admin key's, every club's, as before. The version moves so that an older
    bridge stops instead of running on this data: it would ignore a subscription's clubs and send
    it every club's events, and accept no managed key."""
    del redis
    return 0


async def _slack_channel_lists_start_empty(redis: Any) -> int:
    """4: clubs get lists of the Slack channels allowed to watch them
    (``bridge:slack:channels:{slug}``) and watches a progress mute (``bridge:slack:mute:{wid}``).
    Both are new keys whose absence means what older data meant (no club can be watched from
    Slack, nothing is muted), so nothing is rewritten."""
    del redis
    return 0


async def _one_index_entry_per_watch(redis: Any) -> int:
    """5: a watch costs less memory. Its three index entries (all watches, its club's, its
    state's) become one, in its club's index of its state (``bridge:watch-index:{slug}:{state}``,
    with ``bridge:watch-clubs``); the global fingerprint map goes, each active watch's fingerprint
    now being the value of its field on its import's tracker; the watch hash's fields get
    one-letter names and lose the creation time (its spec's), the fingerprint and an update time
    that is only the creation or the end; snapshots are stored as arrays, not maps. Each watch is
    upgraded in one step (a watch already upgraded is left alone), then the snapshots on the
    trackers; the old indexes go last."""
    upgrade = scripts.register(redis, "upgrade_watch_5")
    decoder = msgspec.msgpack.Decoder(WatchSpec)
    upgraded = 0
    batch: list[str] = []

    async def flush() -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.hmget(key, [keys.L4_W_DOC, keys.L4_W_STATE, keys.L4_W_CREATED, keys.L4_W_SNAPSHOT])
            rows = await pipe.execute()
        done = 0
        for key, (doc, state, created, snapshot) in zip(batch, rows, strict=True):
            if doc is None:
                continue  # upgraded already
            try:
                spec: WatchSpec | None = decoder.decode(doc)
            except msgspec.DecodeError:
                spec = None  # no bridge could read it: it stays out of the indexes
            if spec is None or state is None:
                index = tracker = slug = ""
                score = 0
            else:
                slug = spec.loyalty_club_slug
                index = keys.watch_index(slug, _text(state))
                tracker = keys.tracker(spec.tracker_id)
                score = int(created) if created is not None else int(spec.created_at * 1000)
            wid = key.removeprefix(keys.WATCH_PREFIX)
            final = _snapshot_as_array(snapshot) or snapshot or b""
            done += int(
                await upgrade(keys=[key, index, tracker, keys.WATCH_CLUBS], args=[wid, slug, score, final])
            )
        batch.clear()
        return done

    async for raw in redis.scan_iter(match=keys.WATCH_PREFIX + "*", count=SCAN_COUNT):
        batch.append(_text(raw))
        if len(batch) >= SCAN_COUNT:
            upgraded += await flush()
    if batch:
        upgraded += await flush()
    await _tracker_snapshots_as_arrays(redis)
    legacy = [
        keys.L4_WATCHES,
        keys.L4_WATCH_FINGERPRINTS,
        *(keys.L4_WATCHES_BY_STATE_PREFIX + state for state in L4_STATES),
    ]
    async for raw in redis.scan_iter(match=keys.L4_WATCHES_BY_CLUB_PREFIX + "*", count=SCAN_COUNT):
        legacy.append(_text(raw))
    await redis.unlink(*legacy)
    return upgraded


async def _tracker_snapshots_as_arrays(redis: Any) -> None:
    """Layout 4 stored a snapshot as a map, layout 5 as an array: the active watches' snapshots on
    the trackers are re-encoded, each only if it is still the one read."""
    replace = scripts.register(redis, "reseal_field")
    prefix = keys.F_SNAPSHOT_PREFIX.encode()
    async for raw in redis.scan_iter(match=keys.TRACKER_PREFIX + "*", count=SCAN_COUNT):
        tracker = _text(raw)
        fields = await redis.hgetall(tracker)
        for field, value in fields.items():
            if field.startswith(prefix) and (array := _snapshot_as_array(value)) is not None:
                await replace(keys=[tracker], args=[field, value, array])


def _snapshot_as_array(value: bytes | None) -> bytes | None:
    """A layout-4 snapshot (a map) encoded as layout 5 stores it; ``None`` when it is not one."""
    if not value:
        return None
    try:
        stored = msgspec.msgpack.decode(value)
    except msgspec.DecodeError:
        return None
    if not isinstance(stored, dict):
        return None  # an array already
    defaults = WatchSnapshot()
    ordered = [stored.get(name, getattr(defaults, name)) for name in WatchSnapshot.__struct_fields__]
    try:
        return encode_snapshot(msgspec.convert(ordered, WatchSnapshot))
    except msgspec.ValidationError:
        return None


async def _deliveries_leave_arq(redis: Any) -> int:
    """6: the outbox is the delivery queue (an entry's score is when it is next due, a worker's claim
    leases it). The arq delivery jobs that duplicated it go: their queue entries and their job,
    in-progress, retry and result keys. Every pending delivery is still in the outbox, due at once
    (its old score is in the past) or at its retry's time; delivered marks keep it from being sent
    twice. The Slack follow-up jobs and the sweeper's cron stay in arq's queue."""
    removed = 0
    match = keys.L5_DELIVER_JOB_PREFIX + "*"
    async for member, _ in redis.zscan_iter(keys.QUEUE, match=match, count=SCAN_COUNT):
        removed += int(await redis.zrem(keys.QUEUE, member))
    batch: list[Any] = []
    async for key in redis.scan_iter(match=keys.L5_ARQ_DELIVER_KEYS_MATCH, count=SCAN_COUNT):
        name = _text(key)
        if name.startswith(keys.L5_ARQ_JOB_KEY_PREFIXES):
            batch.append(key)
        if len(batch) >= SCAN_COUNT:
            removed += int(await redis.delete(*batch))
            batch = []
    if batch:
        removed += int(await redis.delete(*batch))
    return removed


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


STEPS: Final[dict[int, tuple[str, Step]]] = {
    2: ("Slack's unmasked errors summaries become the slack attachment of their event",
        _slack_errors_become_attachments),
    3: ("managed API keys limited to clubs; subscriptions and watches record their clubs and creator",
        _keys_limited_to_clubs),
    4: ("Slack channel lists per club and progress mutes per watch (new keys, nothing to rewrite)",
        _slack_channel_lists_start_empty),
    5: ("one index entry per watch (its club's, of its state), fingerprints on the trackers, "
        "short watch fields", _one_index_entry_per_watch),
    6: ("the outbox is the delivery queue: arq's delivery jobs removed", _deliveries_leave_arq),
}  # fmt: skip
"""Version → (what it changes, the step that upgrades the version before to it)."""


async def stored_version(redis: Any) -> int | None:
    """The layout version of the data; ``None`` for a database without any bridge data."""
    raw = await redis.get(keys.LAYOUT)
    if raw is not None:
        return int(raw)
    async for key in redis.scan_iter(match=keys.PREFIX + "*", count=SCAN_COUNT):
        if not (key.decode() if isinstance(key, bytes) else str(key)).startswith(keys.LAYOUT):
            return UNVERSIONED  # bridge data, and no version: written before there was one
    return None


async def migrate(redis: Any, *, report: Callable[[str], None] = lambda _: None) -> int:
    """Upgrade the data to :data:`LAYOUT_VERSION` in place (idempotent); the version it has now.

    One process migrates at a time: another one waits for it, then finds nothing left to do.
    Raises :class:`LayoutError` when the data is newer than this bridge.
    """
    token = secrets.token_hex(8)
    # Another process holds the lock: nothing in this one can wake us, so look again now and then.
    while not await redis.set(keys.MIGRATION_LOCK, token, nx=True, px=int(LOCK_TTL_S * 1000)):  # noqa: ASYNC110
        await asyncio.sleep(LOCK_WAIT_S)
    try:
        version = await stored_version(redis)
        if version is None:
            await redis.set(keys.LAYOUT, LAYOUT_VERSION)
            report(f"empty database: layout {LAYOUT_VERSION}")
            return LAYOUT_VERSION
        _refuse_newer(version)
        for target in range(version + 1, LAYOUT_VERSION + 1):
            what, step = STEPS[target]
            started = time.monotonic()
            changed = await step(redis)
            await redis.set(keys.LAYOUT, target)
            report(
                f"layout {target - 1} -> {target}: {what} ({changed} keys, {time.monotonic() - started:.1f}s)"
            )
        if version == LAYOUT_VERSION:
            report(f"layout {LAYOUT_VERSION}: up to date")
        elif await redis.get(keys.LAYOUT) is None:  # pragma: no cover - set by the last step
            await redis.set(keys.LAYOUT, LAYOUT_VERSION)
        return LAYOUT_VERSION
    finally:
        await scripts.register(redis, "unlock")(keys=[keys.MIGRATION_LOCK], args=[token])


async def ensure_layout(redis: Any, *, migrate_on_start: bool, report: Callable[[str], None]) -> None:
    """At a process's start: the data in this version's layout, migrated now if allowed.
    Raises :class:`LayoutError` (with what to do) when it is not and cannot be."""
    version = await stored_version(redis)
    if version == LAYOUT_VERSION:
        return
    if version is not None:
        _refuse_newer(version)
    if version is not None and not migrate_on_start:
        raise LayoutError(
            f"the data in Redis has layout {version}, this bridge needs {LAYOUT_VERSION}: "
            "run `bridge migrate` (or set BRIDGE_MIGRATE_ON_START=true)"
        )
    await migrate(redis, report=report)


def _refuse_newer(version: int) -> None:
    if version > LAYOUT_VERSION:
        raise LayoutError(
            f"the data in Redis has layout {version}, newer than this bridge's {LAYOUT_VERSION}: "
            "run the newer bridge (downgrades are not supported)"
        )
