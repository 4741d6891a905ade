"""Filters, destinations and the payload bound (pure)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.catalog import EVENT_CATALOG
from bridge.core.codec import encode_event
from bridge.core.model import EVENT_TYPES, BulkView, ErrorGroup, Event, EventData
from bridge.webhooks.model import (
    SubscriptionDoc,
    destination,
    event_delivery_id,
    matches,
    parse_destination,
    type_matches,
    valid_event_type_pattern,
)
from bridge.webhooks.payload import MAX_PAYLOAD_BYTES, bounded_body

URL = "https://hooks.example.com/mpc"


def event(event_type: str = "bulk.finished", slug: str = "infinity-mall", import_id: str = "imp-1") -> Event:
    return Event(
        type=event_type,  # type: ignore[arg-type]
        timestamp="2026-11-26T10:00:00.000Z",
        data=EventData(
            event_id="evt_" + "0" * 32,
            watch_id="wch_1",
            loyalty_club_slug=slug,
            import_id=import_id,
            sequence=1,
        ),
    )


def test_no_filter_matches_every_event_type() -> None:
    doc = SubscriptionDoc(url=URL)
    assert all(matches(doc, event(t)) for t in EVENT_TYPES)


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (("bulk.finished",), "bulk.finished", True),
        (("bulk.finished",), "bulk.failed", False),
        (("bulk.*",), "bulk.failed", True),
        (("bulk.*",), "import.completed", False),
        (("watch.*", "import.completed"), "import.completed", True),
        (("watch.*",), "watch.stalled", True),
        (("*",), "watch.expired", True),
        (("bulk.*",), "bulkier.thing", False),
    ],
)
def test_event_type_filters_take_exact_types_and_family_wildcards(
    patterns: tuple[str, ...], event_type: str, expected: bool
) -> None:
    assert type_matches(patterns, event_type) is expected


def test_club_and_import_filters() -> None:
    doc = SubscriptionDoc(url=URL, loyalty_club_slug="infinity-mall", import_id="imp-1")
    assert matches(doc, event())
    assert not matches(doc, event(slug="other-mall"))
    assert not matches(doc, event(import_id="imp-2"))
    club_only = SubscriptionDoc(url=URL, event_types=("bulk.*",), loyalty_club_slug="infinity-mall")
    assert matches(club_only, event(import_id="anything"))
    assert not matches(club_only, event("import.completed"))


@pytest.mark.parametrize("pattern", ["bulk.finished", "bulk.*", "watch.*", "import.*", "*", *EVENT_TYPES])
def test_valid_patterns(pattern: str) -> None:
    assert valid_event_type_pattern(pattern)


@pytest.mark.parametrize("pattern", ["bulk", "bulk.", "bulk.finish", "nope.*", "*.finished", "bulk.**", ""])
def test_invalid_patterns(pattern: str) -> None:
    assert not valid_event_type_pattern(pattern)


def test_destinations_name_the_subscription_and_an_explicit_delivery() -> None:
    assert destination("sub_1") == "sub:sub_1"
    assert parse_destination("sub:sub_1") == ("sub_1", None)
    assert parse_destination(destination("sub_1", "dlv_2")) == ("sub_1", "dlv_2")


def test_an_event_and_a_subscription_always_make_the_same_delivery_id() -> None:
    first = event_delivery_id("evt_a", "sub_1")
    assert first == event_delivery_id("evt_a", "sub_1")
    assert first.startswith("dlv_") and len(first) == 28
    assert first not in {event_delivery_id("evt_b", "sub_1"), event_delivery_id("evt_a", "sub_2")}


def finished() -> Event:
    """A complete ``bulk.finished`` event (the catalog's example): what the encoder accepts."""
    return msgspec.convert(EVENT_CATALOG["bulk.finished"].example_json(), Event)


def test_a_body_under_20_kb_is_sent_byte_for_byte() -> None:
    body = encode_event(finished())
    assert bounded_body(body) is body


texts = st.text(min_size=0, max_size=400)


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(
        st.builds(
            ErrorGroup,
            property=texts,
            error=texts,
            count=st.integers(min_value=1, max_value=10**6),
            examples=st.lists(texts, max_size=30),
        ),
        max_size=80,
    ),
    operation=st.text(max_size=30_000),
)
def test_whatever_an_event_holds_the_body_sent_is_valid_json_under_20_kb(
    groups: list[ErrorGroup], operation: str
) -> None:
    big = finished()
    view = BulkView(
        id=11,
        import_id="imp-1",
        request_number=1,
        status="finished",
        members_in_payload_number=10,
        members_created_number=1,
        members_updated_number=0,
        members_with_validation_errors_number=9,
        retries=0,
        operation=operation,
    )
    data = msgspec.structs.replace(big.data, errors_summary=groups, bulk=view)
    body = encode_event(msgspec.structs.replace(big, data=data))
    sent = bounded_body(body)
    assert len(sent) < MAX_PAYLOAD_BYTES
    decoded = msgspec.json.decode(sent, type=Event)
    assert decoded.id == big.id and decoded.type == big.type
    assert bounded_body(body) == sent  # the same stored body always gives the same bytes
    if len(body) >= MAX_PAYLOAD_BYTES and isinstance(decoded.data.errors_summary, list):
        kept = len(decoded.data.errors_summary)
        omitted = decoded.data.errors_summary_omitted
        assert kept == len(groups) or (isinstance(omitted, int) and omitted >= len(groups))


def test_a_subscription_limited_to_clubs_matches_only_their_events() -> None:
    doc = SubscriptionDoc(url=URL, clubs=("club-a", "club-c"))
    assert matches(doc, event(slug="club-a")) and matches(doc, event(slug="club-c"))
    assert not matches(doc, event(slug="club-b"))
    assert not matches(doc, event(slug="club-a-2"))  # a club, not a prefix
    # The club filter narrows within the clubs; it never widens them.
    narrowed = SubscriptionDoc(url=URL, clubs=("club-a",), loyalty_club_slug="club-b")
    assert not matches(narrowed, event(slug="club-b")) and not matches(narrowed, event(slug="club-a"))
    assert matches(SubscriptionDoc(url=URL), event(slug="club-b"))  # an admin's: every club


@given(st.lists(st.from_regex(r"[a-z0-9][a-z0-9-]{0,8}", fullmatch=True), max_size=5), st.text(max_size=12))
def test_an_event_of_a_club_outside_a_subscriptions_clubs_never_matches(clubs: list[str], slug: str) -> None:
    doc = SubscriptionDoc(url=URL, clubs=tuple(clubs))
    assert matches(doc, event(slug=slug)) == (slug in clubs)
