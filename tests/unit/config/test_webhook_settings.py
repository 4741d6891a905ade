"""Webhook settings: the retry schedule and its limits are configuration, checked at start."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, describe_settings, load_settings


def test_the_default_schedule_and_limits_are_the_specs() -> None:
    settings = load_settings({})
    assert settings.webhook_retry_schedule_s == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert settings.webhook_timeout_s == 15.0
    assert settings.webhook_disable_after_s == 5 * 86_400.0


def test_tests_compress_the_schedule_with_fractions() -> None:
    settings = load_settings(
        {"BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": "0.1, 0.2,0.5", "BRIDGE_WEBHOOK_DISABLE_AFTER_S": "2"}
    )
    assert settings.webhook_retry_schedule_s == (0.1, 0.2, 0.5)
    assert settings.webhook_disable_after_s == 2.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": "5,0"}, "positive"),
        ({"BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": "5,-1"}, "positive"),
        ({"BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": "soon"}, "a number"),
        ({"BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": ",".join(["1"] * 21)}, "BRIDGE_WEBHOOK_RETRY_SCHEDULE_S"),
        ({"BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": "86400,86400,86400"}, "at worst"),
        ({"BRIDGE_WEBHOOK_TIMEOUT_S": "120"}, "BRIDGE_WEBHOOK_TIMEOUT_S"),
        ({"BRIDGE_WEBHOOK_TIMEOUT_S": "0"}, "BRIDGE_WEBHOOK_TIMEOUT_S"),
        ({"BRIDGE_WEBHOOK_DISABLE_AFTER_S": "0"}, "BRIDGE_WEBHOOK_DISABLE_AFTER_S"),
    ],
)
def test_bad_webhook_settings_stop_the_start_with_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_settings(env)
    assert "\n" not in str(error.value) and str(error.value).startswith("BRIDGE_WEBHOOK_")


def test_the_configuration_reference_shows_the_schedule() -> None:
    rows = {name: default for name, default, _ in describe_settings()}
    assert rows["BRIDGE_WEBHOOK_RETRY_SCHEDULE_S"] == "5,300,1800,7200,18000,36000,36000"
