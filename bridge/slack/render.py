"""Block Kit for Slack: the import card and one message per event. Pure functions, no I/O.

- :func:`render_card` — the import card of a watch, from its latest snapshot: club and import, a
  verdict line, one line per bulk (``✅ *Bulk 4101* · finished · 10 created, 3 updated, 0 invalid ·
  retries 0/5 · request #1``), totals and when it last changed.
- :func:`render_event` — one event as a readable message: a one-line summary, details, the
  validation errors grouped by property and code (bot mode: a thread reply; webhook mode: a
  message of its own).

Every block is built with ``slack_sdk.models`` and serialised with ``to_dict()``, which runs the
library's validators; every message has a fallback ``text``. Sizes are budgeted so Slack never
refuses a message: long lists are summarised, then cut with "+N more" (see :mod:`.format`).
Member identifiers are shown as given: callers pass masked ones unless ``BRIDGE_SLACK_SHOW_PII``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, SectionBlock
from slack_sdk.models.blocks.basic_components import MarkdownTextObject, PlainTextObject

from bridge.core.diff import bulk_outcome, import_totals
from bridge.core.member_errors import ErrorSummary
from bridge.core.model import (
    MAX_RETRIES,
    BulkSnapshot,
    BulkView,
    ErrorGroup,
    Event,
    EventData,
    ImportTotals,
    WatchSnapshot,
    WatchSpec,
    WatchState,
)
from bridge.slack.commands import card_actions
from bridge.slack.format import (
    MAX_BLOCK_ID,
    MAX_BLOCKS,
    MAX_CONTEXT_TEXT,
    MAX_FALLBACK_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    code,
    escape,
    fit,
    pack_lines,
    plural,
)

CARD_MAX_BULK_LINES: Final = 50
"""Bulks listed one per line on a card; beyond that the most telling ones are listed (failed,
retrying, working, missing, with errors, waiting, clean) and the rest counted by status."""
CARD_BULK_SECTIONS: Final = 6
"""Sections the bulk list may take (50 lines of at most ~130 characters need three)."""
ERROR_GROUPS_SHOWN: Final = 15
"""Validation-error groups listed in a message; the rest are counted."""
ERROR_SECTIONS: Final = 3
"""Sections the error groups may take."""
EXAMPLES_SHOWN: Final = 5
"""Member identifiers shown per error group (the summary itself keeps at most five)."""
MAX_REASON_CHARS: Final = 300
"""An upstream failure reason is quoted up to this long."""
EVENT_BULK_SECTIONS: Final = 3
"""Sections a standalone ``import.completed`` message may use to list its bulks."""
CARD_BLOCK_ID_PREFIX: Final = "card-rev-"
"""The card's header ``block_id`` carries its revision: invisible to readers, it lets anyone
(tests, the stand-in, an operator) see which snapshot a card shows."""

SEP: Final = " · "
ARROW: Final = "→"

STATUS_EMOJI: Final = {
    "waiting": "⏳",
    "working": "⚙️",
    "waiting_for_retry": "🔁",
    "finished": "✅",
    "failed": "❌",
}
OUTCOME_EMOJI: Final = {
    "clean": "✅",
    "with_errors": "⚠️",
    "nothing_imported": "⚪",
    "failed": "❌",
    "missing": "❓",
}
OUTCOME_WORDS: Final = {
    "clean": "clean",
    "with_errors": "with errors",
    "nothing_imported": "nothing imported",
    "failed": "failed",
    "missing": "missing",
}
EVENT_EMOJI: Final = {
    "bulk.discovered": "🆕",
    "bulk.started": "⚙️",
    "bulk.retrying": "🔁",
    "bulk.finished": "✅",
    "bulk.failed": "❌",
    "bulk.progress": "📈",
    "bulk.missing": "❓",
    "import.completed": "🏁",
    "watch.upstream_failing": "🚨",
    "watch.upstream_recovered": "💚",
    "watch.stalled": "🐢",
    "watch.expired": "⌛",
    "webhook.test": "🧪",
}
BROADCAST_TYPES: Final = frozenset({"bulk.failed", "import.completed"})
"""Thread replies also shown in the channel: a failure and the end of the import."""
UNKNOWN_BULK: Final = "❔"
MISSING_BULK: Final = "❓"
UNAUTHORIZED_REASON: Final = "unauthorized"

_TRUNCATION_RANK: Final = {"failed": 0, "waiting_for_retry": 1, "working": 2, "missing": 3, "with_errors": 4}
"""Which bulks a cut card keeps first (lower first); then waiting, unseen, clean and the rest."""


class SlackMessage(msgspec.Struct, kw_only=True, frozen=True):
    """What is sent: fallback ``text`` and Block Kit ``blocks`` (already validated dicts)."""

    text: str
    blocks: list[dict[str, Any]]


class CardRender(msgspec.Struct, kw_only=True, frozen=True):
    message: SlackMessage
    rev: int
    """Grows with every event of the watch: an older snapshot never has a larger one."""
    digest: str
    """Identifies the content: an unchanged card is not sent again."""


# ---------------------------------------------------------------------------- building blocks


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=fit(text, MAX_SECTION_TEXT)))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=fit(text, MAX_CONTEXT_TEXT))])


def _header(text: str, block_id: str | None = None) -> HeaderBlock:
    return HeaderBlock(
        text=PlainTextObject(text=fit(text, MAX_HEADER_TEXT), emoji=True),
        block_id=None if block_id is None else fit(block_id, MAX_BLOCK_ID),
    )


def _message(text: str, blocks: Sequence[Block]) -> SlackMessage:
    if len(blocks) > MAX_BLOCKS:  # budgets keep far below; a last guard, never a refusal
        blocks = [*blocks[: MAX_BLOCKS - 1], _context(f"+{len(blocks) - MAX_BLOCKS + 1} more blocks")]
    fallback = fit(" ".join(text.split()) or "mpc-import-bridge", MAX_FALLBACK_TEXT)
    return SlackMessage(text=fallback, blocks=[block.to_dict() for block in blocks])


def message_digest(message: SlackMessage) -> str:
    return hashlib.sha256(msgspec.json.encode(message, order="sorted")).hexdigest()[:16]


def _when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 1:
        return f"{minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if days else f"{hours} h {minutes} min"


def status_word(status: str | None) -> str:
    """MPC's status as a word a reader sees (``waiting_for_retry`` reads "waiting for retry")."""
    return "not seen yet" if status is None else status.replace("_", " ")


# ---------------------------------------------------------------------------- the card


def card_rev(snapshot: WatchSnapshot | None) -> int:
    """Every event raises one sequence number of the snapshot by one, and snapshots only move
    forward, so the sum orders the renders of one watch."""
    if snapshot is None:
        return 0
    return snapshot.seq + sum(bulk.seq for bulk in snapshot.bulks.values())


def _counts(created: int, updated: int, invalid: int) -> str:
    return f"{created:,} created, {updated:,} updated, {invalid:,} invalid"


def _bulk_emoji(snap: BulkSnapshot) -> str:
    if snap.missing:
        return MISSING_BULK
    if snap.status is None:
        return UNKNOWN_BULK
    if snap.status == "finished":
        return OUTCOME_EMOJI[bulk_outcome(snap)]
    return STATUS_EMOJI.get(snap.status, UNKNOWN_BULK)


def bulk_line(bulk_id: int, snap: BulkSnapshot) -> str:
    """One bulk on one line: its MPC id and status word first (readers and scripts look for both)."""
    head = f"{_bulk_emoji(snap)} *Bulk {bulk_id}*"
    if snap.status is None:
        return head + SEP + ("missing (never found)" if snap.missing else "not seen yet")
    status = (
        "missing" + SEP + f"last seen {status_word(snap.status)}"
        if snap.missing
        else status_word(snap.status)
    )
    parts = [
        head,
        status,
        _counts(snap.created, snap.updated, snap.invalid),
        f"retries {snap.retries}/{MAX_RETRIES}",
        f"request #{snap.request_number}",
    ]
    if snap.stalled:
        parts.append("🐢 stalled")
    return SEP.join(parts)


def _rank(snap: BulkSnapshot) -> int:
    if snap.missing:
        return _TRUNCATION_RANK["missing"]
    if snap.status == "finished" and bulk_outcome(snap) != "clean":
        return _TRUNCATION_RANK["with_errors"]
    if snap.status in _TRUNCATION_RANK:
        return _TRUNCATION_RANK[snap.status]
    return {"waiting": 5, None: 6}.get(snap.status, 7)


def _bulks(watch: WatchSpec, snapshot: WatchSnapshot) -> list[tuple[int, BulkSnapshot]]:
    ids = sorted(set(watch.bulk_ids or ()) | set(snapshot.bulks))
    return [(b, snapshot.bulks.get(b, BulkSnapshot())) for b in ids]


def _count_by_status(bulks: Iterable[tuple[int, BulkSnapshot]]) -> str:
    counts: dict[str, int] = {}
    for _, snap in bulks:
        word = "missing" if snap.missing else status_word(snap.status)
        counts[word] = counts.get(word, 0) + 1
    return ", ".join(f"{n:,} {word}" for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def bulk_lines(
    watch: WatchSpec, snapshot: WatchSnapshot | None, limit: int = CARD_MAX_BULK_LINES
) -> list[str]:
    """The card's bulk list: every bulk up to ``limit``, else the most telling ones and a count."""
    bulks = _bulks(watch, snapshot or WatchSnapshot())
    if len(bulks) <= limit:
        return [bulk_line(b, snap) for b, snap in bulks]
    ranked = sorted(bulks, key=lambda item: (_rank(item[1]), item[0]))
    shown, rest = ranked[: limit - 1], ranked[limit - 1 :]
    lines = [bulk_line(b, snap) for b, snap in sorted(shown, key=lambda item: item[0])]
    lines.append(f"+{len(rest):,} more bulks: {_count_by_status(rest)}")
    return lines


def _outcomes(bulks: Sequence[tuple[int, BulkSnapshot]]) -> str:
    counts: dict[str, int] = {}
    for _, snap in bulks:
        if snap.done:
            kind = bulk_outcome(snap)
            counts[kind] = counts.get(kind, 0) + 1
    order = list(OUTCOME_WORDS)
    return ", ".join(
        f"{counts[k]:,} {OUTCOME_WORDS[k]}" for k in sorted(counts, key=lambda k: order.index(k))
    )


def _verdict(snapshot: WatchSnapshot, state: WatchState, bulks: Sequence[tuple[int, BulkSnapshot]]) -> str:
    done = sum(1 for _, snap in bulks if snap.done)
    progress = f"{done:,} of {plural(len(bulks), 'bulk')} done"
    outcomes = _outcomes(bulks)
    if state == "completed":
        return f"🏁 *Completed*{SEP}{plural(len(bulks), 'bulk')}: {outcomes}"
    if state == "stopped":
        return f"⏹️ *Stopped* before the import completed{SEP}{progress}"
    if state == "expired":
        return f"⌛ *Expired* before the import completed{SEP}{progress}"
    if state == "error":
        return f"🚫 *Stopped: MPC refused the credentials*{SEP}{progress}"
    if snapshot.failing:
        return f"🚨 *MPC is failing*{SEP}{plural(snapshot.failures, 'failed poll')} in a row{SEP}{progress}"
    if not bulks:
        return "⏳ *Waiting for the first answer from MPC*"
    return f"⏳ *In progress*{SEP}{progress}"


def _totals_text(totals: ImportTotals) -> str:
    return (
        f"*Totals* {totals.members_created_number:,} created{SEP}"
        f"{totals.members_updated_number:,} updated{SEP}"
        f"{totals.members_with_validation_errors_number:,} invalid{SEP}"
        f"{totals.members_in_payload_number:,} in payloads"
    )


class CardControls(msgspec.Struct, kw_only=True, frozen=True):
    """The card carries buttons (the Slack app is set up to receive their clicks)."""

    muted: bool = False
    """The watch's progress replies are muted: the button offers to unmute."""


def render_card(
    watch: WatchSpec, snapshot: WatchSnapshot | None, state: WatchState, controls: CardControls | None = None
) -> CardRender:
    """The import card of ``watch`` as its latest ``snapshot`` and ``state`` describe it; with
    ``controls``, an active watch's card ends with its buttons (Stop, Refresh now, Mute)."""
    snap = snapshot or WatchSnapshot()
    rev = card_rev(snap)
    bulks = _bulks(watch, snap)
    verdict = _verdict(snap, state, bulks)
    blocks: list[Block] = [
        _header(
            f"📦 {watch.loyalty_club_slug}{SEP}import {watch.import_id}",
            block_id=f"{CARD_BLOCK_ID_PREFIX}{rev}",
        ),
        _section(f"*Club* {code(watch.loyalty_club_slug)}   *Import* {code(watch.import_id)}\n{verdict}"),
    ]
    if bulks:
        sections = pack_lines(
            bulk_lines(watch, snap),
            max_chunks=CARD_BULK_SECTIONS,
            more=lambda n: f"+{n:,} more bulks",
            heading="*Bulks*",
        )
        blocks += [_section(text) for text in sections]
        blocks.append(_section(_totals_text(import_totals(snap))))
    changed = max((b.last_changed for b in snap.bulks.values()), default=0.0)
    footer = [f"watch {code(watch.id)}"]
    if changed:
        footer.append(f"last change {_when(changed)}")
    footer.append("every event is in the thread 🧵")
    if controls is not None and controls.muted:
        footer.append("progress replies muted 🔕")
    blocks.append(_context(SEP.join(footer)))
    if controls is not None and state == "active":
        blocks.append(card_actions(watch.id, muted=controls.muted))
    plain_verdict = verdict.replace("*", "")
    message = _message(f"📦 {watch.loyalty_club_slug} import {watch.import_id}: {plain_verdict}", blocks)
    return CardRender(message=message, rev=rev, digest=message_digest(message))


# ---------------------------------------------------------------------------- one event


class _Summary(msgspec.Struct, kw_only=True):
    emoji: str
    title: str
    details: str = ""


def _bulk_counts(view: BulkView) -> str:
    counts = _counts(
        view.members_created_number, view.members_updated_number, view.members_with_validation_errors_number
    )
    payload = view.members_in_payload_number
    return f"{counts} of {payload:,}" if payload else counts


def _retries(data: EventData) -> int:
    if isinstance(data.retries, int):
        return data.retries
    return data.bulk.retries if isinstance(data.bulk, BulkView) else 0


def _bulk_summary(event: Event) -> _Summary:
    data = event.data
    bulk = f"Bulk {data.bulk_id}"
    view = data.bulk if isinstance(data.bulk, BulkView) else None
    counts = _bulk_counts(view) if view is not None else ""
    status = data.status if isinstance(data.status, str) else None
    previous = data.previous_status if isinstance(data.previous_status, str) else None
    max_retries = data.max_retries if isinstance(data.max_retries, int) else MAX_RETRIES
    retries = f"{_retries(data)}/{max_retries}"
    kind = event.type
    if kind == "bulk.discovered":
        payload = f"{view.members_in_payload_number:,} members" if view is not None else ""
        return _Summary(emoji="🆕", title=f"{bulk} discovered", details=_join(status_word(status), payload))
    if kind == "bulk.started":
        again = previous == "waiting_for_retry"
        return _Summary(
            emoji=EVENT_EMOJI[kind],
            title=f"{bulk} {'working again' if again else 'started'}",
            details=_join(f"retry {retries}" if again else "", counts if again else ""),
        )
    if kind == "bulk.retrying":
        return _Summary(emoji=EVENT_EMOJI[kind], title=f"{bulk} waiting for retry {retries}", details=counts)
    if kind == "bulk.finished":
        outcome = data.outcome if isinstance(data.outcome, str) else "clean"
        return _Summary(
            emoji=OUTCOME_EMOJI.get(outcome, "✅"),
            title=f"{bulk} finished {OUTCOME_WORDS.get(outcome, outcome)}",
            details=counts,
        )
    if kind == "bulk.failed":
        return _Summary(
            emoji=EVENT_EMOJI[kind], title=f"{bulk} failed", details=_join(f"after {retries} retries", counts)
        )
    if kind == "bulk.progress":
        return _Summary(
            emoji=EVENT_EMOJI[kind], title=f"{bulk} progress", details=_join(status_word(status), counts)
        )
    if kind == "bulk.missing":
        if status is None:
            return _Summary(emoji=MISSING_BULK, title=f"{bulk} not found", details="MPC answers 404 for it")
        return _Summary(
            emoji=MISSING_BULK,
            title=f"{bulk} is gone",
            details=f"MPC no longer lists it (last seen {status_word(status)})",
        )
    if kind == "watch.stalled":
        unchanged = data.unchanged_for_s if isinstance(data.unchanged_for_s, float | int) else 0.0
        return _Summary(
            emoji=EVENT_EMOJI[kind],
            title=f"{bulk} stalled",
            details=f"no change for {_duration(unchanged)}, still {status_word(status)}",
        )
    return _Summary(emoji=EVENT_EMOJI.get(kind, "•"), title=f"{bulk} {kind}", details=status_word(status))


def _join(*parts: str) -> str:
    return SEP.join(part for part in parts if part)


def _watch_summary(event: Event) -> _Summary:
    data = event.data
    kind = event.type
    if kind == "import.completed":
        count = data.bulk_count if isinstance(data.bulk_count, int) else 0
        by_outcome = data.bulks_by_outcome if isinstance(data.bulks_by_outcome, dict) else {}
        order = list(OUTCOME_WORDS)
        outcomes = ", ".join(
            f"{n:,} {OUTCOME_WORDS.get(k, k)}"
            for k, n in sorted(
                by_outcome.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99
            )
        )
        return _Summary(
            emoji=EVENT_EMOJI[kind], title="Import completed", details=f"{plural(count, 'bulk')}: {outcomes}"
        )
    reason = fit(data.reason, MAX_REASON_CHARS) if isinstance(data.reason, str) else ""
    failures = data.failures if isinstance(data.failures, int) else 0
    if kind == "watch.upstream_failing":
        if reason.startswith(UNAUTHORIZED_REASON):
            return _Summary(
                emoji="🚫", title="MPC refused the credentials", details=_join("the watch stopped", reason)
            )
        return _Summary(
            emoji=EVENT_EMOJI[kind],
            title="MPC is failing",
            details=_join(f"{plural(failures, 'failed poll')} in a row", reason, "the bridge keeps trying"),
        )
    if kind == "watch.upstream_recovered":
        return _Summary(
            emoji=EVENT_EMOJI[kind],
            title="MPC answers again",
            details=f"after {plural(failures, 'failed poll')}",
        )
    if kind == "watch.expired":
        expires = data.expires_at if isinstance(data.expires_at, str) else ""
        return _Summary(
            emoji=EVENT_EMOJI[kind],
            title="Watch expired",
            details=_join(expires, "before every bulk was done"),
        )
    if kind == "webhook.test":
        return _Summary(emoji=EVENT_EMOJI[kind], title="Test event", details="the bridge can post here")
    return _Summary(emoji=EVENT_EMOJI.get(kind, "•"), title=kind, details=reason)


def summarize_event(event: Event) -> tuple[str, str]:
    """The event as one line: (mrkdwn, plain text)."""
    summary = _bulk_summary(event) if isinstance(event.data.bulk_id, int) else _watch_summary(event)
    mrkdwn = f"{summary.emoji} *{escape(summary.title)}*"
    plain = f"{summary.emoji} {summary.title}"
    if summary.details:
        mrkdwn += SEP + escape(summary.details)
        plain += SEP + summary.details
    return mrkdwn, plain


def _error_line(group: ErrorGroup) -> str:
    examples = [code(example, 90) for example in group.examples[:EXAMPLES_SHOWN]]
    if group.count > len(examples):
        examples.append("…")
    members = plural(group.count, "member")
    shown = f": {', '.join(examples)}" if examples else ""
    return f"• {code(group.property, 70)}{SEP}{code(group.error, 70)} — {members}{shown}"


def error_sections(summary: ErrorSummary) -> list[str]:
    """Validation errors grouped by (property, error code), largest first, cut with "+N more"."""
    groups = summary.groups[:ERROR_GROUPS_SHOWN]
    omitted = summary.omitted + max(0, len(summary.groups) - ERROR_GROUPS_SHOWN)
    lines = [_error_line(group) for group in groups]
    if omitted:
        lines.append(f"+{omitted:,} more error groups")

    def more(n: int) -> str:
        # The "+omitted" line is always among the lines cut, so it is counted once here.
        return f"+{n - (1 if omitted else 0) + omitted:,} more error groups"

    return pack_lines(
        lines,
        max_chunks=ERROR_SECTIONS,
        more=more,
        heading="*Validation errors* (by property and error code)",
    )


def _context_line(event: Event) -> str:
    data = event.data
    parts = [f"{code(data.loyalty_club_slug)} import {code(data.import_id)}"]
    if isinstance(data.bulk_id, int):
        bulk = f"bulk {data.bulk_id}"
        if isinstance(data.bulk, BulkView):
            bulk += f", request #{data.bulk.request_number}"
        parts.append(bulk)
    previous, status = data.previous_status, data.status
    if isinstance(previous, str) and isinstance(status, str) and previous != status:
        parts.append(f"{status_word(previous)} {ARROW} {status_word(status)}")
    parts.append(f"event {code(data.event_id)}")
    return SEP.join(parts)


def event_errors(event: Event) -> ErrorSummary | None:
    """The (masked) errors summary an event carries, if any."""
    data = event.data
    if not isinstance(data.errors_summary, list) or not data.errors_summary:
        return None
    omitted = data.errors_summary_omitted if isinstance(data.errors_summary_omitted, int) else 0
    return ErrorSummary(groups=data.errors_summary, omitted=omitted)


def render_event(
    event: Event, *, errors: ErrorSummary | None = None, bulks: Sequence[str] = ()
) -> SlackMessage:
    """One event as a message: summary line, details, validation errors, a context line.

    ``errors`` replaces the event's own (masked) summary — the caller passes unmasked groups only
    when ``BRIDGE_SLACK_SHOW_PII`` allows; ``bulks`` (lines from :func:`bulk_lines`) lists the
    import's bulks where no card shows them (webhook mode).
    """
    mrkdwn, plain = summarize_event(event)
    blocks: list[Block] = [_section(mrkdwn)]
    totals = event.data.totals
    if isinstance(totals, ImportTotals):
        blocks.append(_section(_totals_text(totals)))
    shown = errors if errors is not None else event_errors(event)
    if shown is not None and (shown.groups or shown.omitted):
        blocks += [_section(text) for text in error_sections(shown)]
    if bulks:
        sections = pack_lines(
            bulks, max_chunks=EVENT_BULK_SECTIONS, more=lambda n: f"+{n:,} more bulks", heading="*Bulks*"
        )
        blocks += [_section(text) for text in sections]
    blocks.append(_context(_context_line(event)))
    data = event.data
    return _message(f"{plain} — {data.loyalty_club_slug} import {data.import_id}", blocks)


def broadcast(event: Event) -> bool:
    """Whether a thread reply for this event is also shown in the channel."""
    return event.type in BROADCAST_TYPES
