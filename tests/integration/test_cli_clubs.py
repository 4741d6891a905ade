"""``bridge clubs slack-channels`` against a real API process and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge_tools.processes import Process, free_port, wait_until
from tests.integration.conftest import SECRET_KEY

KEY = "cli-clubs-key-0123456789abcdefghijklm"


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def env(redis_url: str, redis: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")} | {
        "BRIDGE_REDIS_URL": redis_url,
        "BRIDGE_API_KEYS": KEY,
        "BRIDGE_SECRET_KEY": SECRET_KEY,
        "BRIDGE_LOG_FORMAT": "json",
        "BRIDGE_API_URL": f"http://127.0.0.1:{port}",
        "BRIDGE_API_KEY": KEY,
    }
    api = Process([sys.executable, "-m", "bridge", "api", "--port", str(port)], tmp_path / "api.log", env)
    api.start()
    try:
        wait_until(lambda: _ready(env["BRIDGE_API_URL"]), 30, "the API")
        yield env
    finally:
        api.stop()


def bridge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_slack_channels_are_shown_set_and_cleared(env: dict[str, str]) -> None:
    shown = bridge(env, "clubs", "slack-channels", "infinity-mall")
    assert (shown.returncode, shown.stdout) == (0, "infinity-mall: no Slack channel may watch it\n"), (
        shown.stderr
    )
    set_ = bridge(env, "clubs", "slack-channels", "infinity-mall", "C0B", "C0A")
    assert (set_.returncode, set_.stdout) == (0, "infinity-mall: C0A, C0B\n"), set_.stderr
    as_json = bridge(env, "clubs", "slack-channels", "infinity-mall", "--json")
    assert json.loads(as_json.stdout) == {"channel_ids": ["C0A", "C0B"]}
    cleared = bridge(env, "clubs", "slack-channels", "infinity-mall", "--clear")
    assert cleared.stdout == "infinity-mall: no Slack channel may watch it\n"


def test_slack_channels_errors_are_one_line(env: dict[str, str]) -> None:
    bad = bridge(env, "clubs", "slack-channels", "infinity-mall", "#general")
    assert bad.returncode == 2 and bad.stderr.startswith("mpc-import-bridge: HTTP 422 validation_error")
    both = bridge(env, "clubs", "slack-channels", "infinity-mall", "C0A", "--clear")
    assert both.returncode == 2 and "not both" in both.stderr and len(both.stderr.splitlines()) == 1
    wrong_key = bridge(env, "clubs", "slack-channels", "infinity-mall", "--api-key", "nope")
    assert wrong_key.returncode == 2 and "HTTP 401" in wrong_key.stderr
