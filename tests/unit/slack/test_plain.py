"""Slack messages as plain text (what the demo prints and the tests read)."""

from __future__ import annotations

from bridge.slack.plain import DIVIDER, message_lines, message_text, mrkdwn_to_plain


def test_markers_are_dropped_outside_code_and_kept_inside() -> None:
    assert mrkdwn_to_plain("✅ *Bulk 4101* · _finished_ · ~old~") == "✅ Bulk 4101 · finished · old"
    assert mrkdwn_to_plain("`j***@example.com` and `*x*`") == "j***@example.com and *x*"
    assert mrkdwn_to_plain("value_not_match stays") == "value_not_match stays"


def test_links_show_their_label_and_escapes_are_undone() -> None:
    assert mrkdwn_to_plain("see <https://x.example/a|the docs> &amp; <https://y.example>") == (
        "see the docs & https://y.example"
    )


def test_an_unmatched_backtick_is_shown() -> None:
    assert mrkdwn_to_plain("a `b") == "a `b"


def test_blocks_become_lines_and_a_message_without_blocks_shows_its_text() -> None:
    message = {
        "text": "fallback",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Title"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*a*\nb"}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": "f1"}, {"type": "plain_text", "text": "f2"}],
            },
            {"type": "divider"},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "c1"}, {"type": "mrkdwn", "text": "c2"}],
            },
            {"type": "image", "image_url": "https://x.example/i.png", "alt_text": "i"},
        ],
    }
    assert message_lines(message) == [
        "Title",
        "═════",
        "a",
        "b",
        "f1",
        "f2",
        DIVIDER,
        "c1  c2",
        "[image block]",
    ]
    assert message_text({"text": "*only* text"}) == "only text"
