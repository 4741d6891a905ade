"""Slack's limits and the text helpers that keep every message inside them.

Slack refuses a message with more than 50 blocks, a section whose text passes 3,000 characters or
a header past 150 (docs.slack.dev/reference/block-kit/blocks; the same numbers are validators in
``slack_sdk.models``). The bridge never lets Slack refuse a message for its size: text is
summarised first (the renderer chooses what matters), then cut here with "+N more" or "…".

Lengths are counted in UTF-16 code units, the larger of the ways a server may count characters
(an emoji such as 🔁 is one code point but two units), so a text that fits here fits Slack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

MAX_BLOCKS: Final = 50
"""Blocks in one message (Slack refuses more)."""
MAX_SECTION_TEXT: Final = 3000
"""Characters of a section block's text."""
MAX_HEADER_TEXT: Final = 150
"""Characters of a header block's (plain) text."""
MAX_CONTEXT_TEXT: Final = 2000
"""Characters of one context element: Slack documents no lower bound than section text; the
bridge keeps context lines short anyway."""
MAX_FALLBACK_TEXT: Final = 3000
"""Characters of a message's fallback ``text``: Slack accepts 40,000, but the fallback is what a
notification or a screen reader shows, so one readable paragraph is enough."""
MAX_BLOCK_ID: Final = 255
"""Characters of a ``block_id``."""

ELLIPSIS: Final = "…"
_ESCAPES: Final = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


def slack_len(text: str) -> int:
    """Length in UTF-16 code units (never less than the number of code points)."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int) -> str:
    """``text`` if it fits ``limit``, else cut with ``…`` so that it does (never a broken surrogate)."""
    if slack_len(text) <= limit:
        return text
    budget = limit - slack_len(ELLIPSIS)
    out: list[str] = []
    used = 0
    for char in text:
        size = slack_len(char)
        if used + size > budget:
            break
        out.append(char)
        used += size
    return "".join(out).rstrip() + ELLIPSIS


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves for links and mentions."""
    for raw, entity in _ESCAPES:
        text = text.replace(raw, entity)
    return text


def unescape(text: str) -> str:
    for raw, entity in reversed(_ESCAPES):
        text = text.replace(entity, raw)
    return text


def code(text: str, limit: int = 200) -> str:
    """Inline code: shown verbatim (no bold, italics or auto-linked e-mail addresses inside)."""
    flat = " ".join(text.replace("`", "'").split()) or "-"
    return f"`{escape(fit(flat, limit))}`"


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def pack_lines(
    lines: Sequence[str],
    *,
    max_chars: int = MAX_SECTION_TEXT,
    max_chunks: int,
    more: Callable[[int], str],
    heading: str = "",
) -> list[str]:
    """Lines joined into at most ``max_chunks`` texts of at most ``max_chars`` each.

    Lines that do not fit are left out and counted: the last text then ends with ``more(n)``.
    The first text starts with ``heading``. A single line longer than a text is cut with ``…``.
    """
    if max_chunks < 1:
        raise ValueError("max_chunks must be at least 1")
    chunks: list[list[str]] = []
    current: list[str] = [fit(heading, max_chars)] if heading else []
    left = 0
    for index, raw in enumerate(lines):
        line = fit(raw, max_chars)
        if _joined_len([*current, line]) <= max_chars:
            current.append(line)
        elif len(chunks) + 1 < max_chunks:
            chunks.append(current)
            current = [line]
        else:
            left = len(lines) - index
            break
    if left:
        keep = 1 if heading and not chunks else 0
        while len(current) > keep and _joined_len([*current, more(left)]) > max_chars:
            current.pop()
            left += 1
        tail = fit(more(left), max_chars)
        if current and _joined_len([*current, tail]) > max_chars:  # only a long heading is left
            room = max_chars - slack_len(tail) - 1
            current = [fit(current[0], room)] if room > slack_len(ELLIPSIS) else []
        current.append(tail)
    chunks.append(current)
    return ["\n".join(chunk) for chunk in chunks if chunk]


def _joined_len(lines: Sequence[str]) -> int:
    return sum(slack_len(line) for line in lines) + max(0, len(lines) - 1)
