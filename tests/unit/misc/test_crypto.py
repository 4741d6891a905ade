"""Secrets at rest."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from bridge.config import ConfigError, Secret
from bridge.crypto import SecretBox, SecretUnreadable


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
