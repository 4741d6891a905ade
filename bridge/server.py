"""The API under uvicorn, as ``bridge api`` runs it, with an exit code that says how it stopped.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in flight finish for
its graceful-shutdown timeout (``BRIDGE_API_DRAIN_S``), cancels what still runs, and runs the
lifespan's shutdown (closing Redis). Then uvicorn raises the signal again, so a process that had
drained cleanly died of SIGTERM all the same (143 under tini). Here the drain is the answer to the
signal: the process exits 0 when every request finished, and 3 (``drain cut short``, logged with
what was cancelled) when the deadline cut some short.

:class:`DrainingServer` overrides parts of uvicorn's ``Server`` (``capture_signals``,
``handle_exit``, to end never-ending responses such as the console's live streams before the
drain, ``main_loop``, to tick once a second, and the internal ``_wait_tasks_to_complete``),
written against :data:`UVICORN_VERSION`
(a test fails when another uvicorn is installed); ``tests/integration/test_shutdown.py`` checks
both exit codes with a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final

import uvicorn
from uvicorn.server import HANDLED_SIGNALS

from bridge.exits import EXIT_DRAIN_CUT_SHORT, EXIT_FAILURE, EXIT_OK
from bridge.logs import get_logger

UVICORN_VERSION: Final = "0.54.0"
"""The uvicorn release whose ``Server`` internals :class:`DrainingServer` overrides."""

TICK_S: Final = 1.0
"""uvicorn's housekeeping tick (the ``Date`` header, refreshed once a second anyway): uvicorn's own
loop wakes every 0.1 s, ten times a second in an API with nothing to do. A signal ends the wait at
once, so shutdown starts as promptly as before."""
UVICORN_TICKS_PER_S: Final = 10
"""uvicorn's ``on_tick`` refreshes the ``Date`` header when its counter is a multiple of this."""

log = get_logger("bridge.api")


@dataclass(frozen=True)
class Left:
    """What was still open when the drain's deadline came."""

    requests: int
    connections: int


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` that remembers whether its drain finished, and does not die of the signal."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.left: Left | None = None
        self._on_stop = on_stop
        self._exit_requested: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        # uvicorn's, ticking every TICK_S instead of every 0.1 s, and woken by a signal.
        self._loop = asyncio.get_running_loop()
        self._exit_requested = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + UVICORN_TICKS_PER_S) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), TICK_S)
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Before the drain starts: responses that never end by themselves (the console's live
        # streams) are told to end, so they do not hold the drain to its deadline.
        super().handle_exit(sig, frame)
        if self._loop is not None and self._exit_requested is not None:
            # Called as a signal handler: call_soon_threadsafe is what may be used from one.
            self._loop.call_soon_threadsafe(self._exit_requested.set)
        if self._on_stop is not None:
            on_stop, self._on_stop = self._on_stop, None
            on_stop()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own, without raising the captured signal again once the server has stopped.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def _wait_tasks_to_complete(self) -> None:
        # uvicorn waits for this under its graceful-shutdown timeout and cancels it at the deadline.
        try:
            await super()._wait_tasks_to_complete()
        except asyncio.CancelledError:
            state = self.server_state
            if state.tasks or state.connections:
                self.left = Left(requests=len(state.tasks), connections=len(state.connections))
            raise


def serve(
    app: Any, *, host: str, port: int, drain_s: float, on_stop: Callable[[], None] | None = None
) -> int:
    """Run ``app`` until SIGTERM/SIGINT; returns the process's exit code (see :mod:`bridge.exits`).
    ``on_stop`` runs once when the signal comes, before the drain (from the signal handler)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        loop="uvloop",
        http="httptools",  # the C parser: h11, the pure-Python default, was ~20 % of the API's CPU
        timeout_graceful_shutdown=math.ceil(drain_s),
    )
    server = DrainingServer(config, on_stop)
    try:
        server.run()
    except SystemExit as exc:
        # uvicorn exits by itself when it cannot listen or the app fails to start (it logged why).
        return EXIT_OK if exc.code in (None, 0) else EXIT_FAILURE
    if not server.started:
        return EXIT_FAILURE
    if server.left is not None or server.force_exit:
        left = server.left or Left(requests=0, connections=0)
        log.error(
            "drain cut short",
            drain_s=drain_s,
            requests_cancelled=left.requests,
            connections_closed=left.connections,
            forced=server.force_exit,
        )
        return EXIT_DRAIN_CUT_SHORT
    log.info("api stopped, drained")
    return EXIT_OK
