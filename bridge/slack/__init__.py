"""Slack delivery: the import card and its thread (bot token), or one message per event (webhook).

- :mod:`.render` — pure Block Kit rendering with ``slack_sdk.models``, within Slack's limits
  (:mod:`.format`); :mod:`.plain` shows a message as plain text.
- :mod:`.state` — what every worker shares in Redis: cards, their lock, reply records, pacing.
- :mod:`.notifier` — the notifiers (I/O), turning Slack's answers into deliver/retry/fail.
- :mod:`.attachments` — the unmasked errors summary stored beside an event, when allowed.
"""

from bridge.slack.notifier import SlackBotNotifier, SlackWebhookNotifier
from bridge.slack.plain import message_lines, message_text
from bridge.slack.render import CardRender, SlackMessage, bulk_lines, render_card, render_event

__all__ = [
    "CardRender",
    "SlackBotNotifier",
    "SlackMessage",
    "SlackWebhookNotifier",
    "bulk_lines",
    "message_lines",
    "message_text",
    "render_card",
    "render_event",
]
