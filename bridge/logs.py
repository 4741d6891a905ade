"""Logging: structlog, JSON lines on stdout (a readable console renderer on a terminal).

The standard library's loggers (arq, uvicorn, litestar) go through the same processors, so every
line of a process has one format. Context such as ``watch_id``, ``event_id`` and ``job_id`` is
bound with :func:`structlog.contextvars.bound_contextvars` where it is known.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final, Literal

import structlog

LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
QUIET_LOGGERS: Final = ("httpx", "httpcore", "aiohttp.access", "hpack", "slack_sdk")
"""Chatty libraries kept at WARNING: a request log line per poll would drown everything."""


def _renderer(fmt: Literal["auto", "json", "console"]) -> Any:
    console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    if console:
        return structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    return structlog.processors.JSONRenderer()


def configure_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    numeric = LOG_LEVELS.get(level, logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker", "arq.jobs"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
