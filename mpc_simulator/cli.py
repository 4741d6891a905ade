"""``bridge simulator``: the MPC stand-in as a process, for the demo, tests and benchmarks.

Prints ``READY simulator http://HOST:PORT`` once listening (and ``DEMO IMPORT <slug> <import_id>``
with ``--demo``), then nothing more on stdout: a parent that stops reading after the banner must
never block the simulator on a full pipe. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Final

import click

from mpc_simulator.server import start
from mpc_simulator.state import DEFAULT_REQUEST_LOG_SIZE, DEFAULT_TOKEN

DEFAULT_PORT: Final = 8081
READY_PREFIX: Final = "READY simulator"
DEMO_PREFIX: Final = "DEMO IMPORT"


def _parse_clubs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    clubs: dict[str, str] = {}
    for value in values:
        slug, sep, token = value.partition("=")
        if not sep or not slug or not token:
            raise click.BadParameter(f"expected SLUG=TOKEN, got {value!r}", ctx=ctx, param=param)
        clubs[slug] = token
    return clubs


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: it roughly doubles what one simulator process can answer."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a project dependency
        return None
    return uvloop.new_event_loop


async def _serve(
    host: str,
    port: int,
    token: str | None,
    clubs: dict[str, str],
    demo: bool,
    time_scale: float,
    seed: int | None,
    request_log: int,
) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        try:
            running = await start(
                host,
                port,
                default_token=token,
                clubs=clubs,
                seed=seed,
                request_log_size=request_log,
                time_scale=time_scale,
                demo=demo,
            )
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
        try:
            lines = [f"{READY_PREFIX} {running.url}"]
            if running.demo is not None:
                ref = running.demo.imports[0]
                lines.append(f"{DEMO_PREFIX} {ref.slug} {ref.import_id}")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            await stopping.wait()
        finally:
            await running.stop()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535), help="0 = a free port."
)
@click.option(
    "--token",
    default=DEFAULT_TOKEN,
    show_default=True,
    help="Token accepted for every club without its own ('' = accept any token).",
)
@click.option(
    "--club", "clubs", multiple=True, metavar="SLUG=TOKEN", callback=_parse_clubs, help="A club's own token."
)
@click.option("--demo", is_flag=True, help="Play the demo import (prints DEMO IMPORT <slug> <import_id>).")
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True),
    help="Speed factor of scenarios (10 = ten times faster).",
)
@click.option("--seed", type=int, default=None, help="Seed of fault probabilities and scenarios.")
@click.option(
    "--request-log",
    default=DEFAULT_REQUEST_LOG_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Request log entries kept.",
)
def simulator_command(
    host: str,
    port: int,
    token: str,
    clubs: dict[str, str],
    demo: bool,
    time_scale: float,
    seed: int | None,
    request_log: int,
) -> None:
    """Serve the Placewise MPC member-import endpoints from memory, with a control API under /_control/."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(host, port, token or None, clubs, demo, time_scale, seed, request_log))
