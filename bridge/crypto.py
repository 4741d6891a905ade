"""Secrets at rest: MPC tokens and webhook secrets are stored encrypted with ``BRIDGE_SECRET_KEY``.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``): authenticated, versioned, and each key
is the url-safe base64 of 32 random bytes that the configuration already validates.

``BRIDGE_SECRET_KEY`` may list several keys, newest first (``MultiFernet``): new values are sealed
with the first, and a value sealed with any listed key still opens. That is how a key rotates:
put the new key in front, run ``bridge secrets reseal`` (every stored value is sealed again with
the new key), then drop the old key from the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bridge.config import ConfigError, Secret, env_name

OPENED_KEPT_MAX: Final = 1024
"""Sealed values a box remembers the plaintext of (a busy worker opens the same webhook secret for
every delivery); past this many it starts over. Only values that opened are remembered."""


class SecretBox:
    """Encrypts and decrypts small secrets; never logs or repeats them."""

    def __init__(self, keys: Secret | Sequence[Secret] | None) -> None:
        listed = (keys,) if isinstance(keys, Secret) else tuple(keys or ())
        if not listed:
            raise ConfigError(f"{env_name('secret_key')}: required to store secrets (a Fernet key)")
        self._fernet = MultiFernet([Fernet(key.reveal().encode()) for key in listed])
        self._newest = Fernet(listed[0].reveal().encode())
        self._opened: dict[bytes, str] = {}

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, token: bytes) -> str:
        """The plaintext; raises :class:`SecretUnreadable` if no listed key opens it or it was
        altered. A token opens to the same plaintext every time, so what opened is remembered
        (the box's keys never change; one that did not open is tried again)."""
        opened = self._opened.get(token)
        if opened is not None:
            return opened
        try:
            opened = self._fernet.decrypt(token).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SecretUnreadable("a stored secret cannot be decrypted with BRIDGE_SECRET_KEY") from None
        if len(self._opened) >= OPENED_KEPT_MAX:
            self._opened.clear()
        self._opened[bytes(token)] = opened
        return opened

    def is_current(self, token: bytes) -> bool:
        """Whether ``token`` is already sealed with the newest key (resealing it would change nothing)."""
        try:
            self._newest.decrypt(token)
        except InvalidToken:
            return False
        return True

    def reseal(self, token: bytes) -> bytes:
        """``token`` sealed again with the newest key; raises :class:`SecretUnreadable` like :meth:`open`."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise SecretUnreadable("a stored secret cannot be decrypted with BRIDGE_SECRET_KEY") from None


class SecretUnreadable(Exception):
    pass
