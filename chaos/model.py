"""What every chaos scenario gets and gives back.

A scenario is a module with ``async def run(ctx: RunContext, size: Size) -> Outcome``. It starts its
own processes (``bench.harness.stack``-style, all on loopback, stopped by PID), uses the run's
known secrets everywhere (:class:`KnownSecrets`), hands every API response body it reads to
:meth:`RunContext.record_response`, and dumps every Redis value with :meth:`RunContext.capture_redis`
before it stops its Redis. The ``secrets`` check at the end searches all of that, plus every log
file under the run's work directory, for the secrets in the clear.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.fernet import Fernet

SizeName = Literal["short", "full"]


@dataclass(frozen=True)
class Size:
    """``short`` runs in CI (the whole suite within 3 minutes); ``full`` is ``make chaos``."""

    name: SizeName

    @property
    def short(self) -> bool:
        return self.name == "short"


@dataclass(frozen=True)
class KnownSecrets:
    """Fresh for every run, used by every scenario, searched for at the end."""

    mpc_token: str = field(default_factory=lambda: "mpc-" + secrets.token_urlsafe(24))
    api_key: str = field(default_factory=lambda: "key-" + secrets.token_urlsafe(24))
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    club_token: str = field(default_factory=lambda: "club-" + secrets.token_urlsafe(24))
    """An MPC token stored per club through ``PUT /v1/clubs/{slug}/credentials``."""

    def values(self) -> dict[str, str]:
        return {
            "mpc_token": self.mpc_token,
            "api_key": self.api_key,
            "secret_key": self.secret_key,
            "club_token": self.club_token,
        }


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class Outcome:
    scenario: str
    figures: dict[str, int | float | str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(name, passed, detail))

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


WORKER_ENTRIES: Final = {
    "bridge": ("-m", "bridge", "worker"),
    "arq": ("-m", "arq", "workers.settings.WorkerSettings"),
}
"""The two documented ways to start a worker (``--worker-entry``): both must pass every scenario."""


@dataclass
class RunContext:
    workdir: Path
    """Each scenario works in ``workdir / <scenario>``; every ``*.log`` under it is searched."""
    secrets: KnownSecrets = field(default_factory=KnownSecrets)
    subscription_secrets: list[str] = field(default_factory=list)
    """``whsec_`` secrets shown at creation/rotation: searched for everywhere else."""
    responses: list[bytes] = field(default_factory=list)
    """API response bodies, except a subscription secret's own creation/rotation answer."""
    events: list[bytes] = field(default_factory=list)
    """Event payloads as received by webhook receivers and the Slack stand-in."""
    redis_values: list[bytes] = field(default_factory=list)
    worker_entry: str = "bridge"
    """How workers are started: a key of :data:`WORKER_ENTRIES`."""

    def scenario_dir(self, scenario: str) -> Path:
        path = self.workdir / scenario
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record_response(self, body: bytes) -> None:
        self.responses.append(body)

    def record_event(self, body: bytes) -> None:
        self.events.append(body)

    def capture_redis(self, port: int) -> None:
        """Every key and value (strings, hashes, lists, sets, zsets, streams) of a Redis on loopback."""
        import redis

        client: Any = redis.Redis(host="127.0.0.1", port=port)  # sync client: results are not awaitables
        try:
            for key in client.scan_iter(count=1000):
                kind = client.type(key)
                self.redis_values.append(key)
                if kind == b"string":
                    self.redis_values.append(client.get(key) or b"")
                elif kind == b"hash":
                    for k, v in client.hgetall(key).items():
                        self.redis_values += [k, v]
                elif kind == b"list":
                    self.redis_values += client.lrange(key, 0, -1)
                elif kind == b"set":
                    self.redis_values += list(client.smembers(key))
                elif kind == b"zset":
                    self.redis_values += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
                elif kind == b"stream":
                    for _id, entry in client.xrange(key):
                        for k, v in entry.items():
                            self.redis_values += [k, v]
        finally:
            client.close()


CHAOS_ALLOW_CIDRS: Final = "127.0.0.0/8"
"""Receivers are on loopback; the SSRF guard lets them through only because of this."""
