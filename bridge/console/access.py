"""What a signed-in console user may see and change: one function maps the key to it.

The console never decides access on its own. :func:`principal_for_key` asks the API's key ring
(the same one ``/v1`` uses) what the presented key is, and every page then filters through the
resulting :class:`~bridge.api.auth.Principal` (``sees`` / ``may_change`` a club). A key the ring
limits to some clubs therefore sees only those clubs in the console too, with nothing to change
here: narrowing what the console shows is done by the key ring alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from bridge.api.auth import KeyRing, Principal

T = TypeVar("T")


async def principal_for_key(keyring: KeyRing, presented: str) -> Principal | None:
    """The principal a console sign-in with ``presented`` gets; ``None``: refused."""
    return await keyring.resolve(presented)


def visible(principal: Principal, items: Iterable[tuple[str | None, T]]) -> list[T]:
    """Items (paired with their club; ``None``: not tied to one club) this principal may see.
    Items tied to no club are for keys that see every club only."""
    return [item for club, item in items if (principal.sees(club) if club else principal.clubs is None)]
