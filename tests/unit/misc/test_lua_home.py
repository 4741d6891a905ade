"""Every Lua script lives in bridge/store/lua/ and names keys and fields only through the constants."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bridge
from bridge.store import keys, scripts

FIELD_CONSTANTS = {
    value
    for name, value in vars(keys).items()
    if re.fullmatch(r"[FWSCB]_[A-Z_]+", name) and isinstance(value, str)
}


def test_every_script_loads_with_every_placeholder_known() -> None:
    names = scripts.script_names()
    assert len(names) >= 15
    for name in names:
        source = scripts.source(name)
        assert "${" not in source, name


@pytest.mark.parametrize("name", scripts.script_names())
def test_no_script_spells_a_key_prefix_or_a_field_name_itself(name: str) -> None:
    raw = scripts.raw(name)
    literals = set(re.findall(r"'([^'$]*)'", raw))
    assert not literals & FIELD_CONSTANTS, f"{name} spells {literals & FIELD_CONSTANTS}: use ${{NAME}}"
    assert not [lit for lit in literals if lit.startswith(keys.PREFIX)], name


def test_no_lua_outside_the_lua_home() -> None:
    package = Path(bridge.__file__).parent
    found = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "redis.call(" in path.read_text(encoding="utf-8")
    ]
    assert found == []


def test_the_shared_pieces_spell_no_key_prefix_or_field_name_either() -> None:
    folder = Path(bridge.__file__).parent / "store" / "lua" / scripts.LIB_FOLDER
    pieces = sorted(folder.glob("*.lua"))
    assert pieces
    for piece in pieces:
        literals = set(re.findall(r"'([^'$]*)'", piece.read_text(encoding="utf-8")))
        assert not literals & FIELD_CONSTANTS, piece.name
        assert not [lit for lit in literals if lit.startswith(keys.PREFIX)], piece.name
