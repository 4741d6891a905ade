"""Validation errors of a bulk: a digest to detect change, a grouped summary, masked identifiers.

MPC reports invalid members as ``members_errors``: an object keyed by the member's identifier
(e-mail or msisdn) whose ``properties`` list holds ``{"error": {property: [{"error": code, ...}]}}``.
The summary groups members by (property, error code) so a reader sees *what* went wrong, and
shows a few masked identifiers per group so they can find the members without the list
becoming personal data in a Slack channel or a webhook log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from bridge.core.model import ErrorGroup

MAX_EXAMPLES_PER_GROUP: Final = 5
"""Identifiers shown per (property, error) group."""
MAX_GROUPS: Final = 20
"""Groups kept in an event payload (20 x ~700 bytes at most keeps it under 20 kB); the rest are
counted in ``errors_summary_omitted``."""
MAX_LABEL_CHARS: Final = 64
"""Property names and error codes longer than this are cut: they come from upstream verbatim."""
MAX_IDENTIFIER_CHARS: Final = 80
UNKNOWN: Final = "unknown"
DIGEST_CHARS: Final = 16

_MASK: Final = "*"
_PHONE_KEEP_HEAD: Final = 3
_PHONE_KEEP_TAIL: Final = 2
_PHONE_MIN_DIGITS: Final = 6


def digest(members_errors: Any) -> str:
    """A short stable digest of the errors; ``""`` when there are none."""
    if not members_errors:
        return ""
    encoded = msgspec.json.encode(members_errors, order="sorted")
    return hashlib.sha256(encoded).hexdigest()[:DIGEST_CHARS]


def mask_identifier(identifier: str) -> str:
    """``joe@example.com`` -> ``j***@example.com``; ``+4712345612`` -> ``+47******12``."""
    identifier = identifier.strip()[:MAX_IDENTIFIER_CHARS]
    if "@" in identifier:
        local, _, domain = identifier.rpartition("@")
        return f"{local[:1]}{_MASK * 3}@{domain}"
    digits = sum(ch.isdigit() for ch in identifier)
    if digits >= _PHONE_MIN_DIGITS and len(identifier) > _PHONE_KEEP_HEAD + _PHONE_KEEP_TAIL:
        hidden = len(identifier) - _PHONE_KEEP_HEAD - _PHONE_KEEP_TAIL
        return identifier[:_PHONE_KEEP_HEAD] + _MASK * hidden + identifier[-_PHONE_KEEP_TAIL:]
    if len(identifier) <= 1:
        return _MASK * 3
    return identifier[:1] + _MASK * 3


def _label(value: Any) -> str:
    text = value if isinstance(value, str) else UNKNOWN
    return text.strip()[:MAX_LABEL_CHARS] or UNKNOWN


def _problems(entry: Any) -> Iterator[tuple[str, str]]:
    """(property, error code) pairs of one member's entry, tolerant of shapes MPC may send."""
    properties = entry.get("properties") if isinstance(entry, dict) else None
    if not isinstance(properties, list):
        yield (UNKNOWN, UNKNOWN)
        return
    found = False
    for item in properties:
        errors = item.get("error") if isinstance(item, dict) else None
        if not isinstance(errors, dict):
            continue
        for prop, details in errors.items():
            details = details if isinstance(details, list) else [details]
            for detail in details:
                code = detail.get("error") if isinstance(detail, dict) else detail
                name = detail.get("property", prop) if isinstance(detail, dict) else prop
                found = True
                yield (_label(name), _label(code))
    if not found:
        yield (UNKNOWN, UNKNOWN)


def _members(members_errors: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(members_errors, dict):
        for identifier, entry in members_errors.items():
            yield str(identifier), entry
    elif isinstance(members_errors, list):  # [] for "none"; a list of entries is not documented
        for index, entry in enumerate(members_errors):
            yield f"#{index + 1}", entry


class ErrorSummary(msgspec.Struct, kw_only=True, frozen=True):
    """A bulk's grouped validation errors: what ``summarize`` returns, as one value.

    Stored unmasked (``mask=False``) beside an event only when Slack may show identifiers
    (``BRIDGE_SLACK_SHOW_PII``): the event itself always carries the masked summary.
    """

    groups: list[ErrorGroup]
    omitted: int = 0
    """Groups left out (beyond :data:`MAX_GROUPS`)."""


_summary_decoder: Final = msgspec.json.Decoder(ErrorSummary)


def encode_summary(summary: ErrorSummary) -> bytes:
    return msgspec.json.encode(summary)


def decode_summary(raw: bytes) -> ErrorSummary:
    return _summary_decoder.decode(raw)


def summarize(members_errors: Any, *, mask: bool = True) -> tuple[list[ErrorGroup], int]:
    """Groups by (property, error code), largest first, and how many groups were left out.

    ``count`` is the number of members with that problem (a member counts once per group).
    """
    members: dict[tuple[str, str], list[str]] = {}
    for identifier, entry in _members(members_errors):
        shown = mask_identifier(identifier) if mask else identifier[:MAX_IDENTIFIER_CHARS]
        for key in dict.fromkeys(_problems(entry)):
            members.setdefault(key, []).append(shown)
    ordered = sorted(members.items(), key=lambda item: (-len(item[1]), item[0]))
    groups = [
        ErrorGroup(property=prop, error=code, count=len(ids), examples=ids[:MAX_EXAMPLES_PER_GROUP])
        for (prop, code), ids in ordered[:MAX_GROUPS]
    ]
    return groups, max(0, len(ordered) - MAX_GROUPS)
