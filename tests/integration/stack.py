"""A running bridge for contract tests: the API and a worker as real processes (stopped by PID),
the MPC simulator and a webhook receiver in this process, a real Redis."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from bridge_tools.processes import LOOPBACK, Process, free_port, wait_until
from bridge_tools.webhook_receiver import WebhookReceiver
from mpc_simulator import RunningSimulator
from tests.integration.conftest import API_KEY, FAST_ENV, MPC_TOKEN

START_TIMEOUT_S: Final = 30.0
AUTH: Final = {"Authorization": f"Bearer {API_KEY}"}
RETRY_SCHEDULE_S: Final = "0.2,0.5,1"
"""Webhook retries a test can wait for."""


def bridge_env(redis_url: str, mpc_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(FAST_ENV)
    env.update(
        {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_MPC_BASE_URL": mpc_url,
            "BRIDGE_MPC_TOKEN": MPC_TOKEN,
            "BRIDGE_API_KEYS": API_KEY,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
            "BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": RETRY_SCHEDULE_S,
            "BRIDGE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class Stack:
    def __init__(self, api_url: str, receiver: WebhookReceiver) -> None:
        self.api_url = api_url
        self.receiver = receiver

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, headers=AUTH, timeout=10.0)


@pytest.fixture
def bridge_processes(
    redis: Any, redis_url: str, simulator: RunningSimulator, tmp_path: Path
) -> Iterator[str]:
    """The API and one worker; yields the API's base URL."""
    env = bridge_env(redis_url, simulator.url)
    port = free_port()
    started = []
    try:
        api = Process(
            [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)],
            tmp_path / "api.log",
            env,
        ).start()
        started.append(api)
        started.append(
            Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
        )
        url = f"http://{LOOPBACK}:{port}"
        wait_until(lambda: _answers(url + "/livez") or not api.alive(), START_TIMEOUT_S, "the API")
        assert api.alive(), api.output()
        yield url
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
async def stack(bridge_processes: str) -> AsyncIterator[Stack]:
    async with WebhookReceiver() as receiver:
        yield Stack(bridge_processes, receiver)


def wait_for(check: Any, timeout_s: float = 20.0, what: str = "") -> Any:
    """Poll a synchronous check until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)
