"""The Lua scripts that make each multi-key step atomic, loaded from ``lua/``.

Every script the bridge runs is a file in ``bridge/store/lua/`` (its header says its KEYS, ARGV
and answer). Key prefixes and hash field names are not written in the scripts: they appear as
``${NAME}`` and are filled in from :mod:`bridge.store.keys` when a script is loaded, so a name
lives in one place and a script costs nothing extra per call. A placeholder that names no
constant fails at load time (:class:`string.Template` raises ``KeyError``).

The scripts touch keys they were not given in ``KEYS``: fine on a single Redis or a
Sentinel-managed primary, which is what the bridge supports (arq cannot run on Redis Cluster
either). Timestamps are integer milliseconds.
"""

from __future__ import annotations

import functools
from importlib import resources
from string import Template
from typing import Any, Final

from bridge.store import keys

LUA_PACKAGE: Final = "bridge.store"
LUA_FOLDER: Final = "lua"
LIB_FOLDER: Final = "lib"
"""Lua pieces that several scripts share (``lua/lib/*.lua``): not scripts of their own; a script
includes one as ``${LIB_<NAME>}`` (``lib/token_bucket.lua`` is ``${LIB_TOKEN_BUCKET}``)."""
NAMES: Final[dict[str, str]] = {
    name: value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)
}
"""What a script may name: every key prefix, key and hash field of :mod:`bridge.store.keys`."""


def script_names() -> list[str]:
    """Every script there is (the ``.lua`` files' names)."""
    folder = resources.files(LUA_PACKAGE).joinpath(LUA_FOLDER)
    return sorted(item.name.removesuffix(".lua") for item in folder.iterdir() if item.name.endswith(".lua"))


@functools.cache
def raw(name: str) -> str:
    """The script as written, placeholders and all."""
    path = resources.files(LUA_PACKAGE).joinpath(LUA_FOLDER).joinpath(f"{name}.lua")
    return path.read_text(encoding="utf-8")


@functools.cache
def _libraries() -> dict[str, str]:
    """Each shared piece by its placeholder name, its own ``${NAME}`` already filled in."""
    folder = resources.files(LUA_PACKAGE).joinpath(LUA_FOLDER).joinpath(LIB_FOLDER)
    return {
        "LIB_" + item.name.removesuffix(".lua").upper(): Template(
            item.read_text(encoding="utf-8")
        ).substitute(NAMES)
        for item in folder.iterdir()
        if item.name.endswith(".lua")
    }


@functools.cache
def source(name: str) -> str:
    """The script as Redis runs it: every ``${NAME}`` replaced by its constant, and every
    ``${LIB_<NAME>}`` by that shared piece."""
    return Template(raw(name)).substitute(NAMES | _libraries())


def register(redis: Any, name: str) -> Any:
    """``redis.register_script`` for the named script: an ``AsyncScript`` that loads itself into
    Redis on first use (and again after a restart or failover)."""
    return redis.register_script(source(name))
