"""Secrets at rest: MPC tokens and webhook secrets are stored encrypted with ``BRIDGE_SECRET_KEY``.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``): authenticated, versioned, and the key
is the url-safe base64 of 32 random bytes that the configuration already validates.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from bridge.config import ConfigError, Secret, env_name


class SecretBox:
    """Encrypts and decrypts small secrets; never logs or repeats them."""

    def __init__(self, key: Secret | None) -> None:
        if key is None:
            raise ConfigError(f"{env_name('secret_key')}: required to store secrets (a Fernet key)")
        self._fernet = Fernet(key.reveal().encode())

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, token: bytes) -> str:
        """The plaintext; raises :class:`SecretUnreadable` if the key changed or the value was altered."""
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SecretUnreadable("a stored secret cannot be decrypted with BRIDGE_SECRET_KEY") from None


class SecretUnreadable(Exception):
    pass
