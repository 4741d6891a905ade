"""A Slack message as plain text, roughly as Slack shows it: for the demo, tests and logs.

Headers, sections, fields and context lines become lines; mrkdwn markers (``*bold*``,
``_italics_``, ``~strike~``) are dropped outside inline code, code spans keep their text, links
show their label, and ``&amp;``-style escapes are undone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from bridge.slack.format import unescape

DIVIDER: Final = "─" * 40
_MARKERS: Final = re.compile(r"(?<![\w*_~])([*_~])(?=\S)(.+?)(?<=\S)\1(?![\w*_~])")
_LINK: Final = re.compile(r"<([^<>|]+)\|([^<>]+)>|<([^<>|]+)>")


def mrkdwn_to_plain(text: str) -> str:
    """Slack mrkdwn as the text a reader sees."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):  # outside code spans
        plain = _LINK.sub(lambda m: m.group(2) or m.group(3), parts[index])
        previous = None
        while previous != plain:
            previous, plain = plain, _MARKERS.sub(r"\2", plain)
        parts[index] = plain
    if len(parts) % 2 == 0:  # an unmatched backtick is shown as it is
        tail = parts.pop()
        parts[-1] += "`" + tail
    return unescape("".join(parts))


def _text_of(obj: Any) -> str:
    if not isinstance(obj, Mapping):
        return ""
    text = str(obj.get("text") or "")
    return mrkdwn_to_plain(text) if obj.get("type") == "mrkdwn" else text


def block_lines(block: Mapping[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        title = _text_of(block.get("text"))
        return [title, "═" * min(len(title), 60)]
    if kind == "section":
        lines = _text_of(block.get("text")).splitlines() if block.get("text") else []
        for field in block.get("fields") or []:
            lines += _text_of(field).splitlines()
        return lines
    if kind == "context":
        return ["  ".join(_text_of(element) for element in block.get("elements") or [])]
    if kind == "divider":
        return [DIVIDER]
    return [f"[{kind} block]"]


def message_lines(message: Mapping[str, Any]) -> list[str]:
    """The lines of a message (its blocks; its fallback text when it has none)."""
    blocks = message.get("blocks") or []
    if not blocks:
        return mrkdwn_to_plain(str(message.get("text") or "")).splitlines()
    lines: list[str] = []
    for block in blocks:
        lines += block_lines(block)
    return lines


def message_text(message: Mapping[str, Any]) -> str:
    return "\n".join(message_lines(message))
