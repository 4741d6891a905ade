"""Every webhook payload a test receives is checked against its published JSON Schema.

The schemas are the ones the API publishes (``GET /v1/event-types``, the OpenAPI ``webhooks``
section): generated from the payload types, validated here with ``jsonschema`` (Draft 2020-12),
a validator written independently of msgspec. A payload that does not validate is a violation,
and so is an event type that is sent but not published.

The test suite registers a :class:`PayloadContract` with every in-process
:class:`~bridge_tools.webhook_receiver.WebhookReceiver` (``tests/conftest.py``): a test whose
receivers got a violation fails.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

import msgspec
from jsonschema import Draft202012Validator

from bridge.core.catalog import EVENT_CATALOG
from bridge.webhooks.signing import HEADER_ID

MAX_REPORTED: Final = 5
"""Violations quoted in a failure message (the count says how many there were)."""


def published_validators() -> dict[str, Draft202012Validator]:
    validators = {}
    for event_type, info in EVENT_CATALOG.items():
        schema = info.schema()
        Draft202012Validator.check_schema(schema)
        validators[event_type] = Draft202012Validator(schema)
    return validators


_VALIDATORS: Final = published_validators()


def violation(body: bytes) -> str | None:
    """Why ``body`` is not a published payload, or ``None`` when it is one."""
    try:
        payload: Any = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        return f"not JSON (or nested too deeply): {exc}"
    if not isinstance(payload, dict):
        return f"not a JSON object: {type(payload).__name__}"
    event_type = payload.get("type")
    validator = _VALIDATORS.get(event_type) if isinstance(event_type, str) else None
    if validator is None:
        return f"event type {event_type!r} is sent but not published"
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        return f"{event_type}: {where}: {first.message}"
    return None


class PayloadContract:
    """Checks every delivery a receiver records (a request carrying ``webhook-id``)."""

    def __init__(self) -> None:
        self.checked: Counter[str] = Counter()
        self.violations: list[str] = []

    def check(self, body: bytes) -> None:
        problem = violation(body)
        if problem is not None:
            self.violations.append(problem)
            return
        self.checked[msgspec.json.decode(body)["type"]] += 1  # valid: a published type

    def observe(self, headers: dict[str, str], body: bytes) -> None:
        if HEADER_ID in headers:
            self.check(body)

    def failure(self) -> str | None:
        """A failure message when any payload broke the contract."""
        if not self.violations:
            return None
        shown = "\n  ".join(self.violations[:MAX_REPORTED])
        return f"{len(self.violations)} webhook payload(s) break the published schemas:\n  {shown}"
