"""Bearer keys become principals; what a principal may see and change."""

from __future__ import annotations

from bridge.api.auth import KeyRing, Principal, admin_key_id


async def test_an_admin_key_is_an_admin_principal_named_by_a_digest_not_the_key() -> None:
    ring = KeyRing((b"alpha-key", b"beta-key"))
    principal = await ring.resolve(" beta-key ")
    assert principal == Principal(key_id=admin_key_id(b"beta-key"), role="admin")
    assert principal.is_admin and principal.clubs is None
    assert "beta" not in principal.key_id


async def test_an_unknown_or_empty_key_is_nobody() -> None:
    ring = KeyRing((b"alpha-key",))
    for presented in ("", "   ", "alpha", "alpha-key2", "ALPHA-KEY"):
        assert await ring.resolve(presented) is None


def test_a_club_scope_limits_reading_and_a_viewer_changes_nothing() -> None:
    editor = Principal(key_id="key_1", role="editor", clubs=frozenset({"a"}))
    viewer = Principal(key_id="key_2", role="viewer", clubs=frozenset({"a"}))
    admin = Principal(key_id="admin_1", role="admin")
    assert editor.sees("a") and editor.may_change("a")
    assert not editor.sees("b") and not editor.may_change("b")
    assert viewer.sees("a") and not viewer.may_change("a")
    assert admin.sees("anything") and admin.may_change("anything")
