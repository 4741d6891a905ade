"""A reference receiver for the bridge's webhooks: a short standalone program to start from.

It verifies each request's signature (Standard Webhooks, with the ``standardwebhooks`` package),
drops what it already handled (by ``webhook-id``), applies each watch's events strictly in
``position`` order, and when a position is missing asks the bridge's API for the events after
the last one it applied: the ones its filters match are applied (they were missed), the others
are stepped over (the subscription leaves them out). docs/webhooks.md explains each step.

    python examples/receiver.py --port 8090 --secret whsec_... --api-url http://127.0.0.1:8080 \\
        --api-key KEY [--event-types bulk.finished,import.completed]

``POST /`` takes deliveries; ``GET /applied`` shows, per watch, the event ids applied so far, in
order. State is kept in memory: a real receiver keeps it in its database, updated in the same
transaction as each event's effect.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PAGE_SIZE = 500
"""Events per page when catching up (the API's maximum)."""
API_TIMEOUT_S = 10.0


def matches(patterns: list[str] | None, event_type: str) -> bool:
    """The subscription's filter: exact types, ``family.*``, or ``*`` (``None``: every type)."""
    if patterns is None:
        return True
    return any(
        p in ("*", event_type) or (p.endswith(".*") and event_type.startswith(p[:-1])) for p in patterns
    )


class Receiver:
    def __init__(self, secret: str, api_url: str, api_key: str, event_types: list[str] | None) -> None:
        self.webhook = Webhook(secret)
        self.api = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=API_TIMEOUT_S
        )
        self.event_types = event_types
        self.lock = threading.Lock()
        self.seen: set[str] = set()  # webhook-ids handled (a database's unique key in production)
        self.position: dict[str, int] = {}  # per watch: the last position applied or stepped over
        self.early: dict[str, dict[int, dict[str, Any]]] = {}  # per watch: arrived before their turn
        self.applied: dict[str, list[str]] = {}

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        """The HTTP status to answer."""
        try:
            payload = self.webhook.verify(body, headers)
        except WebhookVerificationError:
            return 401
        except ValueError:  # signed, but not JSON: not from the bridge
            return 400
        with self.lock:
            if headers["webhook-id"] in self.seen:
                return 204  # a retry or a redelivery of something handled: nothing to do
            data = payload["data"]
            if "position" not in data:  # webhook.test: no watch, nothing to order
                self.seen.add(headers["webhook-id"])
                print(f"test event {data['event_id']}", flush=True)
                return 204
            watch_id = data["watch_id"]
            if data["position"] > self.position.get(watch_id, 0):
                self.early.setdefault(watch_id, {})[data["position"]] = payload
            self.advance(watch_id)
            if self.early.get(watch_id):
                self.catch_up(watch_id)
        return 204

    def advance(self, watch_id: str) -> None:
        early = self.early.get(watch_id, {})
        while self.position.get(watch_id, 0) + 1 in early:
            payload = early.pop(self.position.get(watch_id, 0) + 1)
            self.apply(watch_id, payload)

    def apply(self, watch_id: str, payload: dict[str, Any]) -> None:
        """The event's effect (here: a line on stdout), exactly once and in position order."""
        data = payload["data"]
        self.position[watch_id] = data["position"]
        self.seen.add(data["event_id"])
        self.applied.setdefault(watch_id, []).append(data["event_id"])
        print(f"applied {watch_id} #{data['position']} {payload['type']}", flush=True)

    def catch_up(self, watch_id: str) -> None:
        """Fill the gap before what arrived early from the watch's timeline."""
        params: dict[str, Any] = {"after": self.position.get(watch_id, 0), "limit": PAGE_SIZE}
        while self.early.get(watch_id):
            page = self.api.get(f"/v1/watches/{watch_id}/events", params=params).raise_for_status().json()
            for item in page["items"]:
                position = item["position"]
                if position <= self.position.get(watch_id, 0):
                    continue
                early = self.early.setdefault(watch_id, {})
                if position not in early and not matches(self.event_types, item["type"]):
                    self.position[watch_id] = position  # left out by our filters
                else:
                    early.setdefault(position, {k: item[k] for k in ("type", "timestamp", "data")})
                self.advance(watch_id)
            if page["next_cursor"] is None:
                return
            params = {"cursor": page["next_cursor"], "limit": PAGE_SIZE}


def serve(receiver: Receiver, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with receiver.lock:
                body = json.dumps(receiver.applied).encode()
            self.send_response(200 if self.path == "/applied" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--secret", default=os.environ.get("WEBHOOK_SECRET"))
    parser.add_argument("--api-url", default=os.environ.get("BRIDGE_API_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("BRIDGE_API_KEY"))
    parser.add_argument(
        "--event-types", help="the subscription's event_types, comma-separated (default: all)"
    )
    args = parser.parse_args(argv)
    if not args.secret or not args.api_key:
        parser.error("--secret (or WEBHOOK_SECRET) and --api-key (or BRIDGE_API_KEY) are required")
    event_types = args.event_types.split(",") if args.event_types else None
    receiver = Receiver(args.secret, args.api_url, args.api_key, event_types)
    server = serve(receiver, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"READY receiver http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        receiver.api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
