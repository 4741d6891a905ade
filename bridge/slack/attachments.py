"""What Slack gets beside an event: the errors summary with member identifiers unmasked.

Only with ``BRIDGE_SLACK_SHOW_PII``, and only for the events whose message lists validation
errors. Events (which are also the webhook payloads) always carry the masked summary; this one is
stored beside the event for a few hours (:data:`bridge.store.redis_store.ATTACHMENT_TTL_S`) and
deleted once Slack has it.
"""

from __future__ import annotations

from typing import Final

import msgspec

from bridge.core import member_errors
from bridge.core.member_errors import ErrorSummary
from bridge.core.model import Event, MpcBulk

UNMASKED_ERROR_TYPES: Final = frozenset({"bulk.finished", "bulk.failed"})
"""The events whose Slack message shows validation errors, unmasked when allowed."""


class UnmaskedErrors:
    """The :class:`~bridge.delivery.model.Attacher` of the ``slack`` destination."""

    def attach(self, event: Event, bulk: MpcBulk | None) -> bytes:
        if event.type not in UNMASKED_ERROR_TYPES or bulk is None or not bulk.members_errors:
            return b""
        groups, omitted = member_errors.summarize(bulk.members_errors, mask=False)
        return member_errors.encode_summary(ErrorSummary(groups=groups, omitted=omitted))


def read_unmasked(raw: bytes | None) -> ErrorSummary | None:
    """The summary an attachment holds (``None``: none, or unreadable)."""
    if not raw:
        return None
    try:
        return member_errors.decode_summary(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
