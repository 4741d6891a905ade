"""Every Redis key and hash field the bridge uses, in one place. The Lua scripts (``lua/``) get
these names substituted when they are loaded (:mod:`bridge.store.scripts`).

Layout (``{tid}`` is a tracker id ``slug/import_id``: one per MPC import, shared by its watches)::

    bridge:schedule                  zset  tid -> when it is due (ms)
    bridge:inflight                  zset  tid -> lease expiry (ms) while a worker polls it
    bridge:tracker:{tid}             hash  v (version, compare-and-set), lp (last poll, ms),
                                           p (poll state), w:{wid} (each active watch on the
                                           import -> the fingerprint of the request that created
                                           it: an identical request names the same import, so it
                                           finds the watch there), n (how many), s:{wid} (each
                                           one's snapshot)
    bridge:watch:{wid}               hash  d (the WatchSpec, msgpack; its created_at is the
                                           watch's), s (state); once ended: e (ended, ms), f (the
                                           final snapshot); u (updated, ms) only where it is
                                           neither the creation nor the end
    bridge:watch-index:{slug}:{state} zset wid -> created (ms): the club's watches in that state;
                                           every watch is in exactly one (lists by club, by state
                                           or of all watches merge these)
    bridge:watch-clubs               set   the clubs that have (or had) a watch index
    bridge:timeline:{wid}            list  event ids, oldest first
    bridge:event:{eid}               string the event, JSON (the exact webhook body)
    bridge:outbox                    zset  "{eid}|{destination}" -> when recorded (ms)
    bridge:delivered:{eid}|{dest}    string set once a destination has the event (dedup)
    bridge:attachment:{eid}|{dest}   string what one destination gets beside an event, written with
                                           it (Slack: the UNMASKED errors summary, only with
                                           BRIDGE_SLACK_SHOW_PII); short TTL, deleted once sent
    bridge:club-pause:{slug}         string until when MPC asked not to be called (ms)
    bridge:club-budget:{slug}        hash  the club's MPC request budget (token bucket): tokens, at
                                           (ms); expires once it would be full again
    bridge:credentials               hash  slug -> the club's MPC token (sealed) and product name
    bridge:metrics                   hash  Prometheus sample -> total over all workers
    bridge:orphans-checked           string set while a sweeper's check for lost imports is recent
    bridge:subscriptions             zset  webhook subscription id -> created (ms)
    bridge:subscriptions:version     string bumped on every change routing must see (workers cache)
    bridge:subscription:{sid}        hash  doc (url and filters, JSON), enabled, reason, created,
                                           updated, secret / prev (sealed), prev_until,
                                           failing_since, last_success, last_failure (ms)
    bridge:subscription:{sid}:deliveries  zset  delivery id -> created (ms), the attempt logs
    bridge:webhook-delivery:{did}    string one webhook delivery and its attempts (JSON)
    bridge:webhook-test:{sid}        string set while a webhook.test to the subscription is recent (PX)
    bridge:indexes-trimmed           string set while a sweeper's trim of the watch indexes is recent
    bridge:slack:card:{wid}:{chan}   hash  the import card of a watch in a channel: channel (the id
                                           Slack answered), ts, rev (snapshot revision shown),
                                           digest (content shown), want (refreshes asked for)
    bridge:slack:card-lock:{wid}:{chan} string token of the worker updating that card (PX)
    bridge:slack:reply:{eid}         string ts of the Slack message posted for an event (dedup)
    bridge:slack:pace:{chan}         string when the next message may be posted there (ms)
    bridge:slack:slot:{ref}          string the posting time reserved for one message (ms)
    bridge:slack:hold:{chan}         string until when Slack said (429) to send nothing there (ms)
    bridge:slack:channels:{slug}     set   the Slack channel ids allowed to watch a club (set by an
                                           admin; none: the club cannot be watched from Slack)
    bridge:slack:mute:{wid}          string set while a watch's bulk.progress replies are muted
                                           (the card's "Mute progress"); expires with the watch's events
    bridge:slack-socket:health:{host} string the last health record of ``bridge slack-socket`` on a host
                                           (written every 10 s, expires after 20 s)
    bridge:api-keys                  hash  managed API key id -> the key's record (JSON: name, clubs,
                                           role, created_at, created_by, digest); never the key
    bridge:api-keys:digests          hash  keyed hash (HMAC-SHA256) of a managed key -> its id
    bridge:api-keys:pepper           string the HMAC key of those digests, sealed with BRIDGE_SECRET_KEY
    bridge:console:session:{digest}  string a console sign-in (its key's principal and CSRF token,
                                           msgpack), under the SHA-256 of the cookie's value;
                                           expires by itself (BRIDGE_CONSOLE_SESSION_S)
    bridge:layout                    string the layout version of all of the above (see layout.py)
    bridge:layout:migrating          string held while ``bridge migrate`` upgrades the data
    bridge:queue                     zset  arq's job queue (arq owns arq:job:*, arq:in-progress:*)
    bridge:queue:health-check:{host} string a worker's last health record (arq writes it every 30 s;
                                           it expires 1 s after the next one was due)

Pub/sub channel (nothing stored)::

    bridge:changes                   a watch, its bulks or a delivery changed: the store publishes
                                     a short note (:mod:`bridge.store.changes`) the console's
                                     live pages follow
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "bridge:"

SCHEDULE: Final = PREFIX + "schedule"
INFLIGHT: Final = PREFIX + "inflight"
WATCH_CLUBS: Final = PREFIX + "watch-clubs"
OUTBOX: Final = PREFIX + "outbox"
QUEUE: Final = PREFIX + "queue"
CREDENTIALS: Final = PREFIX + "credentials"
METRICS: Final = PREFIX + "metrics"
ORPHANS_CHECKED: Final = PREFIX + "orphans-checked"
INDEXES_TRIMMED: Final = PREFIX + "indexes-trimmed"
SUBSCRIPTIONS: Final = PREFIX + "subscriptions"
SUBSCRIPTIONS_VERSION: Final = SUBSCRIPTIONS + ":version"
WORKER_HEALTH_PREFIX: Final = QUEUE + ":health-check:"
SLACK_SOCKET_HEALTH_PREFIX: Final = PREFIX + "slack-socket:health:"
SCHEDULE_WAKE_CHANNEL: Final = SCHEDULE + ":wake"
"""A Pub/Sub channel, not a key: a new watch's import due at once is published on it, so the poll
loops of idle workers claim it at once instead of looking at the schedule many times a second."""
QUEUE_WAKE_CHANNEL: Final = QUEUE + ":wake"
"""A Pub/Sub channel, not a key (nothing is stored): a process that adds deliveries to the outbox
which its own delivery loop will not take at once publishes on it, so the delivery loops of idle
workers claim them at once instead of looking at the outbox many times a second."""

TRACKER_PREFIX: Final = PREFIX + "tracker:"
WATCH_PREFIX: Final = PREFIX + "watch:"
WATCH_INDEX_PREFIX: Final = PREFIX + "watch-index:"
TIMELINE_PREFIX: Final = PREFIX + "timeline:"
EVENT_PREFIX: Final = PREFIX + "event:"
DELIVERED_PREFIX: Final = PREFIX + "delivered:"
OUTBOX_TRIES_PREFIX: Final = PREFIX + "outbox-tries:"
"""Runs of a delivery that ended in "retry later" (absent: none yet), by outbox entry."""
CLUB_PAUSE_PREFIX: Final = PREFIX + "club-pause:"
CLUB_BUDGET_PREFIX: Final = PREFIX + "club-budget:"
SUBSCRIPTION_PREFIX: Final = PREFIX + "subscription:"
SUBSCRIPTION_DELIVERIES_SUFFIX: Final = ":deliveries"
WEBHOOK_DELIVERY_PREFIX: Final = PREFIX + "webhook-delivery:"
WEBHOOK_TEST_PREFIX: Final = PREFIX + "webhook-test:"
SLACK_PREFIX: Final = PREFIX + "slack:"
SLACK_CARD_PREFIX: Final = SLACK_PREFIX + "card:"
SLACK_CARD_LOCK_PREFIX: Final = SLACK_PREFIX + "card-lock:"
SLACK_REPLY_PREFIX: Final = SLACK_PREFIX + "reply:"
SLACK_PACE_PREFIX: Final = SLACK_PREFIX + "pace:"
SLACK_SLOT_PREFIX: Final = SLACK_PREFIX + "slot:"
SLACK_HOLD_PREFIX: Final = SLACK_PREFIX + "hold:"
SLACK_CHANNELS_PREFIX: Final = SLACK_PREFIX + "channels:"
SLACK_MUTE_PREFIX: Final = SLACK_PREFIX + "mute:"
ATTACHMENT_PREFIX: Final = PREFIX + "attachment:"
API_KEYS: Final = PREFIX + "api-keys"
API_KEY_DIGESTS: Final = API_KEYS + ":digests"
API_KEY_PEPPER: Final = API_KEYS + ":pepper"
CONSOLE_SESSION_PREFIX: Final = PREFIX + "console:session:"
CHANGES: Final = PREFIX + "changes"
"""The pub/sub channel of change notes (not a key: nothing is stored under it)."""
LAYOUT: Final = PREFIX + "layout"
MIGRATION_LOCK: Final = LAYOUT + ":migrating"

OUTBOX_SEPARATOR: Final = "|"
INDEX_SEPARATOR: Final = ":"

# Fields of the tracker hash (``bridge:tracker:{tid}``).
F_VERSION: Final = "v"
F_LAST_POLL: Final = "lp"
F_POLL_STATE: Final = "p"
F_SNAPSHOT_PREFIX: Final = "s:"
F_WATCH_PREFIX: Final = "w:"
F_WATCH_COUNT: Final = "n"

# Fields of the watch hash (``bridge:watch:{wid}``): one letter each, a hash is kept per watch.
W_DOC: Final = "d"
W_STATE: Final = "s"
W_ENDED: Final = "e"
W_UPDATED: Final = "u"
W_SNAPSHOT: Final = "f"

# Fields of the subscription hash (``bridge:subscription:{sid}``).
S_DOC: Final = "doc"
S_ENABLED: Final = "enabled"
S_REASON: Final = "reason"
S_CREATED: Final = "created"
S_UPDATED: Final = "updated"
S_SECRET: Final = "secret"  # noqa: S105 - a field name
S_PREVIOUS: Final = "prev"
S_PREVIOUS_UNTIL: Final = "prev_until"
S_FAILING_SINCE: Final = "failing_since"
S_LAST_SUCCESS: Final = "last_success"
S_LAST_FAILURE: Final = "last_failure"

# Fields of a club budget hash (``bridge:club-budget:{slug}``).
B_TOKENS: Final = "tokens"
B_AT: Final = "at"

# Fields of a Slack card hash (``bridge:slack:card:{wid}:{channel}``).
C_CHANNEL: Final = "channel"
C_TS: Final = "ts"
C_REV: Final = "rev"
C_DIGEST: Final = "digest"
C_WANT: Final = "want"
C_DONE: Final = "done"
"""The ``want`` the card was last rendered for: every refresh asked up to it is shown."""


def tracker(tid: str) -> str:
    return TRACKER_PREFIX + tid


def watch(wid: str) -> str:
    return WATCH_PREFIX + wid


def watch_index(slug: str, state: str) -> str:
    return f"{WATCH_INDEX_PREFIX}{slug}{INDEX_SEPARATOR}{state}"


def timeline(wid: str) -> str:
    return TIMELINE_PREFIX + wid


def event(eid: str) -> str:
    return EVENT_PREFIX + eid


def delivered(eid: str, destination: str) -> str:
    return DELIVERED_PREFIX + outbox_entry(eid, destination)


def outbox_tries(eid: str, destination: str) -> str:
    return OUTBOX_TRIES_PREFIX + outbox_entry(eid, destination)


def club_pause(slug: str) -> str:
    return CLUB_PAUSE_PREFIX + slug


def club_budget(slug: str) -> str:
    return CLUB_BUDGET_PREFIX + slug


def subscription(sid: str) -> str:
    return SUBSCRIPTION_PREFIX + sid


def subscription_deliveries(sid: str) -> str:
    return SUBSCRIPTION_PREFIX + sid + SUBSCRIPTION_DELIVERIES_SUFFIX


def webhook_delivery(did: str) -> str:
    return WEBHOOK_DELIVERY_PREFIX + did


def webhook_test_gate(sid: str) -> str:
    return WEBHOOK_TEST_PREFIX + sid


def slack_card(wid: str, channel: str) -> str:
    return f"{SLACK_CARD_PREFIX}{wid}:{channel}"


def slack_card_lock(wid: str, channel: str) -> str:
    return f"{SLACK_CARD_LOCK_PREFIX}{wid}:{channel}"


def slack_reply(eid: str) -> str:
    return SLACK_REPLY_PREFIX + eid


def slack_pace(channel: str) -> str:
    return SLACK_PACE_PREFIX + channel


def slack_slot(ref: str) -> str:
    return SLACK_SLOT_PREFIX + ref


def slack_hold(channel: str) -> str:
    return SLACK_HOLD_PREFIX + channel


def slack_channels(slug: str) -> str:
    return SLACK_CHANNELS_PREFIX + slug


def slack_mute(wid: str) -> str:
    return SLACK_MUTE_PREFIX + wid


def attachment(eid: str, destination: str) -> str:
    return ATTACHMENT_PREFIX + outbox_entry(eid, destination)


def snapshot_field(wid: str) -> str:
    return F_SNAPSHOT_PREFIX + wid


def outbox_entry(eid: str, destination: str) -> str:
    return f"{eid}{OUTBOX_SEPARATOR}{destination}"


def split_outbox_entry(entry: str) -> tuple[str, str]:
    eid, _, destination = entry.partition(OUTBOX_SEPARATOR)
    return eid, destination


def console_session(digest: str) -> str:
    return CONSOLE_SESSION_PREFIX + digest


def worker_health(host: str) -> str:
    return WORKER_HEALTH_PREFIX + host


def slack_socket_health(host: str) -> str:
    return SLACK_SOCKET_HEALTH_PREFIX + host


# Layout 4's names, read only by the upgrade to layout 5 (:mod:`bridge.store.layout`): three
# indexes per watch (all, per club, per state), a global fingerprint map, and long field names.
L4_WATCHES: Final = PREFIX + "watches"
L4_WATCHES_BY_CLUB_PREFIX: Final = L4_WATCHES + ":club:"
L4_WATCHES_BY_STATE_PREFIX: Final = L4_WATCHES + ":state:"
L4_WATCH_FINGERPRINTS: Final = PREFIX + "watch-fingerprints"
L4_W_DOC: Final = "doc"
L4_W_STATE: Final = "state"
L4_W_FINGERPRINT: Final = "fp"
L4_W_CREATED: Final = "created_at"
L4_W_UPDATED: Final = "updated_at"
L4_W_ENDED: Final = "ended_at"
L4_W_SNAPSHOT: Final = "snapshot"

# Layout 5's delivery jobs, removed by the upgrade to layout 6 (:mod:`bridge.store.layout`): one
# arq job per (event, destination), ``dlv:{eid}:{destination}``, in the queue (``QUEUE``) and in
# arq's own keys (arq 0.28's prefixes). Layout 6 delivers from the outbox itself.
L5_DELIVER_JOB_PREFIX: Final = "dlv:"
L5_ARQ_JOB_KEY_PREFIXES: Final = ("arq:job:", "arq:in-progress:", "arq:retry:", "arq:result:")
L5_ARQ_DELIVER_KEYS_MATCH: Final = "arq:*:" + L5_DELIVER_JOB_PREFIX + "*"
