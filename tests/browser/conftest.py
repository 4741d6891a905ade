"""The console in a real headless Chromium against the whole bridge in real processes.

The browser is the system's Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium`` or
``BRIDGE_TEST_CHROMIUM``), driven by playwright for Python through ``executable_path``: nothing
is downloaded. The stack is one module's worth of processes, each stopped by its PID: the MPC
simulator, a worker and the API, on a real redis-server (the suite's).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from bridge_tools.processes import Process, free_port
from tests.integration.conftest import FAST_ENV, MPC_TOKEN

CHROMIUM: Final = os.environ.get("BRIDGE_TEST_CHROMIUM", "/usr/bin/chromium")
API_KEY: Final = "console-browser-key-0123456789abcdef"
LOOPBACK: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 30.0
SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "docs" / "console"
"""Where ``BRIDGE_UPDATE_SCREENSHOTS=1`` writes the screenshots the docs show."""


@dataclass
class Stack:
    api_url: str
    mpc_url: str
    redis_url: str
    processes: list[Process]

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.mpc_url}/_control{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def put_import(self, slug: str, import_id: str, bulks: list[dict[str, Any]]) -> None:
        self.control("PUT", f"/imports/{slug}/{import_id}", {"bulks": bulks})

    def flip(self, slug: str, import_id: str, bulk_id: int, **fields: Any) -> None:
        self.control("PATCH", f"/imports/{slug}/{import_id}/bulks/{bulk_id}", fields)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method,
            f"{self.api_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json() if response.content else None


def _wait_http(url: str, what: str, process: Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{what} exited:\n{process.output()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer in {START_TIMEOUT_S}s:\n{process.output()[-3000:]}")


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
            "BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": "3600",
            "BRIDGE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("console-stack")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    started: list[Process] = []
    try:
        mpc_port, api_port = free_port(), free_port()
        mpc_url, api_url = f"http://{LOOPBACK}:{mpc_port}", f"http://{LOOPBACK}:{api_port}"
        simulator = Process(
            [sys.executable, "-m", "bridge", "simulator", "--port", str(mpc_port), "--token", MPC_TOKEN],
            workdir / "simulator.log",
        ).start()
        started.append(simulator)
        _wait_http(f"{mpc_url}/_control/health", "the simulator", simulator)
        env = bridge_env(redis_url, mpc_url)
        api = Process(
            [sys.executable, "-m", "bridge", "api", "--host", LOOPBACK, "--port", str(api_port)],
            workdir / "api.log",
            env,
        ).start()
        started.append(api)
        _wait_http(f"{api_url}/readyz", "the API", api)
        worker = Process([sys.executable, "-m", "bridge", "worker"], workdir / "worker.log", env).start()
        started.append(worker)
        yield Stack(api_url=api_url, mpc_url=mpc_url, redis_url=redis_url, processes=started)
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set BRIDGE_TEST_CHROMIUM)")
    launched = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    made = browser.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    made.set_default_timeout(15_000)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, key: str = API_KEY) -> None:
    page.goto("/ui/watches")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    target = SCREENSHOTS if os.environ.get("BRIDGE_UPDATE_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
