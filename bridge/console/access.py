"""What a signed-in console user may see and change: one function maps the key to it.

The console never decides access on its own. :func:`principal_for_key` asks the API's key ring
(the same one ``/v1`` uses) what the presented key is, and every page then filters through the
resulting :class:`~bridge.api.auth.Principal` (``sees`` a club, ``sees_scope`` of a
subscription) and changes things only through the API's own service functions, which check it
as the routes do. A club key therefore sees and changes only its clubs in the console too.

A session outlives the request that signed in, so :func:`principal_now` looks the key up again
on every request: a managed key revoked (or given other clubs or another role) takes effect on
open consoles at once, and an admin key taken out of ``BRIDGE_API_KEYS`` ends its sessions when
the API restarts with the new list.
"""

from __future__ import annotations

from bridge.api.auth import ADMIN_KEY_ID_PREFIX, KeyRing, Principal
from bridge.store.apikeys import ApiKeyStore


async def principal_for_key(keyring: KeyRing, presented: str) -> Principal | None:
    """The principal a console sign-in with ``presented`` gets; ``None``: refused."""
    return await keyring.resolve(presented)


async def principal_now(
    principal: Principal, *, admin_ids: frozenset[str], api_keys: ApiKeyStore | None
) -> Principal | None:
    """What the key a session signed in with may do now; ``None``: the key is gone."""
    if principal.is_admin:
        return principal if principal.key_id in admin_ids else None
    if api_keys is None or principal.key_id.startswith(ADMIN_KEY_ID_PREFIX):
        return None
    record = await api_keys.get(principal.key_id)
    if record is None:
        return None
    return Principal(key_id=record.id, role=record.role, clubs=frozenset(record.clubs))
