"""Standard Webhooks v1 signatures: pure functions of (secret, id, timestamp, body).

The signed content is ``"{webhook-id}.{webhook-timestamp}."`` followed by the body bytes exactly
as sent; the signature is HMAC-SHA256 with the secret's 32 raw bytes, base64-encoded, written
``v1,<base64>``. Several signatures (a rotated secret and its predecessor) are separated by a
space, and a receiver accepts the message when any of them verifies. Receivers using the
``standardwebhooks`` or ``svix`` package verify these headers unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from typing import Final

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES: Final = 32
"""Standard Webhooks recommends 24 to 64 random bytes; 32 match HMAC-SHA256's block of output."""
SIGNATURE_VERSION: Final = "v1"
TIMESTAMP_TOLERANCE_S: Final = 300
"""How far a received timestamp may be from the receiver's clock (the libraries' 5 minutes)."""

HEADER_ID: Final = "webhook-id"
HEADER_TIMESTAMP: Final = "webhook-timestamp"
HEADER_SIGNATURE: Final = "webhook-signature"


class InvalidSecret(ValueError):
    """Not a ``whsec_`` secret of base64-encoded bytes."""


class VerificationFailed(ValueError):
    """Headers missing, timestamp out of tolerance, or no signature matches."""


def new_secret() -> str:
    """A fresh ``whsec_`` secret: base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The raw HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecret("a webhook secret is base64 after its prefix") from None
    if not key:
        raise InvalidSecret("a webhook secret may not be empty")
    return key


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    digest = hmac.new(key, signed_content(msg_id, timestamp, body), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """Every key's signature, space-separated (newest key first)."""
    if not keys:
        raise InvalidSecret("at least one key is needed to sign")
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def webhook_headers(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: signature_header(keys, msg_id, timestamp, body),
    }


def verify(
    secrets_: Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: int = TIMESTAMP_TOLERANCE_S,
) -> str:
    """Check a received webhook the way a receiver does; returns its ``webhook-id``.

    Our own check, for the demo's receiver (the ``standardwebhooks`` package is a test
    dependency only). Raises :class:`VerificationFailed`.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get(HEADER_ID, "")
    raw_timestamp = lowered.get(HEADER_TIMESTAMP, "")
    signatures = lowered.get(HEADER_SIGNATURE, "")
    if not (msg_id and raw_timestamp and signatures):
        raise VerificationFailed("missing webhook-id, webhook-timestamp or webhook-signature")
    if not raw_timestamp.isascii() or not raw_timestamp.isdigit():
        raise VerificationFailed("webhook-timestamp is not Unix seconds")
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > tolerance_s:
        raise VerificationFailed("webhook-timestamp is too far from now")
    expected = [sign(secret_key(secret), msg_id, timestamp, body) for secret in secrets_]
    for candidate in signatures.split(" "):
        if any(hmac.compare_digest(candidate.encode(), sig.encode()) for sig in expected):
            return msg_id
    raise VerificationFailed("no signature matches")
