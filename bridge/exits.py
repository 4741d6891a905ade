"""How the bridge's processes end: their exit codes, and the one way a configuration error ends one.

An orchestrator (Docker, Kubernetes) shows an operator the exit code and the last lines a process
wrote, so both must say what happened. docs/operations.md lists the codes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Final, NoReturn

from bridge.config import ConfigError

PROGRAM: Final = "mpc-import-bridge"

EXIT_OK: Final = 0
"""Done; for a long-running process: stopped on SIGTERM/SIGINT with everything drained."""
EXIT_FAILURE: Final = 1
"""Unhealthy (health checks), or a failure while running (e.g. the API could not listen)."""
EXIT_CONFIG: Final = 2
"""A configuration error (a ``BRIDGE_*`` variable or an option): one line on stderr says which."""
EXIT_DRAIN_CUT_SHORT: Final = 3
"""Stopped on a signal, but the drain ended at its deadline with work left: requests the API was
still answering were cancelled, or polls and deliveries a worker was still running were handed back
(they run again elsewhere). The process logged what was left (``drain cut short``)."""
EXIT_STOP_TIMEOUT: Final = 75
"""A worker did not stop within its drain and margin (Redis hanging, say): its own watchdog ended
it. Its leases hand its imports back."""


def one_line(text: object) -> str:
    """``text`` on one line (whitespace runs folded), for stderr and health-check output."""
    return " ".join(str(text).split())


def exit_with_config_error(message: str, command: str | None = None) -> NoReturn:
    """Print ``mpc-import-bridge [command]: message`` on one line to stderr and exit 2."""
    prefix = f"{PROGRAM} {command}" if command else PROGRAM
    sys.stderr.write(f"{prefix}: {one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG)


@contextlib.contextmanager
def config_errors_exit(command: str | None = None) -> Iterator[None]:
    """Turn a :class:`~bridge.config.ConfigError` raised inside into one line and exit 2 (the
    ``bridge`` commands and ``workers.settings`` both end this way)."""
    try:
        yield
    except ConfigError as exc:
        exit_with_config_error(str(exc), command)
