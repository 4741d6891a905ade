"""Fixtures: a real simulator on 127.0.0.1 (in-process), an httpx client and the control client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from mpc_simulator import RunningSimulator, SimulatorControl, start

from .helpers import TOKEN

SEED = 20_260_101


@pytest.fixture
async def server() -> AsyncIterator[RunningSimulator]:
    running = await start("127.0.0.1", 0, default_token=TOKEN, seed=SEED)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http(server: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=10.0) as client:
        yield client


@pytest.fixture
async def control(server: RunningSimulator) -> AsyncIterator[SimulatorControl]:
    async with SimulatorControl(server.url) as client:
        yield client
