"""The payload contract the suite applies to every delivery: it accepts published payloads only."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.catalog import EVENT_CATALOG
from bridge_tools.payload_contract import PayloadContract, violation


@pytest.mark.parametrize("event_type", list(EVENT_CATALOG))
def test_every_published_example_is_accepted(event_type: str) -> None:
    assert violation(msgspec.json.encode(EVENT_CATALOG[event_type].example_json())) is None


def test_a_payload_missing_a_required_field_is_a_violation() -> None:
    payload = EVENT_CATALOG["bulk.finished"].example_json()
    del payload["data"]["outcome"]
    problem = violation(msgspec.json.encode(payload))
    assert problem is not None and "outcome" in problem


def test_a_payload_with_a_wrong_type_is_a_violation() -> None:
    payload = EVENT_CATALOG["bulk.started"].example_json()
    payload["data"]["position"] = "1"
    assert violation(msgspec.json.encode(payload)) is not None


def test_an_event_type_sent_but_not_published_is_a_violation() -> None:
    payload = EVENT_CATALOG["bulk.started"].example_json()
    payload["type"] = "bulk.exploded"
    assert "not published" in (violation(msgspec.json.encode(payload)) or "")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"bulk.started"',
        b"\xff\xfe",
        b"[" * 10_000 + b"]" * 10_000,
        b'{"type": NaN}',
        b'{"type": "bulk.started", "data": 1e400}',
    ],
)
def test_hostile_bodies_are_violations_not_crashes(body: bytes) -> None:
    assert violation(body) is not None


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_json_that_is_not_a_payload_is_a_violation(value: object) -> None:
    assert violation(msgspec.json.encode(value)) is not None


def test_only_deliveries_are_checked_and_the_checked_types_are_counted() -> None:
    contract = PayloadContract()
    good = msgspec.json.encode(EVENT_CATALOG["import.completed"].example_json())
    contract.observe({"content-type": "application/json"}, b"anything")  # not a delivery
    contract.observe({"webhook-id": "evt_1"}, good)
    assert contract.failure() is None and contract.checked == {"import.completed": 1}
    contract.observe({"webhook-id": "evt_2"}, b"{}")
    assert contract.failure() is not None
