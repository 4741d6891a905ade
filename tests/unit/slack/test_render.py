"""The Slack renderer: golden payloads for every event type and card state, Slack's limits at
their edges, masking, and properties over arbitrary input (hypothesis).

Goldens live in ``golden/<name>.json`` (the payload) beside ``golden/<name>.txt`` (the same message
as plain text, for reviewers). ``BRIDGE_UPDATE_GOLDEN=1 pytest tests/unit/slack`` rewrites them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.core.member_errors import ErrorSummary
from bridge.core.model import BulkSnapshot, ErrorGroup, Event, WatchSnapshot, WatchSpec
from bridge.slack.format import MAX_BLOCKS, MAX_HEADER_TEXT, MAX_SECTION_TEXT, slack_len
from bridge.slack.plain import message_lines, message_text
from bridge.slack.render import (
    CARD_MAX_BULK_LINES,
    ERROR_GROUPS_SHOWN,
    SlackMessage,
    broadcast,
    bulk_lines,
    card_rev,
    render_card,
    render_event,
)
from bridge_tools.slack_standin import validate_message
from tests.builders import watch
from tests.unit.core.test_diff_properties import play, scenarios
from tests.unit.slack.samples import CARDS, EVENTS, MORE_EVENTS, UNMASKED, WATCH, event, snap

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BRIDGE_UPDATE_GOLDEN") == "1"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def payload(message: SlackMessage) -> dict[str, Any]:
    built: dict[str, Any] = msgspec.to_builtins(message)
    return built


def check_limits(message: SlackMessage) -> None:
    """What Slack checks (via the stand-in's independent validator) and what the bridge promises."""
    built = payload(message)
    assert validate_message(built) == []
    assert message.text.strip()
    assert len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        if block["type"] == "section":
            assert slack_len(block["text"]["text"]) <= MAX_SECTION_TEXT
        if block["type"] == "header":
            assert slack_len(block["text"]["text"]) <= MAX_HEADER_TEXT


def golden(name: str, message: SlackMessage) -> None:
    check_limits(message)
    built = payload(message)
    encoded = msgspec.json.format(msgspec.json.encode(built, order="sorted"), indent=2).decode() + "\n"
    text = message_text(built) + "\n"
    path = GOLDEN / f"{name}.json"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no golden {path.name}: run with BRIDGE_UPDATE_GOLDEN=1 and review it")
        path.write_text(encoded)
        (GOLDEN / f"{name}.txt").write_text(text)
    assert encoded == path.read_text(), f"{name} changed: review, then BRIDGE_UPDATE_GOLDEN=1"
    assert text == (GOLDEN / f"{name}.txt").read_text()


# ---------------------------------------------------------------------------- goldens


@pytest.mark.parametrize("name", sorted({**EVENTS, **MORE_EVENTS}))
def test_every_event_type_renders_its_golden_payload(name: str) -> None:
    golden(f"event-{name}", render_event({**EVENTS, **MORE_EVENTS}[name]))


@pytest.mark.parametrize("name", sorted(CARDS))
def test_every_card_state_renders_its_golden_payload(name: str) -> None:
    spec, snapshot, state = CARDS[name]
    golden(name, render_card(spec, snapshot, state).message)  # type: ignore[arg-type]


def test_the_unmasked_errors_and_a_webhook_completion_render_their_golden_payloads() -> None:
    golden("event-bulk.finished-show-pii", render_event(EVENTS["bulk.finished"], errors=UNMASKED))
    completed = CARDS["card-completed"][1]
    golden(
        "event-import.completed-webhook",
        render_event(EVENTS["import.completed"], bulks=bulk_lines(WATCH, completed)),
    )


# ---------------------------------------------------------------------------- what readers rely on


def test_the_card_names_each_bulk_by_its_id_with_its_status_word_on_one_line() -> None:
    spec, snapshot, _ = CARDS["card-completed"]
    lines = message_lines(payload(render_card(spec, snapshot, "completed").message))
    assert "✅ Bulk 4101 · finished · 10 created, 3 updated, 0 invalid · retries 0/5 · request #1" in lines
    assert "⚠️ Bulk 4102 · finished · 15 created, 2 updated, 3 invalid · retries 1/5 · request #2" in lines
    assert "❌ Bulk 4103 · failed · 0 created, 0 updated, 0 invalid · retries 5/5 · request #3" in lines
    assert "⚪ Bulk 4104 · finished · 0 created, 0 updated, 8 invalid · retries 0/5 · request #4" in lines
    assert any(line.startswith("❓ Bulk 4105 · missing · last seen working") for line in lines)
    assert "🏁 Completed · 5 bulks: 1 clean, 1 with errors, 1 nothing imported, 1 failed, 1 missing" in lines


def test_only_failed_and_completed_replies_are_broadcast() -> None:
    assert {kind for kind, e in EVENTS.items() if broadcast(e)} == {"bulk.failed", "import.completed"}


def test_the_failed_reply_names_its_bulk_in_the_fallback_text_and_the_blocks() -> None:
    message = render_event(EVENTS["bulk.failed"])
    assert message.text.startswith("❌ Bulk 4103 failed · after 5/5 retries")
    assert message_lines(payload(message))[0].startswith("❌ Bulk 4103 failed")


def test_the_card_revision_orders_renders_and_the_header_carries_it() -> None:
    spec, snapshot, state = CARDS["card-completed"]
    render = render_card(spec, snapshot, state)  # type: ignore[arg-type]
    assert render.rev == card_rev(snapshot) == 1 + 3 + 5 + 4 + 3 + 5
    assert render.message.blocks[0]["block_id"] == f"card-rev-{render.rev}"
    assert render.digest == render_card(spec, snapshot, state).digest  # type: ignore[arg-type]
    assert render.digest != render_card(spec, snapshot, "active").digest


@pytest.mark.parametrize("special", ["<!channel>", "a & b", "`rm -rf`", "*bold*", "line\nbreak"])
def test_upstream_text_cannot_mention_format_or_break_out_of_its_code_span(special: str) -> None:
    spec = watch(import_id="imp")
    group = ErrorGroup(property=special, error=special, count=1, examples=[special])
    message = render_event(EVENTS["bulk.finished"], errors=ErrorSummary(groups=[group]))
    check_limits(message)
    section = message.blocks[1]["text"]["text"]
    assert "<!channel>" not in section and " & " not in section
    assert "\n" not in section.split("\n", 1)[1].split(" — ")[0]  # the group stays on its line
    assert spec.import_id == "imp"


# ---------------------------------------------------------------------------- masking


def test_the_event_s_masked_examples_are_shown_and_no_e_mail_is_unmasked() -> None:
    built = payload(render_event(EVENTS["bulk.finished"]))
    text = msgspec.json.encode(built).decode()
    assert "j***@example.com" in text and "+47******12" in text
    assert [m for m in EMAIL.findall(text) if "*" not in m.split("@")[0]] == []


def test_unmasked_examples_appear_only_when_given_and_never_in_the_fallback_text() -> None:
    message = render_event(EVENTS["bulk.finished"], errors=UNMASKED)
    assert "joe.bloggs@example.com" in message_text(payload(message))
    assert "@" not in message.text


def test_the_card_never_shows_a_member() -> None:
    spec, snapshot, state = CARDS["card-completed"]
    text = msgspec.json.encode(render_card(spec, snapshot, state).message).decode()  # type: ignore[arg-type]
    assert "@" not in text


# ---------------------------------------------------------------------------- limits at the edges


def big_snapshot(count: int, status: str = "finished") -> WatchSnapshot:
    bulks = {
        4000 + i: snap(status, 2, request_number=i, payload=1000, created=900, updated=100)
        for i in range(count)
    }
    bulks[4007] = snap("failed", 3, request_number=7, retries=5)
    bulks[4299 if count >= 300 else 4001] = snap("waiting_for_retry", 2, retries=2)
    return WatchSnapshot(bulks=bulks)


def test_a_300_bulk_card_fits_keeps_the_telling_bulks_and_counts_the_rest() -> None:
    render = render_card(WATCH, big_snapshot(300), "active")
    check_limits(render.message)
    lines = message_lines(payload(render.message))
    bulk_rows = [line for line in lines if " Bulk " in line]
    assert len(bulk_rows) == CARD_MAX_BULK_LINES - 1
    assert any("Bulk 4007 · failed" in line for line in bulk_rows)
    assert any("Bulk 4299 · waiting for retry" in line for line in bulk_rows)
    assert "+251 more bulks: 251 finished" in lines
    assert "In progress · 299 of 300 bulks done" in " ".join(lines)


def test_1000_named_bulks_never_seen_still_fit() -> None:
    spec = watch(tuple(range(1, 1001)))
    render = render_card(spec, WatchSnapshot(), "active")
    check_limits(render.message)
    assert "+951 more bulks: 951 not seen yet" in message_lines(payload(render.message))


def test_1000_distinct_error_groups_are_cut_with_a_count_never_refused() -> None:
    groups = [
        ErrorGroup(
            property=f"property_{i:04d}", error="x" * 64, count=1000 - i, examples=[f"m{i}***@e.com"] * 5
        )
        for i in range(1000)
    ]
    message = render_event(EVENTS["bulk.finished"], errors=ErrorSummary(groups=groups, omitted=7))
    check_limits(message)
    lines = message_lines(payload(message))
    shown = [line for line in lines if line.startswith("• ")]
    assert len(shown) <= ERROR_GROUPS_SHOWN
    more = next(line for line in lines if line.startswith("+") and "more error groups" in line)
    assert int(more[1:].split()[0].replace(",", "")) == 1000 + 7 - len(shown)


def test_long_names_are_cut_to_the_header_and_section_limits() -> None:
    spec = watch(loyalty_club_slug="c" * 64, import_id="i" * 64, id="w" * 200)
    render = render_card(spec, big_snapshot(3), "active")
    check_limits(render.message)
    header = render.message.blocks[0]["text"]["text"]
    assert slack_len(header) <= MAX_HEADER_TEXT
    long_reason = event("watch.upstream_failing", 1, reason="r" * 10_000, failures=5)
    check_limits(render_event(long_reason))


# ---------------------------------------------------------------------------- properties

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=300)
groups = st.builds(
    ErrorGroup,
    property=texts,
    error=texts,
    count=st.integers(min_value=1, max_value=10_000),
    examples=st.lists(texts, max_size=5),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(groups, max_size=60),
    st.integers(min_value=0, max_value=2000),
    st.sampled_from(sorted(EVENTS)),
)
def test_any_errors_summary_renders_within_slack_s_limits(
    found: list[ErrorGroup], omitted: int, kind: str
) -> None:
    check_limits(render_event(EVENTS[kind], errors=ErrorSummary(groups=found, omitted=omitted)))


bulk_snapshots = st.builds(
    BulkSnapshot,
    status=st.sampled_from([None, "waiting", "working", "finished", "failed", "waiting_for_retry"]),
    request_number=st.integers(min_value=0, max_value=10**9),
    payload=st.integers(min_value=0, max_value=10**6),
    created=st.integers(min_value=0, max_value=10**6),
    updated=st.integers(min_value=0, max_value=10**6),
    invalid=st.integers(min_value=0, max_value=10**6),
    retries=st.integers(min_value=0, max_value=5),
    errors_digest=st.sampled_from(["", "abc"]),
    seq=st.integers(min_value=0, max_value=50),
    last_changed=st.floats(min_value=0, max_value=4e9),
    missing=st.booleans(),
    stalled=st.booleans(),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.integers(min_value=1, max_value=2**53 - 1), bulk_snapshots, max_size=400),
    st.sampled_from(["active", "completed", "stopped", "expired", "error"]),
    st.text(min_size=1, max_size=64),
    st.text(min_size=1, max_size=64),
)
def test_any_card_renders_within_slack_s_limits(
    bulks: dict[int, BulkSnapshot], state: str, slug: str, import_id: str
) -> None:
    spec = watch(loyalty_club_slug=slug, import_id=import_id)
    render = render_card(spec, WatchSnapshot(bulks=bulks), state)  # type: ignore[arg-type]
    check_limits(render.message)
    lines = message_lines(payload(render.message))
    listed = [line for line in lines if " Bulk " in line]
    assert len(listed) == min(len(bulks), CARD_MAX_BULK_LINES if len(bulks) <= CARD_MAX_BULK_LINES else 49)


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_every_event_raises_the_card_revision_by_one_and_every_message_fits(
    scenario: tuple[WatchSpec, list[Any]],
) -> None:
    spec, observations = scenario
    snapshots, events = play(spec, observations)
    assert card_rev(snapshots[-1]) - card_rev(snapshots[0]) == len(events)
    for snapshot in snapshots[1:]:
        assert snapshot is not None
        check_limits(render_card(spec, snapshot, snapshot.state).message)
    for found in events:
        check_limits(render_event(found))
        assert isinstance(found, Event)
