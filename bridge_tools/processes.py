"""Real processes on this machine: free loopback ports, redis-server, a Sentinel group, stopping by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import redis

from bridge_tools.redis_binary import redis_server_binary

LOOPBACK: Final = "127.0.0.1"
STOP_GRACE_S: Final = 5.0
SENTINEL_SERVICE: Final = "mymaster"
SENTINEL_DOWN_AFTER_MS: Final = 1000
"""How long the test Sentinel waits before it calls a silent master down (production: 5-30 s)."""
SENTINEL_FAILOVER_TIMEOUT_MS: Final = 5000
GROUP_START_TIMEOUT_S: Final = 30.0
SENTINEL_DEBUG_PERIODS: Final = ("info-period", "100", "publish-period", "200")
"""Sentinel's timers (``SENTINEL DEBUG``, Redis >= 7), shortened for tests from 10 s / 2 s. The ping
period stays 1 s: while the master is down Sentinel refreshes replicas' INFO only every second, and
a replica whose INFO is older than 5 ping periods is never promoted."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Process:
    """A child in its own session, its output in a log file, stopped by PID."""

    def __init__(
        self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, *, stdout_pipe: bool = False) -> Process:
        """Start it; with ``stdout_pipe`` its stdout is readable (``popen.stdout``), stderr is logged."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log if stdout_pipe else subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL now, and wait for it."""
        if self.popen is not None:
            self.signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; returns the exit code."""
        if self.popen is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _redis_argv(port: int, workdir: Path, aof: bool) -> list[str]:
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--dir",
        str(workdir),
    ]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec"] if aof else ["--appendonly", "no"]
    # A replica's first sync starts at once instead of after Redis' default 5 s wait for more replicas.
    argv += ["--repl-diskless-sync-delay", "0"]
    return argv


@contextlib.contextmanager
def redis_server(
    workdir: Path, port: int | None = None, *, aof: bool = False
) -> Iterator[tuple[Process, int]]:
    port = port or free_port()
    argv = _redis_argv(port, workdir, aof)
    proc = Process(argv, workdir / f"redis-{port}.log").start()
    try:
        wait_until(lambda: redis_answers(port), 15, "redis-server to answer PING")
        yield proc, port
    finally:
        proc.stop()


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


@dataclass
class SentinelGroup:
    """A master, a replica and one Sentinel watching them, all on loopback (see :func:`sentinel_group`)."""

    servers: dict[int, Process]
    sentinel: Process
    sentinel_port: int
    service: str = SENTINEL_SERVICE

    @property
    def url(self) -> str:
        """``BRIDGE_REDIS_URL`` for this group."""
        return f"redis+sentinel://{LOOPBACK}:{self.sentinel_port}/{self.service}/0"

    def _sentinel(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.sentinel_port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int | None:
        """The master's port as the Sentinel names it now."""
        try:
            with self._sentinel() as client:
                address = client.sentinel_get_master_addr_by_name(self.service)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def ready_for_failover(self) -> bool:
        """The Sentinel knows a replica in sync with the master: a failover can promote it."""
        master = self.master_port()
        if master is None:
            return False
        try:
            with self._sentinel() as client:
                replicas = client.sentinel_slaves(self.service)
            with redis.Redis(host=LOOPBACK, port=master, socket_timeout=2, decode_responses=True) as server:
                info = server.info("replication")
        except redis.RedisError:
            return False
        in_sync = [r for r in replicas if not r.get("is_sdown") and not r.get("is_disconnected")]
        online = info.get("slave0", {}).get("state") == "online"
        return bool(in_sync) and online

    def failover(self, timeout_s: float = GROUP_START_TIMEOUT_S) -> int:
        """``SENTINEL FAILOVER``: promote the replica; returns the new master's port once the Sentinel
        names it and the old master replicates from it."""
        wait_until(self.ready_for_failover, timeout_s, "the Sentinel to know an in-sync replica")
        old = self.master_port()

        def asked() -> bool:
            try:
                with self._sentinel() as client:
                    client.sentinel_failover(self.service)
            except redis.ResponseError as exc:  # NOGOODSLAVE while its view of the replica is stale
                if "NOGOOD" in str(exc):
                    return False
                raise
            return True

        wait_until(asked, timeout_s, "the Sentinel to accept SENTINEL FAILOVER", interval_s=0.2)
        wait_until(
            lambda: self.master_port() not in (None, old), timeout_s, "the Sentinel to name a new master"
        )
        new = self.master_port()
        assert new is not None
        wait_until(self.ready_for_failover, timeout_s, "the old master to follow the new one")
        return new

    def replicated(self, port: int, timeout_s: float) -> None:
        """Wait until the replica has acknowledged every write the master at ``port`` had taken
        when this was called. Replication is asynchronous: a master killed before its replica has
        them loses them with it (a watch created just before, say), which is Redis's own limit
        (docs/operations.md), not what the failover tests are about."""
        with redis.Redis(host=LOOPBACK, port=port, socket_timeout=2) as server:
            target = int(server.info("replication")["master_repl_offset"])

            def caught_up() -> bool:
                replica = server.info("replication").get("slave0", {})
                return isinstance(replica, dict) and int(replica.get("offset", -1)) >= target

            wait_until(caught_up, timeout_s, "the replica to acknowledge the master's writes")

    def kill_master(self, timeout_s: float = GROUP_START_TIMEOUT_S) -> int:
        """SIGKILL the master (no failover asked) once its replica has what it had: the Sentinel
        notices after its down-after time and promotes the replica; returns the new master's port."""
        wait_until(self.ready_for_failover, timeout_s, "the Sentinel to know an in-sync replica")
        old = self.master_port()
        assert old is not None
        self.replicated(old, timeout_s)
        self.servers[old].kill()
        wait_until(
            lambda: self.master_port() not in (None, old), timeout_s, "the Sentinel to name a new master"
        )
        new = self.master_port()
        assert new is not None
        return new


@contextlib.contextmanager
def sentinel_group(workdir: Path) -> Iterator[SentinelGroup]:
    """redis-server master + replica + a Sentinel (``redis-server --sentinel``) on free loopback
    ports, in ``workdir``; every process is stopped by PID on exit."""
    binary = redis_server_binary()
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    servers: dict[int, Process] = {}
    sentinel: Process | None = None
    try:
        for port, extra in ((master_port, []), (replica_port, ["--replicaof", LOOPBACK, str(master_port)])):
            servers[port] = Process(
                [*_redis_argv(port, workdir, aof=False), *extra], workdir / f"redis-{port}.log"
            ).start()
            wait_until(lambda p=port: redis_answers(p), 15, f"redis-server on {port}")  # type: ignore[misc]
        config = workdir / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {sentinel_port}",
                    f"bind {LOOPBACK}",
                    f"dir {workdir}",
                    f"sentinel monitor {SENTINEL_SERVICE} {LOOPBACK} {master_port} 1",
                    f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {SENTINEL_DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {SENTINEL_SERVICE} {SENTINEL_FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {SENTINEL_SERVICE} 1",
                    "",
                ]
            )
        )
        sentinel = Process([binary, str(config), "--sentinel"], workdir / "sentinel.log").start()
        group = SentinelGroup(servers=servers, sentinel=sentinel, sentinel_port=sentinel_port)
        wait_until(lambda: redis_answers(sentinel_port), 15, "the Sentinel")
        with group._sentinel() as client:
            # Sentinel asks its instances for INFO every 10 s: it would notice a promoted replica or a
            # demoted master only that late. Tests cannot wait that long.
            client.execute_command("SENTINEL", "DEBUG", *SENTINEL_DEBUG_PERIODS)
        wait_until(group.ready_for_failover, GROUP_START_TIMEOUT_S, "the Sentinel group to be ready")
        yield group
    finally:
        if sentinel is not None:
            sentinel.stop()
        for proc in servers.values():
            proc.stop()
