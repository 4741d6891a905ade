"""``bridge watch ...`` against real processes: API, worker and the simulator playing its demo."""

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
from tests.integration.conftest import FAST_ENV, SECRET_KEY

pytestmark = pytest.mark.slow
KEY = "cli-key-0123456789abcdefghijklmnopq"
TOKEN = "cli-mpc-token"


class Stack:
    def __init__(self, api_url: str, env: dict[str, str], slug: str, import_id: str) -> None:
        self.api_url, self.env, self.slug, self.import_id = api_url, env, slug, import_id

    def bridge(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def stack(redis_url: str, redis: Any, tmp_path: Path) -> Iterator[Stack]:
    procs: list[Process] = []
    try:
        sim = Process(
            [
                sys.executable,
                "-m",
                "bridge",
                "simulator",
                "--port",
                "0",
                "--token",
                TOKEN,
                "--demo",
                "--time-scale",
                "8",
            ],
            tmp_path / "sim.log",
        ).start(stdout_pipe=True)
        procs.append(sim)
        assert sim.popen is not None and sim.popen.stdout is not None
        ready = sim.popen.stdout.readline().decode().split()[-1]
        _, _, slug, import_id = sim.popen.stdout.readline().decode().split()
        port = free_port()
        env = (
            {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
            | FAST_ENV
            | {
                "BRIDGE_REDIS_URL": redis_url,
                "BRIDGE_API_KEYS": KEY,
                "BRIDGE_SECRET_KEY": SECRET_KEY,
                "BRIDGE_MPC_BASE_URL": ready,
                "BRIDGE_MPC_TOKEN": TOKEN,
                "BRIDGE_LOG_FORMAT": "json",
                "BRIDGE_API_URL": f"http://127.0.0.1:{port}",
                "BRIDGE_API_KEY": KEY,
            }
        )
        procs.append(
            Process(
                [sys.executable, "-m", "bridge", "api", "--port", str(port)], tmp_path / "api.log", env
            ).start()
        )
        procs.append(
            Process([sys.executable, "-m", "bridge", "worker"], tmp_path / "worker.log", env).start()
        )
        wait_until(lambda: _ready(env["BRIDGE_API_URL"]), 30, "the API")
        yield Stack(env["BRIDGE_API_URL"], env, slug, import_id)
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_watch_commands_create_list_show_follow_and_stop(stack: Stack) -> None:
    created = stack.bridge("watch", "create", "--club", stack.slug, "--import-id", stack.import_id, "--json")
    assert created.returncode == 0, created.stderr
    watch_id = json.loads(created.stdout)["id"]

    # The demo import runs from the simulator's start: on a loaded machine it may already have
    # completed by now, so the list is filtered by club, not by state.
    listed = stack.bridge("watch", "list", "--club", stack.slug)
    assert watch_id in listed.stdout

    followed = stack.bridge("watch", "follow", watch_id, timeout=120)
    assert followed.returncode == 0, followed.stdout[-2000:] + followed.stderr
    assert "completed" in followed.stdout and "import.completed" in followed.stdout

    shown = stack.bridge("watch", "show", watch_id)
    assert "completed" in shown.stdout and "Bulk 4101 · finished" in shown.stdout

    other = stack.bridge(
        "watch", "create", "--club", stack.slug, "--import-id", "another-import", "--bulk", "7"
    )
    other_id = other.stdout.split()[0]
    stopped = stack.bridge("watch", "stop", other_id)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout


def test_watch_commands_report_api_errors_in_one_line(stack: Stack) -> None:
    bad = stack.bridge("watch", "create", "--club", "infinity-mall", "--import-id", "x", "--bulk", "0")
    assert bad.returncode == 2
    assert bad.stderr.startswith("mpc-import-bridge: HTTP 422 validation_error")
    shapeless = stack.bridge("watch", "create", "--club", "Not A Slug", "--import-id", "x")
    assert shapeless.returncode == 2 and "is not a club slug" in shapeless.stderr  # refused before asking
    unauthorized = stack.bridge("watch", "list", "--api-key", "wrong")
    assert unauthorized.returncode == 2 and "HTTP 401" in unauthorized.stderr
    unreachable = stack.bridge("watch", "list", "--api-url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 2 and "cannot reach the API" in unreachable.stderr
