"""The ``bridge`` command: run the API, a worker, the MPC simulator or the demo."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from bridge import __version__
from bridge.config import ConfigError, Settings, load_settings

EXIT_CONFIG: int = 2


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    click.echo(f"mpc-import-bridge: {message}", err=True)
    sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mpc-import-bridge")
def main() -> None:
    """mpc-import-bridge: watch Placewise MPC member imports, announce every bulk status change."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
def api(host: str, port: int) -> None:
    """Run the HTTP API (configuration from BRIDGE_* variables)."""
    import uvicorn

    from bridge.app import create_app
    from bridge.logs import configure_logging

    settings = _settings()
    try:
        app = create_app(settings)
    except ConfigError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(app, host=host, port=port, log_config=None, loop="uvloop", timeout_graceful_shutdown=10)


@main.command()
def worker() -> None:
    """Run a worker: polls MPC and delivers events (same as `arq workers.settings.WorkerSettings`)."""
    import uvloop
    from arq.worker import Worker

    from bridge.logs import configure_logging
    from bridge.worker import worker_settings

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    uvloop.install()
    Worker(**worker_settings(settings)).run()


@main.command()
@click.option("--keep-logs", is_flag=True, help="Keep the processes' log files after the demo.")
@click.option(
    "--time-scale", default=1.0, show_default=True, type=float, help="Speed of the simulated import."
)
def demo(keep_logs: bool, time_scale: float) -> None:
    """Watch a simulated import end to end: Redis, simulator, API and worker on this machine."""
    from bridge.demo import run_demo

    sys.exit(run_demo(keep_logs=keep_logs, time_scale=time_scale))


def _register_simulator() -> None:
    from bridge.simulator.cli import simulator_command

    main.add_command(simulator_command, name="simulator")


_register_simulator()
