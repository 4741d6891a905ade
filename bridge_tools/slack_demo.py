"""The demo's Slack: the stand-in as a process, and the import card printed each time it changes.

Used by :mod:`bridge_tools.demo`; kept apart so the demo only starts it, passes its environment to the
bridge and asks it to show what changed.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx

from bridge.slack.plain import message_lines
from bridge.slack.render import CARD_BLOCK_ID_PREFIX
from bridge_tools.processes import Process
from bridge_tools.slack_standin import READY_PREFIX

BOX_WIDTH: Final = 100
SETTLE_POLL_S: Final = 0.3
QUIET_S: Final = 2.5
"""The card is final once it shows the verdict and has not changed for this long."""
VERDICT_MARKERS: Final = ("Completed", "Stopped", "Expired")


class SlackCardPrinter:
    """Runs the Slack stand-in and prints the demo channel's card whenever it changes."""

    def __init__(
        self, workdir: Path, channel: str, line: Callable[[str], None], dim: Callable[[str], str]
    ) -> None:
        self.workdir = workdir
        self.channel = channel
        self.token = "xoxb-demo-" + secrets.token_hex(12)
        self.url = ""
        self._line = line
        self._dim = dim
        self._shown: tuple[str, int] | None = None
        self._changed_at = time.monotonic()
        self.card: dict[str, Any] | None = None

    def start(self, procs: list[Process], timeout_s: float) -> dict[str, str]:
        """Start the stand-in; returns the ``BRIDGE_SLACK_*`` variables pointing the bridge at it."""
        argv = [sys.executable, "-m", "bridge_tools.slack_standin", "--port", "0", "--token", self.token]
        proc = Process(argv, self.workdir / "slack.log").start(stdout_pipe=True)
        procs.append(proc)
        assert proc.popen is not None and proc.popen.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = proc.popen.stdout.readline().decode(errors="replace")
            if not line:
                break
            if line.startswith(READY_PREFIX):
                self.url = line[len(READY_PREFIX) :].strip()
                return {"BRIDGE_SLACK_BOT_TOKEN": self.token, "BRIDGE_SLACK_API_URL": self.url + "/api/"}
        raise RuntimeError("the Slack stand-in did not start")

    def _fetch(self) -> dict[str, Any] | None:
        try:
            view = httpx.get(f"{self.url}/_control/messages", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None
        cards = [m for m in view.get("messages", []) if m.get("channel") == self.channel]
        return cards[-1] if cards else None

    def show_changes(self, events_shown: int | None = None) -> bool:
        """Print the card if it was posted or updated since the last look.

        With ``events_shown`` (event lines printed so far), a card reflecting more events than
        that waits for their lines: its revision counts the events it shows.
        """
        card = self._fetch()
        if card is None:
            return False
        if events_shown is not None and _rev(card) > events_shown:
            return False
        self.card = card
        key = (str(card["ts"]), int(card["update_count"]))
        if key == self._shown:
            return False
        first = self._shown is None
        self._shown = key
        self._changed_at = time.monotonic()
        what = "posted" if first else f"updated in place (chat.update #{card['update_count']})"
        self.print_card(card, f"Slack #{self.channel} · import card {what}")
        return True

    def print_card(self, card: dict[str, Any], title: str) -> None:
        top = f"┌─ {title} "
        self._line("")
        self._line("  " + self._dim(top + "─" * max(0, BOX_WIDTH - len(top))))
        for text in message_lines(card):
            self._line("  " + self._dim("│ ") + text)
        self._line("  " + self._dim("└" + "─" * (BOX_WIDTH - 1)))
        self._line("")

    def settle(self, timeout_s: float) -> bool:
        """After the import completed: wait for the card's verdict, printing any change."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.show_changes()
            shows_verdict = self.card is not None and any(
                marker in line for line in message_lines(self.card) for marker in VERDICT_MARKERS
            )
            if shows_verdict and time.monotonic() - self._changed_at >= QUIET_S:
                return True
            time.sleep(SETTLE_POLL_S)
        return False

    def thread_summary(self) -> str:
        if self.card is None:
            return "Slack: no card was posted (see slack.log and worker.log)"
        replies = self.card.get("replies") or []
        broadcast = sum(1 for reply in replies if reply.get("reply_broadcast"))
        return (
            f"Slack #{self.channel}: one card, updated {self.card['update_count']} times; "
            f"{len(replies)} thread replies, {broadcast} also broadcast to the channel"
        )


def _rev(card: dict[str, Any]) -> int:
    blocks = card.get("blocks") or [{}]
    block_id = str(blocks[0].get("block_id") or "")
    try:
        return int(block_id.removeprefix(CARD_BLOCK_ID_PREFIX))
    except ValueError:
        return 0
