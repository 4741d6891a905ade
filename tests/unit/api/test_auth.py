"""Bearer keys become principals; what a principal may see and change; the managed keys' cache."""

from __future__ import annotations

import pytest

from bridge.api.auth import KEY_CACHE_TTL_S, KeyRing, Principal, admin_key_id
from bridge.api.errors import ApiError
from bridge.store.apikeys import ApiKeyRecord, new_key

EDITOR_A = Principal(key_id="key_1", role="editor", clubs=frozenset({"a"}))
VIEWER_A = Principal(key_id="key_2", role="viewer", clubs=frozenset({"a"}))
EDITOR_AB = Principal(key_id="key_3", role="editor", clubs=frozenset({"a", "b"}))
ADMIN = Principal(key_id="admin_1", role="admin")


def refusal(call: object, *args: object) -> tuple[int, str] | None:
    """(status, code) of the ApiError a check raises, or None when it lets the request through."""
    assert callable(call)
    try:
        call(*args)
    except ApiError as exc:
        return exc.status_code, exc.code
    return None


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
    assert EDITOR_A.sees("a") and EDITOR_A.may_change("a")
    assert not EDITOR_A.sees("b") and not EDITOR_A.may_change("b")
    assert VIEWER_A.sees("a") and not VIEWER_A.may_change("a")
    assert ADMIN.sees("anything") and ADMIN.may_change("anything")


def test_another_clubs_resource_is_a_404_and_never_a_403() -> None:
    assert refusal(EDITOR_A.check_read, "a", "no watch w") is None
    assert refusal(VIEWER_A.check_read, "a", "no watch w") is None
    assert refusal(EDITOR_A.check_read, "b", "no watch w") == (404, "not_found")
    assert refusal(VIEWER_A.check_read, "b", "no watch w") == (404, "not_found")
    assert refusal(ADMIN.check_read, "b", "no watch w") is None


def test_creating_for_a_club_not_held_is_forbidden_club_and_a_viewer_may_not_create_at_all() -> None:
    assert refusal(EDITOR_A.check_club, "a") is None
    assert refusal(EDITOR_A.check_club, "b") == (403, "forbidden_club")
    assert refusal(EDITOR_A.check_club, "a", "b") == (403, "forbidden_club")
    assert refusal(EDITOR_AB.check_club, "a", "b") is None
    assert refusal(VIEWER_A.check_club, "a") == (403, "forbidden")
    assert refusal(ADMIN.check_club, "z") is None


def test_only_an_admin_passes_the_admin_check_and_only_a_viewer_fails_the_write_check() -> None:
    assert refusal(ADMIN.check_admin) is None
    assert refusal(EDITOR_AB.check_admin) == (403, "forbidden")
    assert refusal(VIEWER_A.check_admin) == (403, "forbidden")
    assert [refusal(p.check_write) for p in (ADMIN, EDITOR_A, VIEWER_A)] == [None, None, (403, "forbidden")]


def test_a_club_key_sees_a_scoped_resource_only_if_it_holds_every_one_of_its_clubs() -> None:
    assert EDITOR_A.sees_scope(("a",)) and EDITOR_AB.sees_scope(("a", "b")) and EDITOR_AB.sees_scope(("b",))
    assert not EDITOR_A.sees_scope(("a", "b"))
    assert not EDITOR_A.sees_scope(None)  # every club's (an admin's subscription)
    assert ADMIN.sees_scope(None) and ADMIN.sees_scope(("x",))
    assert refusal(EDITOR_A.check_read_scope, ("a", "b"), "no subscription s") == (404, "not_found")


def test_a_new_resource_is_limited_to_the_keys_clubs_or_to_those_it_asks_for_among_them() -> None:
    assert EDITOR_AB.scope_for(None) == ("a", "b")
    assert EDITOR_AB.scope_for(["b", "b"]) == ("b",)
    assert ADMIN.scope_for(None) is None
    assert ADMIN.scope_for(["z", "y"]) == ("y", "z")
    assert refusal(EDITOR_A.scope_for, ["a", "c"]) == (403, "forbidden_club")
    assert refusal(VIEWER_A.scope_for, ["a"]) == (403, "forbidden")


class Keys:
    """A managed keys' lookup in memory (the ring's seam; the Redis store has its own tests)."""

    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}
        self.calls = 0

    def add(self, key: str, clubs: tuple[str, ...] = ("a",)) -> ApiKeyRecord:
        record = ApiKeyRecord(
            id=f"key_{len(self.records):024x}",
            name="n",
            clubs=clubs,
            role="viewer",
            created_at=0.0,
            created_by="admin_1",
            digest="d",
        )
        self.records[key] = record
        return record

    async def lookup(self, key: str) -> ApiKeyRecord | None:
        self.calls += 1
        return self.records.get(key)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_managed_key_is_looked_up_once_per_period_and_a_revocation_shows_within_it() -> None:
    keys, clock = Keys(), Clock()
    key = new_key()
    record = keys.add(key, ("b", "a"))
    ring = KeyRing((b"admin-key",), keys, clock=clock)
    expected = Principal(key_id=record.id, role="viewer", clubs=frozenset({"a", "b"}))
    assert await ring.resolve(key) == expected
    clock.now += KEY_CACHE_TTL_S * 0.9
    assert await ring.resolve(f" {key} ") == expected and keys.calls == 1
    del keys.records[key]  # revoked
    assert await ring.resolve(key) == expected  # still within the period
    clock.now += KEY_CACHE_TTL_S * 0.2
    assert await ring.resolve(key) is None and keys.calls == 2


async def test_only_tokens_shaped_like_managed_keys_reach_the_store() -> None:
    keys = Keys()
    ring = KeyRing((b"admin-key",), keys)
    for presented in ("admin-key2", "nope", "bk_" + "x" * 500, "bk_é", "Bearer bk_x"):
        assert await ring.resolve(presented) is None
    assert keys.calls == 0
    assert await ring.resolve("admin-key") == Principal(key_id=admin_key_id(b"admin-key"), role="admin")
    assert keys.calls == 0


async def test_the_cache_forgets_the_oldest_keys_past_its_size() -> None:
    keys, clock = Keys(), Clock()
    ring = KeyRing((), keys, clock=clock, max_entries=3)
    for n in range(5):
        assert await ring.resolve(f"bk_unknown{n}") is None
    assert keys.calls == 5
    assert await ring.resolve("bk_unknown4") is None and keys.calls == 5  # still remembered
    assert await ring.resolve("bk_unknown0") is None and keys.calls == 6  # forgotten


@pytest.mark.parametrize("presented", ["", " ", "\t"])
async def test_a_blank_key_is_nobody_without_a_lookup(presented: str) -> None:
    keys = Keys()
    assert await KeyRing((), keys).resolve(presented) is None
    assert keys.calls == 0
