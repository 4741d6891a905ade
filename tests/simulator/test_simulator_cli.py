"""``bridge simulator`` as a real process: banner lines, options, clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .helpers import import_path, mpc_headers

pytestmark = pytest.mark.slow

LINE_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class Proc:
    """The simulator process with its stdout read line by line in a thread (no blocking reads)."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self._stderr = stderr_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "mpc_simulator", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self) -> str | None:
        return self.lines.get(timeout=LINE_TIMEOUT_S)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.popen.send_signal(signum)
        return self.popen.wait(STOP_TIMEOUT_S)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.close()


def test_demo_process(spawn: list[Proc], tmp_path: Path) -> None:
    proc = Proc(
        ["--port", "0", "--token", "cli-token", "--club", "other-club=other-token", "--demo",
         "--time-scale", "500", "--seed", "3", "--request-log", "10"],
        tmp_path / "stderr.log",
    )  # fmt: skip
    spawn.append(proc)
    ready = proc.line()
    assert ready is not None
    match = re.fullmatch(r"READY simulator (http://127\.0\.0\.1:(\d+))", ready)
    assert match, ready
    url = match.group(1)
    demo = proc.line()
    assert demo is not None
    demo_match = re.fullmatch(r"DEMO IMPORT (infinity-mall) ([0-9a-f-]{36})", demo)
    assert demo_match, demo
    slug, import_id = demo_match.groups()
    with httpx.Client(base_url=url, trust_env=False, timeout=5.0) as http:
        response = http.get(import_path(slug, import_id), headers=mpc_headers(slug, "cli-token"))
        assert response.status_code == 200
        assert response.json()["bulks"]
        other = import_path("other-club", import_id)
        assert http.get(other, headers=mpc_headers("other-club", "cli-token")).status_code == 401
        assert http.get(other, headers=mpc_headers("other-club", "other-token")).status_code == 404
        deadline = time.monotonic() + 10
        while http.get("/_control/scenarios").json()["items"][0]["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        statuses = [b["status"] for b in http.get(import_path(slug, import_id), headers=mpc_headers(
            slug, "cli-token")).json()["bulks"]]  # fmt: skip
        assert statuses == ["finished", "finished", "failed", "finished"]
        for _ in range(12):
            http.get("/v3/x", headers=mpc_headers())
        assert len(http.get("/_control/requests").json()["items"]) == 10
    assert proc.stop(signal.SIGTERM) == 0
    assert proc.line() is None  # nothing but the banner on stdout


def test_sigint_stops_cleanly(spawn: list[Proc], tmp_path: Path) -> None:
    proc = Proc(["--port", "0"], tmp_path / "stderr.log")
    spawn.append(proc)
    ready = proc.line()
    assert ready is not None
    assert ready.startswith("READY simulator http://127.0.0.1:")
    url = ready.split()[-1]
    with httpx.Client(base_url=url, trust_env=False, timeout=5.0) as http:
        assert http.get("/_control/health").json()["status"] == "ok"
    assert proc.stop(signal.SIGINT) == 0
    assert proc.line() is None
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()


def test_bad_club_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mpc_simulator", "--club", "no-token-here"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "SLUG=TOKEN" in result.stderr
    assert result.stdout == ""


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mpc_simulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
    assert "READY" not in result.stdout
