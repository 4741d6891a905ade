"""How values cross a process boundary: events as JSON, arq's job envelopes as msgpack.

One encoder and one decoder per shape, shared, because msgspec's are fast to reuse and costly to
build. Never pickle: a job argument or a stored value is data, not code.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from bridge.core.model import Event
from bridge.core.payloads import PAYLOAD_TYPES

_event_encoder: Final = msgspec.json.Encoder()
_event_decoder: Final = msgspec.json.Decoder(Event)
_job_encoder: Final = msgspec.msgpack.Encoder(enc_hook=repr)


def encode_event(event: Event) -> bytes:
    """The event's JSON: stored once, then sent byte for byte (it is what webhooks sign).

    Written through the payload type of its event type, the one its published schema comes
    from: an event lacking a field its type requires raises ``msgspec.ValidationError`` here
    instead of reaching a receiver.
    """
    typed = msgspec.convert(msgspec.to_builtins(event), PAYLOAD_TYPES[event.type])
    return _event_encoder.encode(typed)


def decode_event(body: bytes) -> Event:
    return _event_decoder.decode(body)


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq's job and result envelope as msgpack; anything not msgpack-able becomes its repr."""
    return _job_encoder.encode(data)


def deserialize_job(raw: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.msgpack.decode(raw)
    return decoded
