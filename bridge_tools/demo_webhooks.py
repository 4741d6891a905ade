"""The demo's webhook part: a local receiver, a subscription made through the API, and a line
for every webhook the receiver got, with whether its signature verified.

The receiver runs as its own process (:mod:`bridge_tools.webhook_receiver`); the demo gives
it the subscription's secret and reads what it received through its control routes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from bridge_tools.processes import LOOPBACK, Process
from bridge_tools.webhook_receiver import CONTROL_PREFIX, READY_PREFIX

DEMO_HOOK_PATH: Final = "hooks/demo"
ALLOW_LOOPBACK: Final = {"BRIDGE_WEBHOOK_ALLOW_CIDRS": f"{LOOPBACK}/32"}
"""The receiver listens on loopback over plain http: the bridge must be told that is allowed."""
SETTLE_TIMEOUT_S: Final = 10.0
"""After the import completed, how long the demo waits for the last webhooks to arrive."""
CHECK: Final = "✓"
"""Printed for a webhook whose signature verified with the subscription's secret."""
CROSS: Final = "✗"


def _read_ready(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX) :].strip()
    raise RuntimeError("the webhook receiver did not start")


class DemoWebhooks:
    """Receiver process, subscription, and the printing of what arrives."""

    def __init__(self, procs: list[Process], workdir: Path, line: Callable[[str], None]) -> None:
        self._procs = procs
        """The demo's processes: the receiver joins them, so it is stopped with them."""
        self._workdir = workdir
        self._line = line
        self.receiver_url = ""
        self.subscription_id = ""
        self._seen = 0
        self.verified = 0
        self.unverified = 0

    def start_receiver(self, timeout_s: float) -> str:
        argv = [sys.executable, "-m", "bridge_tools.webhook_receiver", "--port", "0"]
        proc = Process(argv, self._workdir / "webhook-receiver.log").start(stdout_pipe=True)
        self._procs.append(proc)
        assert proc.popen is not None
        self.receiver_url = _read_ready(proc.popen, timeout_s)
        return self.receiver_url

    def subscribe(self, api: httpx.Client) -> None:
        """Subscribe the receiver to every event through the API, and give it the secret."""
        url = f"{self.receiver_url}/{DEMO_HOOK_PATH}"
        created = api.post("/v1/subscriptions", json={"url": url})
        created.raise_for_status()
        body = created.json()
        self.subscription_id = body["id"]
        httpx.put(
            f"{self.receiver_url}{CONTROL_PREFIX}/secrets/{DEMO_HOOK_PATH}",
            json={"secrets": [body["secret"]]},
            timeout=5,
        ).raise_for_status()
        self._line(
            f"POST /v1/subscriptions → {created.status_code}, subscription {self.subscription_id}: "
            f"every event, signed, to {url}"
        )

    def received(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.receiver_url}{CONTROL_PREFIX}/requests",
            params={"path": DEMO_HOOK_PATH, "after": self._seen},
            timeout=5,
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()
        return items

    def print_new(self, stamp: str, paint: Callable[[str, str], str]) -> int:
        """A line per webhook that arrived since the last call; how many there were."""
        items = self.received()
        for item in items:
            self._seen = max(self._seen, item["seq"])
            ok = item["verified"] is True
            self.verified += ok
            self.unverified += not ok
            mark = paint(f"webhook {CHECK}", "32") if ok else paint(f"webhook {CROSS} {item['reason']}", "31")
            self._line(f"  {stamp}  {mark}  {_summary(item['body'])}")
        return len(items)

    def settle(self, expected: int, stamp: Callable[[], str], paint: Callable[[str, str], str]) -> None:
        """Print what is still arriving until ``expected`` webhooks came (or the time is up)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self.verified + self.unverified < expected and time.monotonic() < deadline:
            if not self.print_new(stamp(), paint):
                time.sleep(0.2)

    def print_summary(self) -> None:
        total = self.verified + self.unverified
        verdict = "all signatures verified" if not self.unverified else f"{self.unverified} NOT verified"
        self._line(f"Webhook receiver: {total} deliveries to subscription {self.subscription_id}, {verdict}")


def _summary(body: str) -> str:
    try:
        event = msgspec.json.decode(body)
        data = event.get("data") or {}
    except (msgspec.DecodeError, AttributeError):
        return f"{len(body)} bytes, not JSON"
    bulk = f"bulk {data['bulk_id']}" if data.get("bulk_id") is not None else "import"
    status = str(data.get("status") or "")
    return f"{event.get('type', '?'):<17} {bulk:<10}{status:<19} webhook-id {data.get('event_id')}"
