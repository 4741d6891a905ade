"""What every benchmark needs: a private stack of real processes on loopback, and CPU readings.

Everything started here is stopped by PID when the stack closes. CPU use is read from
``/proc/<pid>/stat`` (user + system time), so figures are per process and per core (100 % is
one core).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import redis
from cryptography.fernet import Fernet

from bridge_tools.processes import Process, free_port, redis_answers, wait_until
from bridge_tools.redis_binary import redis_server_binary

SECRET_KEY: Final = Fernet.generate_key().decode()
API_KEY: Final = "bench-" + secrets.token_urlsafe(32)
MPC_TOKEN: Final = "mpc-" + secrets.token_urlsafe(16)
"""Fresh secrets for every run."""
REDIS_TUNING: Final = ("--hash-max-listpack-value", "1024")
"""The Redis setting docs/operations.md recommends (a watch's hash stays listpack-encoded)."""
TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def redis_command_counts(port: int) -> Counter[str]:
    """Commands a Redis server has run since it started, by name (``INFO commandstats``, this call
    included; a script counts once as ``evalsha`` and once per command it runs)."""
    client = redis.Redis(port=port)
    try:
        stats: dict[str, dict[str, Any]] = client.info("commandstats")  # type: ignore[assignment]
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()})


def redis_commands(port: int) -> int:
    """Commands a Redis server has run since it started (``INFO commandstats``, this call included)."""
    return sum(redis_command_counts(port).values())


class CpuMeter:
    """CPU use of some processes between :meth:`start` and :meth:`stop`, in % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0
        self.percent: dict[str, float] = {}
        """Rounded to 0.1 % for display: compute figures from :attr:`cpu_s` and :attr:`wall_s`."""
        self.cpu_s: dict[str, float] = {}
        self.wall_s = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.wall_s = time.monotonic() - self._t0
        self.cpu_s = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}
        self.percent = {name: round(100 * cpu / self.wall_s, 1) for name, cpu in self.cpu_s.items()}
        return self.percent


@dataclass
class Stack:
    """Redis, the simulator, and as many bridge processes as a scenario starts."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Process] = field(default_factory=dict)
    redis_port: int = 0
    simulator_url: str = ""
    api_url: str = ""

    def start_redis(self, *args: str) -> None:
        self.redis_port = free_port()
        argv = [
            redis_server_binary(),
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            *REDIS_TUNING,
            *args,
        ]
        self.procs["redis"] = Process(argv, self.workdir / "redis.log").start()
        wait_until(lambda: redis_answers(self.redis_port), 15, "redis-server")

    def start_simulator(self, *args: str) -> None:
        argv = [sys.executable, "-m", "bridge", "simulator", "--port", "0", "--token", MPC_TOKEN, *args]
        proc = Process(argv, self.workdir / "simulator.log").start(stdout_pipe=True)
        self.procs["simulator"] = proc
        assert proc.popen is not None and proc.popen.stdout is not None
        self.simulator_url = proc.popen.stdout.readline().decode().split()[-1]

    def bridge_env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            {
                "BRIDGE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "BRIDGE_API_KEYS": API_KEY,
                "BRIDGE_SECRET_KEY": SECRET_KEY,
                "BRIDGE_MPC_BASE_URL": self.simulator_url,
                "BRIDGE_MPC_TOKEN": MPC_TOKEN,
                "BRIDGE_LOG_LEVEL": "warning",
                "BRIDGE_LOG_FORMAT": "json",
                "BRIDGE_NOTIFY_LOG": "false",
                "BRIDGE_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
                # The benchmarks measure the bridge, not the clubs' request budget: thousands of
                # imports of one simulated club are polled far faster than a real club allows.
                "BRIDGE_MPC_CLUB_RATE": "100000",
                "BRIDGE_MPC_CLUB_BURST": "100000",
                # Nor the cap on a club's active watches: the scale scenario puts 100,000 bulks
                # under one simulated club.
                "BRIDGE_MAX_WATCHES_PER_CLUB": "10000000",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(overrides)
        return env

    def start_worker(self, name: str, env: dict[str, str]) -> Process:
        proc = Process([sys.executable, "-m", "bridge", "worker"], self.workdir / f"{name}.log", env).start()
        self.procs[name] = proc
        return proc

    def start_api(self, env: dict[str, str]) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.procs["api"] = Process(
            [sys.executable, "-m", "bridge", "api", "--port", str(port)], self.workdir / "api.log", env
        ).start()
        wait_until(self._api_ready, 30, "the API")

    def _api_ready(self) -> bool:
        try:
            return httpx.get(self.api_url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()


@contextmanager
def stack(keep: bool = False) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    running = Stack(workdir)
    try:
        yield running
    finally:
        running.close()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
