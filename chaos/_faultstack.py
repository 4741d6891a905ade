"""What the fault scenarios (upstream, sinks, badinput) share: a stack with the run's known secrets,
an API client that records every answer, and readers of the simulator's logs.

The stack is :class:`bench.harness.Stack` (Redis, bridge processes, stopped by PID), working in the
scenario's directory so every process log is a ``*.log`` the secret scan reads. The simulator is
started here rather than by ``Stack.start_simulator``: it must accept the run's MPC token, not the
benchmark's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from bench.harness import Stack
from bridge_tools.processes import Process
from chaos.model import CHAOS_ALLOW_CIDRS, RunContext
from mpc_simulator.control import SimulatorControl

API_TIMEOUT_S: Final = 30.0
PAGE_LIMIT: Final = 500
"""Items per page when reading the API's lists."""


class ApiClient:
    """The bridge API with the run's key; every answer body goes to ``ctx.record_response``."""

    def __init__(self, ctx: RunContext, base_url: str) -> None:
        self.ctx = ctx
        self.base_url = base_url
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=API_TIMEOUT_S,
            trust_env=False,
            headers={"Authorization": f"Bearer {ctx.secrets.api_key}"},
        )
        self._secrets: dict[str, str] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        record: bool = True,
    ) -> httpx.Response:
        given = dict(headers or {})
        if body is not None:
            content = json.dumps(body).encode()
            given.setdefault("Content-Type", "application/json")
        response = await self.http.request(method, path, content=content, headers=given, params=params)
        if record:
            self.ctx.record_response(response.content)
        return response

    async def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = await self.request(method, path, body=body)
        if response.status_code != expect:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    async def pages(self, path: str) -> list[Any]:
        """Every item of a list route, following ``next_cursor``."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": PAGE_LIMIT}
            if cursor is not None:
                params["cursor"] = cursor
            response = await self.request("GET", path, params=params)
            if response.status_code != 200:
                raise AssertionError(f"GET {path}: HTTP {response.status_code} {response.text[:300]}")
            page = response.json()
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    async def put_club_token(self, slug: str, token: str) -> None:
        await self.json("PUT", f"/v1/clubs/{slug}/credentials", {"token": token}, expect=204)

    async def subscribe(self, url: str, **filters: Any) -> str:
        """A subscription; its secret goes to ``ctx.subscription_secrets`` (the answer is not recorded)."""
        response = await self.request("POST", "/v1/subscriptions", body={"url": url, **filters}, record=False)
        if response.status_code != 201:
            raise AssertionError(f"POST /v1/subscriptions: HTTP {response.status_code} {response.text[:300]}")
        created = response.json()
        self.ctx.subscription_secrets.append(created["secret"])
        self._secrets[created["id"]] = created["secret"]
        sid: str = created["id"]
        return sid

    def secret_of(self, subscription_id: str) -> str:
        return self._secrets[subscription_id]

    async def create_watch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self.json("POST", "/v1/watches", dict(body), expect=201)
        return created

    async def watch(self, wid: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.json("GET", f"/v1/watches/{wid}")
        return found

    async def timeline(self, wid: str) -> list[dict[str, Any]]:
        return await self.pages(f"/v1/watches/{wid}/events")

    async def deliveries(self, sid: str) -> list[dict[str, Any]]:
        return await self.pages(f"/v1/subscriptions/{sid}/deliveries")


@dataclass
class FaultStack:
    """Redis, the simulator, the API and workers of one scenario, with the run's secrets."""

    ctx: RunContext
    name: str
    stack: Stack = field(init=False)
    control: SimulatorControl | None = None
    api: ApiClient | None = None

    def __post_init__(self) -> None:
        self.stack = Stack(self.ctx.scenario_dir(self.name))

    @property
    def workdir(self) -> Path:
        return self.stack.workdir

    def env(self, **overrides: str) -> dict[str, str]:
        secrets = self.ctx.secrets
        given = {
            "BRIDGE_API_KEYS": secrets.api_key,
            "BRIDGE_SECRET_KEY": secrets.secret_key,
            "BRIDGE_MPC_TOKEN": secrets.mpc_token,
            "BRIDGE_WEBHOOK_ALLOW_CIDRS": CHAOS_ALLOW_CIDRS,
            "BRIDGE_LOG_LEVEL": "info",
        }
        return self.stack.bridge_env(**{**given, **overrides})

    def start_simulator(self, seed: int) -> SimulatorControl:
        argv = [
            sys.executable,
            "-m",
            "bridge",
            "simulator",
            "--port",
            "0",
            "--token",
            self.ctx.secrets.mpc_token,
            "--seed",
            str(seed),
        ]
        proc = Process(argv, self.workdir / "simulator.log").start(stdout_pipe=True)
        self.stack.procs["simulator"] = proc
        assert proc.popen is not None and proc.popen.stdout is not None
        self.stack.simulator_url = proc.popen.stdout.readline().decode().split()[-1]
        self.control = SimulatorControl(self.stack.simulator_url)
        return self.control

    def start_api(self, env: dict[str, str]) -> ApiClient:
        self.stack.start_api(env)
        self.api = ApiClient(self.ctx, self.stack.api_url)
        return self.api

    async def close(self) -> None:
        if self.api is not None:
            await self.api.aclose()
        if self.control is not None:
            await self.control.aclose()
        if self.stack.redis_port and self.stack.procs.get("redis") and self.stack.procs["redis"].alive():
            self.ctx.capture_redis(self.stack.redis_port)
        self.stack.close()


@asynccontextmanager
async def fault_stack(ctx: RunContext, name: str) -> AsyncIterator[FaultStack]:
    running = FaultStack(ctx, name)
    try:
        yield running
    finally:
        await running.close()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Ask ``check`` until it says yes (``True``) or ``timeout_s`` passed (``False``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval_s)


def write_log(path: Path, lines: list[str]) -> None:
    """A scenario's own notes (what it did, what it found), searched by the secret scan like the rest."""
    path.write_text("\n".join(lines) + "\n")
