"""``bridge healthcheck``: the image's ``HEALTHCHECK``, whatever the container runs.

One image runs the API, a worker or the simulator, and Docker has one ``HEALTHCHECK`` per image,
so the check finds out what this container runs from its main command (``/proc/1/cmdline``: PID 1
is ``tini``, which names the command after ``--``) and checks that:

- API: ``GET /livez`` on its port answers 200;
- worker: its health key in Redis is fresh (:func:`bridge.worker.settings.check_health`);
- simulator: ``GET /_control/health`` answers 200.

Kubernetes ignores ``HEALTHCHECK``; its probes are in ``deploy/kubernetes``.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

Role = Literal["api", "worker", "simulator"]
ROLES: Final[tuple[Role, ...]] = ("api", "worker", "simulator")
DEFAULT_PORTS: Final[dict[Role, int]] = {"api": 8080, "worker": 0, "simulator": 8081}
"""The ports the image's commands listen on unless told otherwise (``bridge api``'s default is 8080)."""
HTTP_TIMEOUT_S: Final = 3.0
MAIN_COMMAND: Final = Path("/proc/1/cmdline")


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


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as answer:  # noqa: S310 - loopback URL we built
            return bool(answer.status == 200)
    except OSError:
        return False


def check(role: Role, port: int) -> tuple[bool, str]:
    """Run the check for ``role``; returns (healthy, one line saying why)."""
    if role == "api":
        url = f"http://127.0.0.1:{port}/livez"
        return http_ok(url), f"api {url}"
    if role == "simulator":
        url = f"http://127.0.0.1:{port}/_control/health"
        return http_ok(url), f"simulator {url}"
    from bridge.config import load_settings
    from bridge.worker.settings import check_health

    record = asyncio.run(check_health(load_settings()))
    return record is not None, f"worker health record: {record or 'none recorded lately'}"
