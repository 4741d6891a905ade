"""Masking member identifiers and summarising validation errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.member_errors import MAX_EXAMPLES_PER_GROUP, MAX_GROUPS, digest, mask_identifier, summarize
from tests.builders import MEMBERS_ERRORS


@pytest.mark.parametrize(
    ("identifier", "masked"),
    [
        ("j@example.com", "j***@example.com"),
        ("joe.bloggs@example.com", "j***@example.com"),
        ("+4712345612", "+47******12"),
        ("004712345612", "004*******12"),
        ("x", "***"),
        ("member-42", "m***"),
    ],
)
def test_identifiers_are_masked(identifier: str, masked: str) -> None:
    assert mask_identifier(identifier) == masked


@given(st.emails())
def test_no_masked_email_shows_more_than_one_character_of_its_local_part(email: str) -> None:
    local = mask_identifier(email).rpartition("@")[0]
    assert local[1:] == "***"


def test_errors_are_grouped_by_property_and_code_counting_members() -> None:
    groups, omitted = summarize(MEMBERS_ERRORS)
    by_key = {(g.property, g.error): g for g in groups}
    assert by_key[("language", "value_not_match")].count == 2
    assert by_key[("birth_date", "invalid_format")].count == 1
    assert by_key[("gender", "value_not_match")].examples == ["+47******12"]
    assert groups[0].property == "language"  # the largest group first
    assert omitted == 0


def test_unmasked_summary_shows_identifiers() -> None:
    groups, _ = summarize(MEMBERS_ERRORS, mask=False)
    assert "joe.bloggs@example.com" in groups[0].examples


def test_examples_and_groups_are_bounded() -> None:
    errors = {
        f"m{i}@x.io": {"properties": [{"error": {f"p{i % 40}": [{"error": "bad"}]}}]} for i in range(400)
    }
    groups, omitted = summarize(errors)
    assert len(groups) == MAX_GROUPS and omitted == 40 - MAX_GROUPS
    assert all(len(g.examples) <= MAX_EXAMPLES_PER_GROUP for g in groups)


@pytest.mark.parametrize(
    "odd", [[], {"a@b.co": "text"}, {"a@b.co": {"properties": "x"}}, {"a@b.co": {}}, [{"x": 1}]]
)
def test_unexpected_shapes_are_summarised_not_rejected(odd: Any) -> None:
    groups, _ = summarize(odd)
    assert all(g.count >= 1 for g in groups)


def test_digest_is_stable_and_empty_for_no_errors() -> None:
    assert digest({}) == digest([]) == digest(None) == ""
    reordered = dict(reversed(list(MEMBERS_ERRORS.items())))
    assert digest(MEMBERS_ERRORS) == digest(reordered) != ""
