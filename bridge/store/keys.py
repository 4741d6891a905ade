"""Every Redis key the bridge uses, in one place. Lua scripts get these prefixes as arguments.

Layout (``{tid}`` is a tracker id ``slug/import_id``: one per MPC import, shared by its watches)::

    bridge:schedule                  zset  tid -> when it is due (ms)
    bridge:inflight                  zset  tid -> lease expiry (ms) while a worker polls it
    bridge:trackers                  set   tids with at least one active watch
    bridge:tracker:{tid}             hash  v (version, compare-and-set), lp (last poll, ms),
                                           p (poll state), s:{wid} (each watch's snapshot)
    bridge:tracker:{tid}:watches     set   ids of the active watches on this import
    bridge:watch:{wid}               hash  doc (the WatchSpec, JSON), state, fp, created_at,
                                           updated_at, ended_at, snapshot (final, once ended)
    bridge:watches                   zset  wid -> created (ms)
    bridge:watches:club:{slug}       zset  wid -> created (ms), the club's watches
    bridge:watches:state:{state}     zset  wid -> created (ms), watches in that state
    bridge:watch-fingerprints        hash  fingerprint of a creation request -> wid
    bridge:timeline:{wid}            list  event ids, oldest first
    bridge:event:{eid}               string the event, JSON (the exact webhook body)
    bridge:outbox                    zset  "{eid}|{destination}" -> when recorded (ms)
    bridge:delivered:{eid}|{dest}    string set once a destination has the event (dedup)
    bridge:club-pause:{slug}         string until when MPC asked not to be called (ms)
    bridge:queue                     zset  arq's job queue (arq owns arq:job:*, arq:in-progress:*)
    bridge:queue:health-check:{host} string a worker's last health record (arq writes it every 30 s;
                                           it expires 1 s after the next one was due)
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "bridge:"

SCHEDULE: Final = PREFIX + "schedule"
INFLIGHT: Final = PREFIX + "inflight"
TRACKERS: Final = PREFIX + "trackers"
WATCHES: Final = PREFIX + "watches"
WATCH_FINGERPRINTS: Final = PREFIX + "watch-fingerprints"
OUTBOX: Final = PREFIX + "outbox"
QUEUE: Final = PREFIX + "queue"
WORKER_HEALTH_PREFIX: Final = QUEUE + ":health-check:"

TRACKER_PREFIX: Final = PREFIX + "tracker:"
TRACKER_WATCHES_SUFFIX: Final = ":watches"
WATCH_PREFIX: Final = PREFIX + "watch:"
WATCHES_BY_CLUB_PREFIX: Final = WATCHES + ":club:"
WATCHES_BY_STATE_PREFIX: Final = WATCHES + ":state:"
TIMELINE_PREFIX: Final = PREFIX + "timeline:"
EVENT_PREFIX: Final = PREFIX + "event:"
DELIVERED_PREFIX: Final = PREFIX + "delivered:"
CLUB_PAUSE_PREFIX: Final = PREFIX + "club-pause:"

OUTBOX_SEPARATOR: Final = "|"

# Fields of the tracker hash.
F_VERSION: Final = "v"
F_LAST_POLL: Final = "lp"
F_POLL_STATE: Final = "p"
F_SNAPSHOT_PREFIX: Final = "s:"


def tracker(tid: str) -> str:
    return TRACKER_PREFIX + tid


def tracker_watches(tid: str) -> str:
    return TRACKER_PREFIX + tid + TRACKER_WATCHES_SUFFIX


def watch(wid: str) -> str:
    return WATCH_PREFIX + wid


def watches_by_club(slug: str) -> str:
    return WATCHES_BY_CLUB_PREFIX + slug


def watches_by_state(state: str) -> str:
    return WATCHES_BY_STATE_PREFIX + state


def timeline(wid: str) -> str:
    return TIMELINE_PREFIX + wid


def event(eid: str) -> str:
    return EVENT_PREFIX + eid


def delivered(eid: str, destination: str) -> str:
    return DELIVERED_PREFIX + outbox_entry(eid, destination)


def club_pause(slug: str) -> str:
    return CLUB_PAUSE_PREFIX + slug


def snapshot_field(wid: str) -> str:
    return F_SNAPSHOT_PREFIX + wid


def outbox_entry(eid: str, destination: str) -> str:
    return f"{eid}{OUTBOX_SEPARATOR}{destination}"


def split_outbox_entry(entry: str) -> tuple[str, str]:
    eid, _, destination = entry.partition(OUTBOX_SEPARATOR)
    return eid, destination


def worker_health(host: str) -> str:
    return WORKER_HEALTH_PREFIX + host
