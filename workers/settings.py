"""``arq workers.settings.WorkerSettings``: a worker configured from ``BRIDGE_*`` variables.

A wrong or missing variable stops the process here, before arq starts, with one line naming it
and exit code 2 (as every ``bridge`` command does). arq's command line then runs the same worker
as ``bridge worker`` (:func:`bridge.worker.arq_compat.adopt_arq_cli`): it waits for Redis through
a restart instead of exiting, and stops within its drain window.
"""

from __future__ import annotations

import uvloop

from bridge.config import load_settings
from bridge.exits import config_errors_exit
from bridge.logs import configure_logging
from bridge.wiring import worker_options
from bridge.worker.arq_compat import adopt_arq_cli

with config_errors_exit("worker"):
    _settings = load_settings()
    _options = worker_options(_settings)

configure_logging(_settings.log_level, _settings.log_format)
uvloop.install()
adopt_arq_cli(_options)

WorkerSettings = type("WorkerSettings", (), _options)
"""The class arq reads its options from (attributes: see :func:`bridge.worker.settings.arq_options`)."""
