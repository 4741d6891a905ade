"""The ``bridge`` command: run the API, a worker, the MPC simulator or the demo."""

from __future__ import annotations

import math
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
    # On SIGTERM uvicorn stops accepting, lets requests in flight finish for the drain, then
    # cancels what is left and runs the lifespan's shutdown (closing Redis).
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        loop="uvloop",
        timeout_graceful_shutdown=math.ceil(settings.api_drain_s),
    )


@main.command()
@click.option(
    "--check",
    is_flag=True,
    help="Exit 0 when this host's worker recorded its health lately, 1 otherwise (a liveness probe).",
)
def worker(check: bool) -> None:
    """Run a worker: polls MPC and delivers events (like `arq workers.settings.WorkerSettings`,
    with a prompt, bounded shutdown)."""
    import uvloop

    from bridge.logs import configure_logging
    from bridge.worker import BridgeWorker, check_health, worker_settings

    settings = _settings()
    if check:
        import asyncio

        record = asyncio.run(check_health(settings))
        click.echo(f"worker health: {record or 'no record lately'}")
        sys.exit(0 if record else 1)
    configure_logging(settings.log_level, settings.log_format)
    uvloop.install()
    BridgeWorker(**worker_settings(settings)).run()


@main.command()
@click.option("--role", type=click.Choice(["api", "worker", "simulator"]), help="Default: this container's.")
@click.option("--port", type=int, help="Port of the API or simulator. Default: from the container's command.")
def healthcheck(role: str | None, port: int | None) -> None:
    """Check the bridge process this container runs (the image's HEALTHCHECK); exit 0 when healthy."""
    from bridge.healthcheck import check, main_command, role_of

    detected, detected_port = role_of(main_command())
    chosen = role or detected
    try:
        healthy, why = check(chosen, port if port is not None else detected_port)  # type: ignore[arg-type]
    except ConfigError as exc:
        _fail(str(exc))
    click.echo(("healthy: " if healthy else "unhealthy: ") + why)
    sys.exit(0 if healthy else 1)


@main.command("config-reference")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "env"]),
    default="markdown",
    show_default=True,
    help="markdown: docs/configuration.md; env: deploy/.env.example.",
)
def config_reference(fmt: str) -> None:
    """Print every BRIDGE_* variable with its default and meaning."""
    from bridge.config_docs import render

    click.echo(render(fmt), nl=False)  # type: ignore[arg-type]


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
