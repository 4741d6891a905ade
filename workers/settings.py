"""``arq workers.settings.WorkerSettings``: a worker configured from ``BRIDGE_*`` variables.

A wrong variable stops the process here, before arq starts, with one line naming it.
"""

from __future__ import annotations

import sys

import uvloop

from bridge.config import ConfigError, load_settings
from bridge.logs import configure_logging
from bridge.wiring import worker_options

try:
    _settings = load_settings()
except ConfigError as exc:
    sys.stderr.write(f"mpc-import-bridge worker: {exc}\n")
    raise SystemExit(2) from None

configure_logging(_settings.log_level, _settings.log_format)
uvloop.install()

WorkerSettings = type("WorkerSettings", (), worker_options(_settings))
"""The class arq reads its options from (attributes: see :func:`bridge.worker.settings.arq_options`)."""
