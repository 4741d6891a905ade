"""Deliveries: job arguments, destinations and what a notifier answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Final, Literal, Protocol, TypeAlias

import msgspec

from bridge.core.model import Event, MpcBulk

DELIVER_FUNCTION: Final = "deliver"
"""Name of the arq function that delivers one event to one destination."""
JOB_ID_PREFIX: Final = "dlv:"

LOG: Final = "log"
SLACK: Final = "slack"
SUBSCRIPTION: Final = "sub"
SUBSCRIPTION_PREFIX: Final = SUBSCRIPTION + ":"


Dispatch: TypeAlias = Callable[[str, Iterable[str]], Awaitable[int]]
"""Enqueue one delivery job per destination of a recorded event (safe to repeat: a job exists at
most once); answers how many were new. The worker's queue provides it, to the poll loop, the
sweeper and the API."""


def job_id(event_id: str, destination: str) -> str:
    """One arq job per (event, destination): enqueueing it twice is a no-op."""
    return f"{JOB_ID_PREFIX}{event_id}:{destination}"


def destination_kind(destination: str) -> str:
    return destination.split(":", 1)[0]


class DeliveryJob(msgspec.Struct, kw_only=True, frozen=True):
    """The argument of a ``deliver`` job (no secret, no personal data: ids only)."""

    event_id: str
    destination: str


class SendResult(msgspec.Struct, kw_only=True, frozen=True):
    outcome: Literal["delivered", "retry", "failed"]
    retry_after_s: float | None = None
    """For ``retry``: when to try again (from ``Retry-After``, else the notifier's backoff)."""
    detail: str = ""

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
