"""Standard Webhooks signatures, checked with the reference packages (standardwebhooks, svix)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
import standardwebhooks
import svix.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.webhooks.signing import (
    SECRET_PREFIX,
    InvalidSecret,
    VerificationFailed,
    new_secret,
    secret_key,
    sign,
    signature_header,
    verify,
    webhook_headers,
)

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=" "),
    min_size=1,
    max_size=80,
)
bodies = st.text(max_size=2000).map(str.encode)
secrets_ = st.binary(min_size=24, max_size=64).map(lambda raw: SECRET_PREFIX + base64.b64encode(raw).decode())


def reference_verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Both reference receivers must accept (each raises otherwise)."""
    standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)
    svix.webhooks.Webhook(secret).verify(body, headers)


def test_a_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32


def test_the_signature_is_hmac_sha256_of_id_dot_timestamp_dot_body_exactly() -> None:
    key = secret_key(SECRET)
    body = b'{"type":"bulk.finished","data":{"event_id":"evt_1"}}'
    expected = hmac.new(key, b"evt_1.1700000000." + body, hashlib.sha256).digest()
    assert sign(key, "evt_1", 1_700_000_000, body) == "v1," + base64.b64encode(expected).decode()


def test_the_reference_packages_sign_exactly_as_we_do() -> None:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(1_700_000_000, UTC)
    body = '{"a": "ø"}'
    ours = sign(secret_key(SECRET), "msg_1", 1_700_000_000, body.encode())
    assert ours == standardwebhooks.Webhook(SECRET).sign("msg_1", when, body)
    assert ours == svix.webhooks.Webhook(SECRET).sign("msg_1", when, body)


@settings(max_examples=150, deadline=None)
@given(secret=secrets_, msg_id=ids, body=bodies, skew=st.integers(min_value=-250, max_value=250))
def test_any_body_id_and_timestamp_verify_with_standardwebhooks_and_svix(
    secret: str, msg_id: str, body: bytes, skew: int
) -> None:
    timestamp = int(time.time()) + skew
    headers = webhook_headers([secret_key(secret)], msg_id, timestamp, body)
    assert headers["webhook-id"] == msg_id and headers["webhook-timestamp"] == str(timestamp)
    reference_verify(secret, headers, body)
    assert verify([secret], headers, body, now=time.time()) == msg_id


@settings(max_examples=100, deadline=None)
@given(secret=secrets_, msg_id=ids, body=bodies, flip=st.integers(min_value=0, max_value=10_000))
def test_a_changed_body_fails_verification(secret: str, msg_id: str, body: bytes, flip: int) -> None:
    headers = webhook_headers([secret_key(secret)], msg_id, int(time.time()), body)
    altered = body + b" " if not body else body[: flip % len(body)] + b"#" + body[flip % len(body) + 1 :]
    if altered == body:
        altered = body + b"!"
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(altered.decode(errors="replace"), headers)
    with pytest.raises(VerificationFailed):
        verify([secret], headers, altered, now=time.time())


def test_after_rotation_both_signatures_are_sent_and_each_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"bulk.started"}'
    now = int(time.time())
    headers = webhook_headers([secret_key(new), secret_key(old)], "evt_9", now, body)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    reference_verify(new, headers, body)  # a receiver already switched
    reference_verify(old, headers, body)  # a receiver not switched yet
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_secret()).verify(body, headers)


def test_timestamps_too_far_from_now_are_refused_by_receivers() -> None:
    body = b"{}"
    stale = webhook_headers([secret_key(SECRET)], "evt_1", int(time.time()) - 3600, body)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body, stale)
    with pytest.raises(VerificationFailed, match="too far"):
        verify([SECRET], stale, body, now=time.time())


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "x", "webhook-timestamp": "1"},
        {"webhook-id": "x", "webhook-timestamp": "soon", "webhook-signature": "v1,AAAA"},
    ],
)
def test_verify_refuses_missing_or_malformed_headers(headers: dict[str, str]) -> None:
    with pytest.raises(VerificationFailed):
        verify([SECRET], headers, b"{}", now=1.0)


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_not base64!", "sk_live_abc", SECRET[len("whsec_") :]])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSecret):
        secret_key(bad)


def test_signing_needs_a_key() -> None:
    with pytest.raises(InvalidSecret):
        signature_header([], "evt", 1, b"{}")
