"""The demo's Slack card printer, against the stand-in run as a process (as ``make demo`` does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.slack.render import render_card
from bridge_tools.processes import Process
from bridge_tools.slack_demo import SlackCardPrinter
from tests.unit.slack.samples import CARDS

CHANNEL = "C0DEMO0001"


@pytest.fixture
def printer(tmp_path: Path) -> Iterator[tuple[SlackCardPrinter, list[str]]]:
    lines: list[str] = []
    procs: list[Process] = []
    card_printer = SlackCardPrinter(tmp_path, CHANNEL, lines.append, lambda text: text)
    try:
        env = card_printer.start(procs, timeout_s=20)
        assert env == {
            "BRIDGE_SLACK_BOT_TOKEN": card_printer.token,
            "BRIDGE_SLACK_API_URL": card_printer.url + "/api/",
        }
        yield card_printer, lines
    finally:
        for proc in procs:
            proc.stop()
            if proc.popen is not None and proc.popen.stdout is not None:
                proc.popen.stdout.close()


def post(printer: SlackCardPrinter, method: str, **payload: object) -> dict[str, object]:
    answer = httpx.post(
        f"{printer.url}/api/{method}", json=payload, headers={"Authorization": f"Bearer {printer.token}"}
    ).json()
    assert answer["ok"], answer
    result: dict[str, object] = answer
    return result


def test_the_card_is_printed_when_posted_and_each_time_it_is_updated_after_its_events(
    printer: tuple[SlackCardPrinter, list[str]],
) -> None:
    card_printer, lines = printer
    assert card_printer.show_changes(0) is False  # nothing posted yet
    spec, snapshot, _ = CARDS["card-in-progress"]
    first = render_card(spec, snapshot, "active").message
    posted = post(card_printer, "chat.postMessage", channel=CHANNEL, text=first.text, blocks=first.blocks)
    assert (
        card_printer.show_changes(events_shown=first_rev(first.blocks) - 1) is False
    )  # its events come first
    assert card_printer.show_changes(events_shown=first_rev(first.blocks)) is True
    assert any("import card posted" in line for line in lines)
    assert any("Bulk 4102 · waiting for retry" in line for line in lines)
    assert card_printer.show_changes(events_shown=99) is False  # unchanged: not printed again

    spec, snapshot, _ = CARDS["card-completed"]
    final = render_card(spec, snapshot, "completed").message
    post(card_printer, "chat.update", channel=CHANNEL, ts=posted["ts"], text=final.text, blocks=final.blocks)
    assert card_printer.settle(timeout_s=10) is True
    assert any("updated in place (chat.update #1)" in line for line in lines)
    assert any("🏁 Completed" in line for line in lines)
    assert card_printer.thread_summary().startswith(
        f"Slack #{CHANNEL}: one card, updated 1 times; 0 thread replies"
    )


def first_rev(blocks: list[dict[str, object]]) -> int:
    return int(str(blocks[0]["block_id"]).removeprefix("card-rev-"))
