"""arq's job and result envelopes as msgpack (msgspec), on both sides: never pickle.

Its own module because both the Redis client factory (:mod:`bridge.redis_url`, used by the API)
and the worker need it.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

_job_encoder: Final = msgspec.msgpack.Encoder(enc_hook=repr)


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq's job and result envelope as msgpack; anything not msgpack-able becomes its repr."""
    return _job_encoder.encode(data)


def deserialize_job(raw: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.msgpack.decode(raw)
    return decoded
