"""Settings from the environment: defaults, validation with one clear line, secrets never shown."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.config import ConfigError, Secret, Settings, describe_settings, load_settings

FERNET_KEY = "q0Yh0a5lYk7oQ1xJc6a1rP9sJpJ2c8U4pW1s5bW0dX8="


def test_defaults_keep_mpcs_five_second_floor() -> None:
    settings = load_settings({})
    assert settings.poll_min_interval_s == 5.0
    assert settings.poll_max_interval_s == 60.0
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_fractions_of_a_second_are_accepted_for_tests_and_demos() -> None:
    settings = load_settings({"BRIDGE_POLL_MIN_INTERVAL_S": "0.5", "BRIDGE_POLL_MAX_INTERVAL_S": "2.0"})
    assert (settings.poll_min_interval_s, settings.poll_max_interval_s) == (0.5, 2.0)


def test_lists_are_comma_separated_and_secrets_are_masked() -> None:
    alpha, beta = "alpha" * 7, "beta" * 8
    settings = load_settings({"BRIDGE_API_KEYS": f"{alpha}, {beta},", "BRIDGE_MPC_TOKEN": "tok-123"})
    assert [k.reveal() for k in settings.api_keys] == [alpha, beta]
    assert "alpha" not in repr(settings) and "tok-123" not in repr(settings)


@pytest.mark.parametrize("short", ["a" * 31, "zq", "hunter2-hunter2-hunter2-hunter2"])
def test_an_api_key_shorter_than_32_characters_is_refused_without_being_shown(short: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"BRIDGE_API_KEYS": f"{'k' * 32},{short}"})
    message = str(raised.value)
    assert message.startswith("BRIDGE_API_KEYS:") and "at least 32 characters" in message
    assert short not in message and "\n" not in message
    assert load_settings({"BRIDGE_API_KEYS": "k" * 32}).api_keys  # 32 is enough
    assert str(Secret("x")) == "Secret('**********')"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BRIDGE_POLL_MIN_INTERVAL_S": "fast"}, "BRIDGE_POLL_MIN_INTERVAL_S"),
        ({"BRIDGE_POLL_MIN_INTERVAL_S": "0.001"}, "BRIDGE_POLL_MIN_INTERVAL_S"),
        (
            {"BRIDGE_POLL_MIN_INTERVAL_S": "10", "BRIDGE_POLL_MAX_INTERVAL_S": "5"},
            "BRIDGE_POLL_MAX_INTERVAL_S",
        ),
        ({"BRIDGE_REDIS_URL": "http://localhost"}, "BRIDGE_REDIS_URL"),
        ({"BRIDGE_MPC_BASE_URL": "ftp://x"}, "BRIDGE_MPC_BASE_URL"),
        ({"BRIDGE_SLACK_SHOW_PII": "maybe"}, "BRIDGE_SLACK_SHOW_PII"),
        ({"BRIDGE_LOG_LEVEL": "loud"}, "BRIDGE_LOG_LEVEL"),
        ({"BRIDGE_WEBHOOK_ALLOW_CIDRS": "10.0.0.0/8,nonsense"}, "BRIDGE_WEBHOOK_ALLOW_CIDRS"),
        ({"BRIDGE_SECRET_KEY": "too-short"}, "BRIDGE_SECRET_KEY"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    message = str(raised.value)
    assert message.startswith(variable + ":")
    assert "\n" not in message


def test_a_wrong_secret_is_never_repeated() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"BRIDGE_SECRET_KEY": "hunter2-is-not-a-key"})
    assert "hunter2" not in str(raised.value)


def test_a_valid_fernet_key_is_accepted() -> None:
    settings = load_settings({"BRIDGE_SECRET_KEY": FERNET_KEY})
    assert [key.reveal() for key in settings.secret_key] == [FERNET_KEY]


def test_the_api_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_API_KEYS"):
        Settings().require_api_keys()


def test_every_setting_is_documented() -> None:
    rows = describe_settings()
    assert all(name.startswith("BRIDGE_") and doc for name, _, doc in rows)
    assert len(rows) == len(Settings.__struct_fields__)


def test_a_worker_with_a_wrong_variable_exits_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import workers.settings"],
        env={"BRIDGE_POLL_MIN_INTERVAL_S": "soon", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mpc-import-bridge worker: BRIDGE_POLL_MIN_INTERVAL_S: expected a number, got text (got 'soon')"
    ]
