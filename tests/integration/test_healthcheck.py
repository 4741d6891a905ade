"""``bridge healthcheck`` and ``bridge worker --check`` in every failure mode an operator meets:
one line, ``unhealthy: <reason>``, exit code 1, nothing on stderr (no traceback in the health log).

The checks run as real processes against real listeners on loopback: a redis-server, HTTP servers
answering what a sick API or simulator answers, and a socket that accepts and never answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bridge.config import WORKER_HEALTH_INTERVAL_S
from bridge.exits import EXIT_FAILURE, EXIT_OK
from bridge.healthcheck import CHECK_TIMEOUT_S, HTTP_TIMEOUT_S, RECORD_TIME_FORMAT
from bridge.store import keys
from bridge_tools.processes import LOOPBACK, free_port

pytestmark = pytest.mark.slow

WORKER_CHECKS = {
    "healthcheck": ["healthcheck", "--role", "worker"],
    "worker --check": ["worker", "--check"],
}
WAIT_S = max(CHECK_TIMEOUT_S, HTTP_TIMEOUT_S) + 10


def check(args: list[str], redis_url: str = f"redis://{LOOPBACK}:9/0") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env["BRIDGE_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


def assert_unhealthy(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == EXIT_FAILURE, result.stdout + result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("unhealthy: "), result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers a byte."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(16)
        yield sock.getsockname()[1]


class _Answer(BaseHTTPRequestHandler):
    status = 200
    raw: bytes | None = None

    def do_GET(self) -> None:
        if self.raw is not None:
            self.wfile.write(self.raw)
            return
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_answering() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(status: int = 200, raw: bytes | None = None) -> int:
        handler = type("Handler", (_Answer,), {"status": status, "raw": raw})
        server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


# ---------------------------------------------------------------------------- API and simulator


@pytest.mark.parametrize("role", ["api", "simulator"])
def test_a_process_that_is_down_is_not_answering(role: str) -> None:
    result = check(["healthcheck", "--role", role, "--port", str(free_port())])
    assert_unhealthy(result, role, "not answering (connection refused)")


@pytest.mark.parametrize("role", ["api", "simulator"])
@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_answer_is_unhealthy(role: str, status: int, http_answering: Any) -> None:
    result = check(["healthcheck", "--role", role, "--port", str(http_answering(status))])
    assert_unhealthy(result, role, f"answered {status}")


def test_an_api_that_hangs_is_unhealthy_within_the_http_timeout(silent_port: int) -> None:
    result = check(["healthcheck", "--role", "api", "--port", str(silent_port)])
    assert_unhealthy(result, "api", f"did not answer within {HTTP_TIMEOUT_S:g} s")


def test_an_answer_that_is_not_http_is_unhealthy(http_answering: Any) -> None:
    port = http_answering(raw=b"SSH-2.0-OpenSSH_9.2\r\n")
    assert_unhealthy(check(["healthcheck", "--role", "api", "--port", str(port)]), "gave no HTTP answer")


def test_a_200_is_healthy(http_answering: Any) -> None:
    result = check(["healthcheck", "--role", "simulator", "--port", str(http_answering(200))])
    assert result.returncode == EXIT_OK and result.stdout.startswith("healthy: simulator"), result.stdout


# ---------------------------------------------------------------------------- worker


@pytest.mark.parametrize("command", WORKER_CHECKS)
def test_redis_unreachable_is_unhealthy(command: str) -> None:
    result = check(WORKER_CHECKS[command], f"redis://{LOOPBACK}:{free_port()}/0")
    assert_unhealthy(result, "is unreachable", "Connect")


@pytest.mark.parametrize("command", WORKER_CHECKS)
def test_redis_timing_out_is_unhealthy_within_the_check_timeout(command: str, silent_port: int) -> None:
    result = check(WORKER_CHECKS[command], f"redis://{LOOPBACK}:{silent_port}/0")
    assert_unhealthy(result, f"did not answer within {CHECK_TIMEOUT_S:g} s")


@pytest.mark.parametrize("command", WORKER_CHECKS)
async def test_no_health_record_is_unhealthy(command: str, redis: Any, redis_url: str) -> None:
    result = check(WORKER_CHECKS[command], redis_url)
    assert_unhealthy(result, f"no health record from worker {socket.gethostname()}")


def _record(written: datetime) -> str:
    # What arq writes (Worker.record_health), with the same time format.
    return f"{written:{RECORD_TIME_FORMAT}} j_complete=4 j_failed=0 j_retried=1 j_ongoing=0 queued=0"


@pytest.mark.parametrize("command", WORKER_CHECKS)
async def test_a_stale_health_record_is_unhealthy(command: str, redis: Any, redis_url: str) -> None:
    # A record that outlived its worker: written ten minutes ago, by a worker that records rarely.
    old = datetime.now() - timedelta(minutes=10)
    await redis.set(keys.worker_health(socket.gethostname()), _record(old), ex=3600)
    result = check(WORKER_CHECKS[command], redis_url)
    line = assert_unhealthy(result, "is stale (", " s old)", "j_complete=4")
    assert 600 <= int(line.split("is stale (")[1].split()[0]) < 620, line


@pytest.mark.parametrize("command", WORKER_CHECKS)
async def test_a_fresh_health_record_is_healthy(command: str, redis: Any, redis_url: str) -> None:
    await redis.set(
        keys.worker_health(socket.gethostname()), _record(datetime.now()), ex=WORKER_HEALTH_INTERVAL_S + 1
    )
    result = check(WORKER_CHECKS[command], redis_url)
    assert result.returncode == EXIT_OK and result.stderr == "", result.stdout + result.stderr
    assert result.stdout.startswith("healthy: worker ") and "j_complete=4" in result.stdout


@pytest.mark.parametrize("command", WORKER_CHECKS)
async def test_a_record_without_a_time_is_unhealthy(command: str, redis: Any, redis_url: str) -> None:
    await redis.set(keys.worker_health(socket.gethostname()), "\x00\xff garbage", ex=60)
    assert_unhealthy(check(WORKER_CHECKS[command], redis_url), "has no readable time")
