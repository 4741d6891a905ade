"""A webhook receiver for tests and the demo: records every POST, checks its signature, answers as
scripted.

- ``POST /{path}`` — recorded (headers, exact body, when) and checked against the secrets
  registered for ``path`` (our own Standard Webhooks check, :func:`bridge.webhooks.signing.verify`);
  answered with the next scripted reply for that path, else 204.
- ``PUT /_control/secrets/{path}`` ``{"secrets": ["whsec_..."]}`` — what verifies ``path``.
- ``PUT /_control/script/{path}`` ``{"replies": [{"status": 500}, {"status": 429, "retry_after": "2"},
  {"status": 302, "location": "..."}, {"status": 200, "delay_s": 20}, {"status": 410},
  {"close": true}]}`` — the next answers for ``path``, in order (``close``: the connection is
  closed without an answer).
- ``GET /_control/requests?path=&after=N`` — what was received (seq > N), as JSON.
- ``DELETE /_control/requests`` — forget them, and every script.

In a test: ``async with WebhookReceiver() as receiver`` (127.0.0.1, a free port; optionally TLS).
As a process: ``python -m bridge_tools.webhook_receiver --port 0`` prints
``READY webhook-receiver http://127.0.0.1:PORT`` on stdout, then one line per request on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Final

import msgspec
from aiohttp import web

from bridge.webhooks.signing import HEADER_ID, VerificationFailed, verify
from bridge_tools.processes import LOOPBACK

CONTROL_PREFIX: Final = "/_control"
READY_PREFIX: Final = "READY webhook-receiver "
DEFAULT_STATUS: Final = 204
SHUTDOWN_GRACE_S: Final = 0.5
"""A stand-in answering slowly on purpose is not waited for at shutdown."""


class Reply(msgspec.Struct, kw_only=True, frozen=True):
    """One scripted answer."""

    status: int = DEFAULT_STATUS
    body: str = ""
    retry_after: str | None = None
    location: str | None = None
    delay_s: float = 0.0
    """Wait this long before answering (a slow receiver)."""
    close: bool = False
    """Close the connection instead of answering (after ``delay_s``): no status line at all."""


class Received(msgspec.Struct, kw_only=True):
    seq: int
    path: str
    at: float
    headers: dict[str, str]
    body: bytes
    webhook_id: str | None
    verified: bool | None
    """``None`` when no secret is registered for the path."""
    reason: str
    status: int
    """What the receiver answered."""
    peer: str = ""
    """The sender's address and port: the same for requests that came on one kept-alive connection."""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class ReceivedOut(msgspec.Struct, kw_only=True):
    seq: int
    path: str
    at: float
    headers: dict[str, str]
    body: str
    webhook_id: str | None
    verified: bool | None
    reason: str
    status: int


class _Secrets(msgspec.Struct):
    secrets: list[str]


class _Script(msgspec.Struct):
    replies: list[Reply]


class WebhookReceiver:
    observers: ClassVar[list[Callable[[dict[str, str], bytes], None]]] = []
    """Called with every request's headers and body, by every receiver in this process (the test
    suite checks each delivered payload against its published schema this way)."""

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._on_receive = on_receive
        self._secrets: dict[str, list[str]] = {}
        self._scripts: dict[str, deque[Reply]] = {}
        self.received: list[Received] = []
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> WebhookReceiver:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_put(CONTROL_PREFIX + "/secrets/{path:.+}", self._put_secrets)
        app.router.add_put(CONTROL_PREFIX + "/script/{path:.+}", self._put_script)
        app.router.add_get(CONTROL_PREFIX + "/requests", self._get_requests)
        app.router.add_delete(CONTROL_PREFIX + "/requests", self._reset)
        app.router.add_route("*", "/{path:.*}", self._receive)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str = "hooks") -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # ------------------------------------------------------------------ in-process control

    def set_secrets(self, path: str, secrets: list[str]) -> None:
        self._secrets[path.lstrip("/")] = list(secrets)

    def script(self, path: str, replies: list[Reply]) -> None:
        self._scripts.setdefault(path.lstrip("/"), deque()).extend(replies)

    def requests(self, path: str | None = None) -> list[Received]:
        wanted = None if path is None else path.lstrip("/")
        return [r for r in self.received if wanted is None or r.path == wanted]

    async def wait_for(self, count: int, path: str | None = None, timeout_s: float = 10.0) -> list[Received]:
        """Until ``count`` requests arrived (on ``path``); AssertionError after ``timeout_s``."""
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(self.requests(path)) >= count), timeout_s
                )
            except TimeoutError:
                got = len(self.requests(path))
                raise AssertionError(f"receiver: {got} of {count} requests after {timeout_s}s") from None
        return self.requests(path)

    # ------------------------------------------------------------------ handlers

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        for observe in self.observers:
            observe(headers, body)
        verified, reason = self._verify(path, headers, body)
        queue = self._scripts.get(path)
        reply = queue.popleft() if queue else Reply()
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        record = Received(
            peer=f"{peer[0]}:{peer[1]}" if peer else "",
            seq=len(self.received) + 1,
            path=path,
            at=time.time(),
            headers=headers,
            body=body,
            webhook_id=headers.get(HEADER_ID),
            verified=verified,
            reason=reason,
            status=reply.status,
        )
        async with self._arrived:
            self.received.append(record)
            self._arrived.notify_all()
        if self._on_receive is not None:
            self._on_receive(record)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.close:
            if request.transport is not None:
                request.transport.close()
            # Nothing reaches the client: the transport is closed before aiohttp writes this.
            return web.Response(status=DEFAULT_STATUS)
        answer_headers = {}
        if reply.retry_after is not None:
            answer_headers["Retry-After"] = reply.retry_after
        if reply.location is not None:
            answer_headers["Location"] = reply.location
        return web.Response(status=reply.status, text=reply.body or None, headers=answer_headers)

    def _verify(self, path: str, headers: dict[str, str], body: bytes) -> tuple[bool | None, str]:
        secrets = self._secrets.get(path)
        if not secrets:
            return None, "no secret registered for this path"
        try:
            verify(secrets, headers, body, now=time.time())
        except (VerificationFailed, ValueError) as exc:
            return False, str(exc)
        return True, "ok"

    async def _put_secrets(self, request: web.Request) -> web.Response:
        given = msgspec.json.decode(await request.read(), type=_Secrets)
        self.set_secrets(request.match_info["path"], given.secrets)
        return web.Response(status=204)

    async def _put_script(self, request: web.Request) -> web.Response:
        given = msgspec.json.decode(await request.read(), type=_Script)
        self.script(request.match_info["path"], given.replies)
        return web.Response(status=204)

    async def _get_requests(self, request: web.Request) -> web.Response:
        path = request.query.get("path")
        after = int(request.query.get("after", "0"))
        items = [
            ReceivedOut(
                seq=r.seq,
                path=r.path,
                at=r.at,
                headers=r.headers,
                body=r.text,
                webhook_id=r.webhook_id,
                verified=r.verified,
                reason=r.reason,
                status=r.status,
            )
            for r in self.requests(path)
            if r.seq > after
        ]
        return web.Response(body=msgspec.json.encode(items), content_type="application/json")

    async def _reset(self, _: web.Request) -> web.Response:
        self.received.clear()
        self._scripts.clear()
        return web.Response(status=204)


def describe(received: Received) -> str:
    """One line for a person: what arrived, and whether its signature verified."""
    mark = {True: "verified", False: "BAD SIGNATURE", None: "unchecked"}[received.verified]
    try:
        event = received.json()
        data = event.get("data") or {}
        bulk = f" bulk {data['bulk_id']}" if data.get("bulk_id") is not None else ""
        status = f" {data['status']}" if data.get("status") else ""
        what = f"{event.get('type')}{bulk}{status}"
    except (msgspec.DecodeError, AttributeError):
        what = f"{len(received.body)} bytes (not JSON)"
    return f"/{received.path} {received.webhook_id} {what} [{mark}]"


async def _serve(host: str, port: int) -> None:
    def show(received: Received) -> None:
        # stderr: stdout carries only the READY line, which a parent may read and then leave.
        sys.stderr.write(f"RECEIVED {describe(received)}\n")
        sys.stderr.flush()

    receiver = WebhookReceiver(host=host, port=port, on_receive=show)
    await receiver.start()
    sys.stdout.write(f"{READY_PREFIX}{receiver.base_url}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await receiver.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local webhook receiver that checks signatures.")
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
