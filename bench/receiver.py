"""A webhook receiver that only counts: ``python -m bench.receiver --port 0``.

Prints ``READY bench-receiver http://127.0.0.1:PORT`` on stdout (``https://`` with ``--tls-cert``
and ``--tls-key``: PEM files, e.g. issued by :class:`bridge_tools.tls.ThrowawayCa`).
``POST /{path}`` answers 204 at once, counting the request and its ``webhook-id`` per path, with
the time of the first and last one; one request in ``--sample-every`` is kept whole (headers and
body) so the bench can check its signature afterwards. Nothing heavy happens per request: the
bridge's delivery rate, not the receiver, is what is measured.

- ``GET /_stats?path=P`` — ``{"count", "distinct_ids", "first_at", "last_at", "samples"}``;
- ``GET /_wait?path=P&count=N&timeout=S`` — answers once ``N`` requests came to ``P`` (or after
  ``S`` seconds), with the same document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import time
from pathlib import Path
from typing import Any, Final

import uvloop
from aiohttp import web

from bridge_tools.processes import LOOPBACK
from bridge_tools.tls import ServerFiles, server_context

READY_PREFIX: Final = "READY bench-receiver "
SIGNATURE_HEADERS: Final = ("webhook-id", "webhook-timestamp", "webhook-signature")


class PathStats:
    def __init__(self) -> None:
        self.count = 0
        self.ids: set[str] = set()
        self.first_at = 0.0
        self.last_at = 0.0
        self.samples: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def doc(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "distinct_ids": len(self.ids),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "samples": self.samples,
        }


class Receiver:
    def __init__(self, sample_every: int) -> None:
        self.sample_every = sample_every
        self.paths: dict[str, PathStats] = {}

    def stats(self, path: str) -> PathStats:
        found = self.paths.get(path)
        if found is None:
            found = self.paths[path] = PathStats()
        return found

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.time()
        stats = self.stats(request.match_info["path"])
        stats.count += 1
        if stats.count == 1:
            stats.first_at = now
        stats.last_at = now
        stats.arrived.set()
        webhook_id = request.headers.get("webhook-id")
        if webhook_id is not None:
            stats.ids.add(webhook_id)
        if stats.count % self.sample_every == 1 or self.sample_every == 1:
            headers = {name: request.headers.get(name, "") for name in SIGNATURE_HEADERS}
            stats.samples.append({"headers": headers, "body": body.decode()})
        return web.Response(status=204)

    async def show(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats(request.query["path"]).doc())

    async def wait(self, request: web.Request) -> web.Response:
        stats = self.stats(request.query["path"])
        count = int(request.query["count"])
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(float(request.query.get("timeout", "60"))):
                while stats.count < count:
                    stats.arrived.clear()
                    await stats.arrived.wait()
        return web.json_response(stats.doc())


async def serve(port: int, sample_every: int, tls: ssl.SSLContext | None = None) -> None:
    receiver = Receiver(sample_every)
    app = web.Application()
    app.router.add_get("/_stats", receiver.show)
    app.router.add_get("/_wait", receiver.wait)
    app.router.add_post("/{path}", receiver.receive)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port, ssl_context=tls).start()
    bound = int(runner.addresses[0][1])
    scheme = "http" if tls is None else "https"
    print(f"{READY_PREFIX}{scheme}://{LOOPBACK}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--tls-cert", type=Path, help="serve https with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="the certificate's key (PEM)")
    args = parser.parse_args()
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    tls = None if args.tls_cert is None else server_context(ServerFiles(args.tls_cert, args.tls_key))
    uvloop.run(serve(args.port, args.sample_every, tls))


if __name__ == "__main__":
    main()
