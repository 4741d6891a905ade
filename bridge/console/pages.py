"""What the console's pages show, gathered from the stores and shaped for the templates.

Everything here reads through the same stores and view functions as the API (``watch_out``,
``subscription_out``, ``delivery_out``), so a page and ``/v1`` never disagree about a watch.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Final

import msgspec

from bridge.api.auth import Principal
from bridge.api.schemas import PAGE_MAX, BulkOut, TimelineItem, WatchOut, watch_out
from bridge.api.subscriptions import DeliveryOut, SubscriptionOut, delivery_out, subscription_out
from bridge.api.watches import timeline_items
from bridge.core.diff import iso_timestamp
from bridge.core.model import ErrorGroup, WatchSnapshot
from bridge.metrics import PREFIX, read_gauges, read_shared
from bridge.slack.state import SlackState
from bridge.store import keys
from bridge.store.redis_store import RedisStore, WatchRecord
from bridge.upstream.budget import BudgetUse, ClubBudget
from bridge.upstream.credentials import CredentialStore
from bridge.webhooks.model import Subscription, event_delivery_id
from bridge.webhooks.store import SubscriptionStore

SCAN_COUNT: Final = 500
"""Keys asked per SCAN round trip (finding the clubs and the workers)."""
WATCHES_SHOWN: Final = 200
"""Rows on the watches page (newest first)."""
TIMELINE_SHOWN: Final = 500
SUBSCRIPTIONS_SHOWN: Final = PAGE_MAX
DELIVERIES_SHOWN: Final = 100
SLACK_LINK: Final = "https://slack.com/archives/{channel}/p{ts}"
"""Slack resolves this to the message in whichever workspace the reader is signed in to."""
POLL_RATE_WINDOW_S: Final = 300.0
POLL_RATE_MIN_WINDOW_S: Final = 5.0
"""Shorter than this, the rate would mostly show when the workers last added their counts."""
POLL_RATE_SAMPLES: Final = 1000
STATUS_ORDER: Final = ("finished", "failed", "working", "waiting_for_retry", "waiting", "unseen")


class BarSegment(msgspec.Struct, kw_only=True):
    status: str
    count: int
    start: float
    """Percent of the bar before this segment."""
    width: float


class WatchRow(msgspec.Struct, kw_only=True):
    watch: WatchOut
    bar: list[BarSegment]
    last_change: str


def bulk_bar(bulks: list[BulkOut]) -> list[BarSegment]:
    """The bulks by status, as segments of a bar (an SVG: no inline styles under the CSP)."""
    counts = Counter(b.status or "unseen" for b in bulks)
    total = sum(counts.values())
    segments: list[BarSegment] = []
    start = 0.0
    for status in (*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))):
        if counts.get(status):
            width = 100.0 * counts[status] / total
            segments.append(BarSegment(status=status, count=counts[status], start=start, width=width))
            start += width
    return segments


def watch_row(record: WatchRecord) -> WatchRow:
    watch = watch_out(record)
    changed = max(
        [record.updated_at] + [b.last_changed for b in (record.snapshot or WatchSnapshot()).bulks.values()]
    )
    return WatchRow(watch=watch, bar=bulk_bar(watch.bulks), last_change=iso_timestamp(changed))


async def watch_rows(
    store: RedisStore, principal: Principal, *, club: str | None, state: str | None, import_id: str | None
) -> list[WatchRow]:
    """Rows the principal may see, newest first, filtered."""
    if club and not principal.sees(club):
        return []
    records, _ = await store.list_watches(slug=club, state=state, offset=0, limit=WATCHES_SHOWN)
    rows = []
    for record in records:
        spec = record.spec
        if not principal.sees(spec.loyalty_club_slug):
            continue
        if state and record.state != state:
            continue
        if import_id and spec.import_id != import_id:
            continue
        rows.append(watch_row(record))
    return rows


class EventView(msgspec.Struct, kw_only=True):
    item: TimelineItem
    errors: list[ErrorGroup]
    errors_omitted: int
    deliveries: list[DeliveryOut]


class WatchDetail(msgspec.Struct, kw_only=True):
    row: WatchRow
    events: list[EventView]
    slack_url: str | None
    subscriptions: dict[str, str]
    """Subscription id -> its URL, for the deliveries shown."""


async def _slack_url(slack: SlackState, watch: WatchOut) -> str | None:
    if watch.slack is None:
        return None
    card = await slack.card(watch.id, watch.slack.channel)
    if card is None:
        return None
    return SLACK_LINK.format(channel=card.channel, ts=card.ts.replace(".", ""))


async def watch_detail(
    store: RedisStore,
    subscriptions: SubscriptionStore,
    slack: SlackState,
    record: WatchRecord,
    principal: Principal,
) -> WatchDetail:
    """The watch page: the deliveries shown are those to subscriptions the key sees."""
    row = watch_row(record)
    items, _ = await timeline_items(store, record.spec.id, 0, TIMELINE_SHOWN)
    subs, _ = await subscriptions.page(0, SUBSCRIPTIONS_SHOWN, visible=_seen_by(principal))
    wanted = [(item.event_id, sub.id) for item in items for sub in subs]
    found = await subscriptions.get_deliveries([event_delivery_id(eid, sid) for eid, sid in wanted])
    by_event: dict[str, list[DeliveryOut]] = {}
    for delivery in found:
        if delivery is not None:
            by_event.setdefault(delivery.event_id, []).append(delivery_out(delivery))
    events = []
    for item in items:
        data = item.data
        groups = data.errors_summary if isinstance(data.errors_summary, list) else []
        omitted = data.errors_summary_omitted if isinstance(data.errors_summary_omitted, int) else 0
        events.append(
            EventView(
                item=item, errors=groups, errors_omitted=omitted, deliveries=by_event.get(item.event_id, [])
            )
        )
    return WatchDetail(
        row=row,
        events=events,
        slack_url=await _slack_url(slack, row.watch),
        subscriptions={s.id: s.doc.url for s in subs},
    )


def _seen_by(principal: Principal) -> Callable[[Subscription], bool] | None:
    """The subscriptions a key sees: those limited to clubs it all holds (every one: admin)."""
    return None if principal.is_admin else (lambda sub: principal.sees_scope(sub.doc.clubs))


async def subscription_list(subscriptions: SubscriptionStore, principal: Principal) -> list[SubscriptionOut]:
    subs, _ = await subscriptions.page(0, SUBSCRIPTIONS_SHOWN, visible=_seen_by(principal))
    now = time.time()
    return [subscription_out(s, now) for s in subs]


async def failure_counts(subscriptions: SubscriptionStore, sid: str) -> int:
    """Consecutive failed attempts, newest first, up to the last success."""
    found, _ = await subscriptions.list_deliveries(sid, 0, DELIVERIES_SHOWN)
    attempts = sorted((a for d in found for a in d.attempts), key=lambda a: a.at, reverse=True)
    failures = 0
    for attempt in attempts:
        if attempt.succeeded:
            break
        failures += 1
    return failures


class ClubView(msgspec.Struct, kw_only=True):
    slug: str
    credentials: bool
    credentials_updated: str | None
    active_watches: int
    failing_watches: int
    last_answer: str
    paused_until: str | None
    budget: str
    budget_in_use: int
    """Requests of the club's MPC budget spent and not yet refilled (``data-budget-in-use``)."""


def budget_text(use: BudgetUse) -> str:
    """``3 of 10 in use (refills 5/s)``; ``empty, next request in 0.2 s`` while none may go."""
    text = f"{round(use.in_use)} of {use.burst} in use (refills {use.rate:g}/s)"
    if use.next_token_s > 0:
        text += f"; empty, next request in {use.next_token_s:.1f} s"
    return text


async def club_views(
    redis: Any, store: RedisStore, credentials: CredentialStore, budget: ClubBudget, principal: Principal
) -> list[ClubView]:
    configured = await credentials.configured()
    slugs = set(configured)
    slugs.update(await store.clubs_with_watches(indexed=True))
    shown = sorted(s for s in slugs if principal.sees(s))
    uses = await budget.use(shown)
    views = []
    for slug in shown:
        records, _ = await store.list_watches(slug=slug, state="active", offset=0, limit=WATCHES_SHOWN)
        failing = [r for r in records if r.snapshot is not None and r.snapshot.failing]
        seen = max(
            (b.last_seen for r in records if r.snapshot for b in r.snapshot.bulks.values()), default=0.0
        )
        if failing:
            answer = f"failing ({max(r.snapshot.failures for r in failing if r.snapshot)} polls in a row)"
        elif seen:
            answer = f"ok at {iso_timestamp(seen)}"
        else:
            answer = "none yet"
        pause = await redis.get(keys.club_pause(slug))
        until = float(pause) / 1000.0 if pause is not None else None
        views.append(
            ClubView(
                slug=slug,
                credentials=slug in configured,
                credentials_updated=iso_timestamp(configured[slug]) if slug in configured else None,
                active_watches=len(records),
                failing_watches=len(failing),
                last_answer=answer,
                paused_until=iso_timestamp(until) if until and until > time.time() else None,
                budget=budget_text(uses[slug]),
                budget_in_use=round(uses[slug].in_use),
            )
        )
    return views


class SystemView(msgspec.Struct, kw_only=True):
    workers: list[str]
    gauges: list[tuple[str, str, float]]
    counters: list[tuple[str, float]]
    listeners: int
    poll_rate: float | None = None
    """Polls a second over all workers, since an earlier look (``None``: no earlier look yet)."""
    poll_rate_window_s: float = 0.0
    loop_lag_s: float | None = None
    """The workers' mean event-loop lag over the same window (``None``: none measured in it)."""
    loop_lag_probes: int = 0


class TotalRate:
    """The rate of a total from the shared counters, which only hold totals: each look keeps a
    sample, and the rate is taken against the oldest sample of the last
    :data:`POLL_RATE_WINDOW_S` (the workers add their counts every few seconds)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=POLL_RATE_SAMPLES)

    def observe(self, now: float, total: float) -> tuple[float | None, float]:
        """(the rate per second, the window it covers); ``None`` while no window can say."""
        while self._samples and now - self._samples[0][0] > POLL_RATE_WINDOW_S:
            self._samples.popleft()
        earlier = self._samples[0] if self._samples else None
        self._samples.append((now, total))
        if earlier is None or now - earlier[0] < POLL_RATE_MIN_WINDOW_S or total < earlier[1]:
            return None, 0.0
        return (total - earlier[1]) / (now - earlier[0]), now - earlier[0]


class SystemRates:
    """The rates the system page shows, each over the same window: polls a second, and the mean
    loop lag (lag seconds added a second over lag probes a second)."""

    def __init__(self) -> None:
        self.polls = TotalRate()
        self.lag_sum = TotalRate()
        self.lag_probes = TotalRate()


def _total(shared: dict[str, float], name: str) -> float:
    full = PREFIX + name
    return sum(value for sample, value in shared.items() if sample == full or sample.startswith(full + "{"))


async def system_view(redis: Any, listeners: int, rates: SystemRates, now: float | None = None) -> SystemView:
    workers = []
    async for raw in redis.scan_iter(match=keys.WORKER_HEALTH_PREFIX + "*", count=SCAN_COUNT):
        workers.append(
            (raw.decode() if isinstance(raw, bytes) else raw).removeprefix(keys.WORKER_HEALTH_PREFIX)
        )
    gauges = await read_gauges(redis)
    shared = await read_shared(redis)
    counters = sorted(
        (name, value)
        for name, value in shared.items()
        if name.startswith((PREFIX + "polls_total", PREFIX + "deliveries_total"))
    )
    now = time.time() if now is None else now
    per_s, window = rates.polls.observe(now, _total(shared, "polls_total"))
    lag_per_s, _ = rates.lag_sum.observe(now, _total(shared, "loop_lag_seconds_sum"))
    probes_per_s, _ = rates.lag_probes.observe(now, _total(shared, "loop_lag_seconds_count"))
    lag = lag_per_s / probes_per_s if lag_per_s is not None and probes_per_s else None
    return SystemView(
        workers=sorted(workers),
        gauges=[(name, text, value) for name, (text, value) in gauges.items()],
        counters=counters,
        listeners=listeners,
        poll_rate=per_s,
        poll_rate_window_s=window,
        loop_lag_s=lag,
        loop_lag_probes=round(probes_per_s * window) if probes_per_s else 0,
    )
