"""Secrets at rest."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from bridge.config import ConfigError, Secret
from bridge.crypto import OPENED_KEPT_MAX, SecretBox, SecretUnreadable


def test_a_sealed_secret_opens_with_the_same_key_only() -> None:
    box = SecretBox(Secret(Fernet.generate_key().decode()))
    sealed = box.seal("mpc-token-123")
    assert b"mpc-token-123" not in sealed
    assert box.open(sealed) == "mpc-token-123"
    other = SecretBox(Secret(Fernet.generate_key().decode()))
    with pytest.raises(SecretUnreadable):
        other.open(sealed)


def test_storing_secrets_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_SECRET_KEY"):
        SecretBox(None)


def test_a_box_remembers_what_opened_and_never_what_did_not() -> None:
    """Opening is remembered (a busy worker opens one webhook secret per delivery); a token that
    does not open, or a copy of a good one altered by one byte, is refused every time."""
    box = SecretBox(Secret(Fernet.generate_key().decode()))
    sealed = box.seal("whsec-1")
    foreign = SecretBox(Secret(Fernet.generate_key().decode())).seal("whsec-2")
    altered = sealed[:-5] + (b"A" if sealed[-5:-4] != b"A" else b"B") + sealed[-4:]
    for _ in range(3):
        assert box.open(sealed) == "whsec-1"
        for bad in (foreign, altered, b"", b"\xff" * 80):
            with pytest.raises(SecretUnreadable):
                box.open(bad)


def test_a_full_memory_of_opened_secrets_starts_over() -> None:
    box = SecretBox(Secret(Fernet.generate_key().decode()))
    sealed = [box.seal(f"s{n}") for n in range(OPENED_KEPT_MAX + 5)]
    assert [box.open(token) for token in sealed] == [f"s{n}" for n in range(OPENED_KEPT_MAX + 5)]
    assert box.open(sealed[0]) == "s0"
