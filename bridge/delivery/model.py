"""Deliveries: destinations and what a notifier answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Literal, Protocol, TypeAlias

import msgspec

from bridge.core.model import Event, MpcBulk
from bridge.store.redis_store import DeliveryRecord

LOG: Final = "log"
SLACK: Final = "slack"
SUBSCRIPTION: Final = "sub"
SUBSCRIPTION_PREFIX: Final = SUBSCRIPTION + ":"


Dispatch: TypeAlias = Callable[[str, Iterable[str]], Awaitable[int]]
"""Announce the deliveries of a recorded event, whose outbox entries were written with it (the
outbox is the delivery queue): the delivery loop of this process, or of idle workers, claims them
at once. Answers how many were announced. Provided to the poll loop and the API."""


def destination_kind(destination: str) -> str:
    return destination.split(":", 1)[0]


class SendResult(msgspec.Struct, kw_only=True, frozen=True):
    outcome: Literal["delivered", "retry", "failed"]
    retry_after_s: float | None = None
    """For ``retry``: when to try again (from ``Retry-After``, else the notifier's backoff)."""
    detail: str = ""
    record: DeliveryRecord | None = None
    """For ``delivered``: what the notifier writes beside the delivered mark, in the same step."""

    @classmethod
    def delivered(cls) -> SendResult:
        return cls(outcome="delivered")


class Delivery(msgspec.Struct, kw_only=True, frozen=True):
    """One event on its way to one destination."""

    destination: str
    event: Event
    body: bytes
    """The stored JSON of the event, byte for byte."""
    attempt: int


class Notifier(Protocol):
    """Sends one event to one kind of destination."""

    async def send(self, delivery: Delivery) -> SendResult: ...


class Attacher(Protocol):
    """What one destination needs beside an event that the event itself must not carry, decided
    when the event is recorded from the bulk as the poll fetched it (``b""``: nothing). It is
    stored with the event, in the same atomic step, and read by that destination's notifier."""

    def attach(self, event: Event, bulk: MpcBulk | None) -> bytes: ...
