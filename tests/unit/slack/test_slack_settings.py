"""Slack's settings and how they choose a mode; the retry rules for what Slack answers."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, load_settings
from bridge.slack.notifier import (
    BACKOFF_MAX_S,
    RETRY_AFTER_DEFAULT_S,
    RETRY_AFTER_MAX_S,
    backoff_s,
    problem_from_status,
    retry_after,
)

HOOK = "https://hooks.slack.com/services/T000/B000/secretpart"


def test_a_bot_token_wins_over_a_webhook_url_and_neither_means_no_slack() -> None:
    assert load_settings({}).slack_mode is None
    assert load_settings({"BRIDGE_SLACK_WEBHOOK_URL": HOOK}).slack_mode == "webhook"
    both = {"BRIDGE_SLACK_WEBHOOK_URL": HOOK, "BRIDGE_SLACK_BOT_TOKEN": "xoxb-1"}
    assert load_settings(both).slack_mode == "bot"


def test_the_post_interval_defaults_to_slack_s_one_message_a_second() -> None:
    assert load_settings({}).slack_post_interval_s == 1.0
    assert load_settings({"BRIDGE_SLACK_POST_INTERVAL_S": "0.2"}).slack_post_interval_s == 0.2
    with pytest.raises(ConfigError, match="BRIDGE_SLACK_POST_INTERVAL_S"):
        load_settings({"BRIDGE_SLACK_POST_INTERVAL_S": "-1"})


def test_a_webhook_url_that_is_not_a_url_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"BRIDGE_SLACK_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/topsecret"})
    assert "BRIDGE_SLACK_WEBHOOK_URL" in str(raised.value) and "topsecret" not in str(raised.value)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"retry-after": "2"}, 2.0),
        ({}, RETRY_AFTER_DEFAULT_S),
        ({"Retry-After": "soon"}, RETRY_AFTER_DEFAULT_S),
        ({"Retry-After": "99999"}, RETRY_AFTER_MAX_S),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "nan"}, RETRY_AFTER_DEFAULT_S),
        ({"Retry-After": "inf"}, RETRY_AFTER_DEFAULT_S),
        ({"Retry-After": "4" * 400}, RETRY_AFTER_MAX_S),
        ({"Retry-After": "Mon, 01 Jan 99999 00:00:00 GMT"}, RETRY_AFTER_DEFAULT_S),
    ],
)
def test_retry_after_is_read_and_bounded(headers: dict[str, str], seconds: float) -> None:
    assert retry_after(headers) == seconds


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, "", "rate_limited"),
        (500, "", "transient"),
        (503, "", "transient"),
        (200, "internal_error", "transient"),
        (200, "fatal_error", "transient"),
        (200, "message_not_found", "card_gone"),
        (200, "thread_not_found", "card_gone"),
        (200, "channel_not_found", "permanent"),
        (200, "not_in_channel", "permanent"),
        (200, "invalid_blocks", "permanent"),
        (200, "some_new_error", "permanent"),
        (404, "no_service", "permanent"),
        (400, "invalid_payload", "permanent"),
    ],
)
def test_what_slack_answers_decides_retry_or_give_up(status: int, error: str, kind: str) -> None:
    assert problem_from_status(status, error, {"Retry-After": "3"}).kind == kind


def test_backoff_doubles_from_two_seconds_is_capped_and_spread() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(30) == BACKOFF_MAX_S
    assert backoff_s(1, jitter=0.0) == pytest.approx(1.6) and backoff_s(1, jitter=0.999) == pytest.approx(
        2.4, 0.01
    )
