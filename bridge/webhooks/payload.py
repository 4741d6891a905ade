"""The webhook body: the stored event, byte for byte, and never 20 kB or more.

The diff engine already keeps events small (``errors_summary`` is a bounded summary of
``members_errors``), so :func:`bounded_body` returns the stored bytes unchanged in practice. It is
the last guard at the edge: should a body ever be too large, it is re-encoded with less detail
(error examples, then error groups, then upstream free text), always as valid JSON, and the
same stored body always gives the same bytes, so every retry carries the same payload.
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import UNSET

from bridge.core.codec import decode_event, encode_event
from bridge.core.model import BulkView, EventData

MAX_PAYLOAD_BYTES: Final = 20_000
"""An event body (the webhook payload) stays under 20 kB: summarised, never cut into invalid JSON."""
FREE_TEXT_MAX_CHARS: Final = 200
"""Upstream strings kept whole until a body has to shrink (``operation``, ``created_at``, ``reason``)."""


def _without_examples(data: EventData) -> EventData:
    if isinstance(data.errors_summary, list):
        groups = [msgspec.structs.replace(g, examples=[]) for g in data.errors_summary]
        return msgspec.structs.replace(data, errors_summary=groups)
    return data


def _without_groups(data: EventData) -> EventData:
    if isinstance(data.errors_summary, list) and data.errors_summary:
        omitted = data.errors_summary_omitted if isinstance(data.errors_summary_omitted, int) else 0
        return msgspec.structs.replace(
            data, errors_summary=[], errors_summary_omitted=omitted + len(data.errors_summary)
        )
    return data


def _cut(value: str) -> str:
    return value[:FREE_TEXT_MAX_CHARS]


def _short_free_text(data: EventData) -> EventData:
    bulk = data.bulk
    if isinstance(bulk, BulkView):
        operation = _cut(bulk.operation) if isinstance(bulk.operation, str) else bulk.operation
        created = _cut(bulk.created_at) if isinstance(bulk.created_at, str) else bulk.created_at
        bulk = msgspec.structs.replace(bulk, operation=operation, created_at=created)
    reason = _cut(data.reason) if isinstance(data.reason, str) else data.reason
    return msgspec.structs.replace(data, bulk=bulk, reason=reason)


def _without_bulk(data: EventData) -> EventData:
    return msgspec.structs.replace(data, bulk=UNSET)


_SHRINK_STEPS: Final = (_without_examples, _without_groups, _short_free_text, _without_bulk)


def bounded_body(body: bytes) -> bytes:
    """``body`` itself when under :data:`MAX_PAYLOAD_BYTES`, else the event with less detail."""
    if len(body) < MAX_PAYLOAD_BYTES:
        return body
    event = decode_event(body)
    data = event.data
    encoded = body
    for step in _SHRINK_STEPS:
        data = step(data)
        encoded = encode_event(msgspec.structs.replace(event, data=data))
        if len(encoded) < MAX_PAYLOAD_BYTES:
            break
    return encoded
