"""Health checks: ``bridge healthcheck`` (the image's ``HEALTHCHECK``) and ``bridge worker --check``.

One image runs the API, a worker or the simulator, and Docker has one ``HEALTHCHECK`` per image,
so the check finds out what this container runs from its main command (``/proc/1/cmdline``: PID 1
is ``tini``, which names the command after ``--``) and checks that:

- API: ``GET /livez`` on its port answers 200;
- worker: this host's health record in Redis is there and fresh (arq writes it every
  :data:`~bridge.config.WORKER_HEALTH_INTERVAL_S` seconds; ``bridge worker --check`` is this check);
- simulator: ``GET /_control/health`` answers 200.

Every check answers with one line, ``healthy: ...`` (exit 0) or ``unhealthy: <reason>`` (exit 1),
and never with a traceback: Docker keeps that output in the container's health log, where an
operator looks. Each check ends within :data:`CHECK_TIMEOUT_S`, well inside the image's
``HEALTHCHECK --timeout`` and the Kubernetes probes' ``timeoutSeconds``. A configuration error
(say, a malformed ``BRIDGE_REDIS_URL``) is not a verdict: it ends the command with exit code 2.

Kubernetes ignores ``HEALTHCHECK``; its probes are in ``deploy/kubernetes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Literal, NoReturn

from redis.exceptions import RedisError

from bridge.config import WORKER_HEALTH_INTERVAL_S, ConfigError, Settings, load_settings
from bridge.exits import EXIT_FAILURE, EXIT_OK, one_line
from bridge.redis_url import connect, parse_redis_url
from bridge.store import keys

Role = Literal["api", "worker", "simulator", "slack-socket"]
ROLES: Final[tuple[Role, ...]] = ("api", "worker", "simulator", "slack-socket")
DEFAULT_PORTS: Final[dict[Role, int]] = {"api": 8080, "worker": 0, "simulator": 8081, "slack-socket": 0}
SLACK_SOCKET_STALE_AFTER_S: Final = 25
"""``bridge slack-socket`` writes its record every 10 s; older than this, it has stopped."""
"""The ports the image's commands listen on unless told otherwise (``bridge api``'s default is 8080)."""
HTTP_TIMEOUT_S: Final = 3.0
CHECK_TIMEOUT_S: Final = 5.0
"""Longest a worker check waits for Redis (connecting and retrying included)."""
CLOSE_TIMEOUT_S: Final = 1.0
MAIN_COMMAND: Final = Path("/proc/1/cmdline")
STALE_AFTER_S: Final = WORKER_HEALTH_INTERVAL_S + 5
"""A health record older than this is stale: its worker has stopped writing it. arq lets the
record expire after the interval + 1 s, so an older one was written by a worker that records
less often, or survived with its key; the margin covers the job loop's own delay."""
RECORD_TIME_FORMAT: Final = "%b-%d %H:%M:%S"
"""How arq's health record starts: ``Dec-04 18:31:02 j_complete=3 j_failed=0 ...`` (local time)."""


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str

    def line(self) -> str:
        return ("healthy: " if self.healthy else "unhealthy: ") + one_line(self.reason)


def report(verdict: Verdict) -> NoReturn:
    """Print the verdict's one line and exit 0 (healthy) or 1."""
    sys.stdout.write(verdict.line() + "\n")
    sys.stdout.flush()
    raise SystemExit(EXIT_OK if verdict.healthy else EXIT_FAILURE)


def role_of(argv: Sequence[str]) -> tuple[Role, int]:
    """What a command line runs and on which port: ``tini -- bridge worker`` → ``("worker", 0)``.

    Understands ``bridge ROLE``, ``python -m bridge ROLE``, ``arq workers.settings.WorkerSettings``
    and ``uvicorn ... bridge.app:create_app``; anything else is taken for the API (the image's
    default command)."""
    args = list(argv)
    role: Role = "api"
    for index, token in enumerate(args):
        name = os.path.basename(token)
        if name == "arq" or token.startswith("workers.settings"):
            role = "worker"
            break
        if name == "bridge" and index + 1 < len(args):
            following = args[index + 1]
            if following in ROLES:
                role = following
                args = args[index + 1 :]
                break
    return role, _port(args, DEFAULT_PORTS[role])


def _port(args: Sequence[str], default: int) -> int:
    for index, arg in enumerate(args):
        if arg == "--port" and index + 1 < len(args) and args[index + 1].isdigit():
            return int(args[index + 1])
        if arg.startswith("--port=") and arg[7:].isdigit():
            return int(arg[7:])
    return default


def main_command() -> list[str]:
    try:
        raw = MAIN_COMMAND.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check(role: Role, port: int = 0, settings: Settings | None = None) -> Verdict:
    """Run the check for ``role`` (the worker's with ``settings``, else those of the environment).
    Raises only :class:`~bridge.config.ConfigError`."""
    try:
        if role == "api":
            return http_verdict("api", port, "/livez")
        if role == "simulator":
            return http_verdict("simulator", port, "/_control/health")
        if role == "slack-socket":
            return slack_socket_verdict(settings or load_settings())
        return worker_verdict(settings or load_settings())
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a health check answers with a verdict, never a traceback
        return Verdict(False, f"the {role} check failed: {type(exc).__name__}: {exc}")


def http_verdict(name: str, port: int, path: str, *, timeout_s: float = HTTP_TIMEOUT_S) -> Verdict:
    """``GET http://127.0.0.1:port/path`` answers 200 within ``timeout_s`` (no proxy, no redirect)."""
    url = f"http://127.0.0.1:{port}{path}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path, headers={"User-Agent": "bridge-healthcheck"})
        status = connection.getresponse().status
    except TimeoutError:
        return Verdict(False, f"{name} {url} did not answer within {timeout_s:g} s")
    except ConnectionRefusedError:
        return Verdict(False, f"{name} {url} is not answering (connection refused)")
    except (OSError, http.client.HTTPException) as exc:
        return Verdict(False, f"{name} {url} gave no HTTP answer ({type(exc).__name__}: {exc})")
    finally:
        connection.close()
    if status == 200:
        return Verdict(True, f"{name} {url} answered 200")
    return Verdict(False, f"{name} {url} answered {status}")


def worker_verdict(settings: Settings, host: str | None = None, *, now: datetime | None = None) -> Verdict:
    """This host's worker wrote its health record lately (``bridge worker --check``)."""
    return asyncio.run(_worker_verdict(settings, host or socket.gethostname(), now))


async def _record(settings: Settings, key: str) -> bytes | Verdict:
    """The health record at ``key``, or the verdict when Redis cannot say."""
    target = parse_redis_url(settings.redis_url)
    where = f"redis {target.redacted()}"
    client = connect(target)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            record: bytes | None = await client.get(key)
    except TimeoutError:
        return Verdict(False, f"{where} did not answer within {CHECK_TIMEOUT_S:g} s")
    except (RedisError, OSError) as exc:
        return Verdict(False, f"{where} is unreachable: {exc}")
    finally:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await client.aclose(close_connection_pool=True)
    return b"" if record is None else record


def slack_socket_verdict(
    settings: Settings, host: str | None = None, *, now: datetime | None = None
) -> Verdict:
    """This host's ``bridge slack-socket`` recorded lately that it is connected to Slack."""
    name = host or socket.gethostname()
    record = asyncio.run(_record(settings, keys.slack_socket_health(name)))
    if isinstance(record, Verdict):
        return record
    if not record:
        return Verdict(False, f"no health record from slack-socket {name} (it writes one every 10 s)")
    text = record.decode(errors="replace")
    written = record_time(text, now or datetime.now())
    if written is None or ((now or datetime.now()) - written).total_seconds() > SLACK_SOCKET_STALE_AFTER_S:
        return Verdict(False, f"health record of slack-socket {name} is stale: {text[:80]}")
    if not text.endswith(" connected"):
        return Verdict(False, f"slack-socket {name} is not connected to Slack: {text[:80]}")
    return Verdict(True, f"slack-socket {name}: {text}")


async def _worker_verdict(settings: Settings, host: str, now: datetime | None) -> Verdict:
    found = await _record(settings, keys.worker_health(host))
    if isinstance(found, Verdict):
        return found
    record = found or None
    if record is None:
        return Verdict(
            False,
            f"no health record from worker {host} (a worker writes one every {WORKER_HEALTH_INTERVAL_S} s)",
        )
    text = record.decode(errors="replace")
    written = record_time(text, now or datetime.now())
    if written is None:
        return Verdict(False, f"health record of worker {host} has no readable time: {text[:80]!r}")
    age = ((now or datetime.now()) - written).total_seconds()
    if age > STALE_AFTER_S:
        return Verdict(False, f"health record of worker {host} is stale ({age:.0f} s old): {text}")
    return Verdict(True, f"worker {host}: {text}")


def record_time(record: str, now: datetime) -> datetime | None:
    """When arq wrote ``record`` (its time has no year: the latest such time not after ``now``,
    with a minute's leeway for clocks), or ``None`` when it does not start with one."""
    stamp = record[: len("Dec-04 18:31:02")]
    for year in (now.year, now.year - 1):
        try:
            written = datetime.strptime(f"{year} {stamp}", f"%Y {RECORD_TIME_FORMAT}")
        except ValueError:
            continue  # not a time, or Feb-29 in a year without one
        if written <= now + timedelta(minutes=1):
            return written
    return None
