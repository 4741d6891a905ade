"""A private stack of real processes for one chaos scenario, and what every scenario measures.

Redis (``redis-server``, optionally with AOF, restartable on the same port and directory), the
project's MPC simulator, a Slack stand-in and a webhook receiver (each its own process), the API
and any number of workers: all on loopback, all logging to ``*.log`` in the scenario's directory,
all stopped by PID in :meth:`ChaosStack.close`. Every secret is the run's own
(:class:`~chaos.model.KnownSecrets`); the club's MPC token goes in through the API.

:class:`Load` moves bulks through MPC's lifecycle at random instants through the simulator's
control API; :func:`verify` then compares the simulator's flip log with the timelines, the
webhooks and the Slack threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from bridge.slack.render import status_word
from bridge_tools.processes import LOOPBACK, Process, free_port, redis_answers
from bridge_tools.redis_binary import redis_server_binary
from chaos.model import CHAOS_ALLOW_CIDRS, WORKER_ENTRIES, Outcome, RunContext
from mpc_simulator import SimulatorControl
from mpc_simulator.scenarios import next_transition, outcome_patch
from mpc_simulator.state import BulkPatch, BulkStatus, FlipEntry, RequestLogEntry

CLUB: Final = "chaos-mall"
RECEIVER_PATH: Final = "hooks"
BULKS_PER_IMPORT: Final = 5
MEMBERS_PER_BULK: Final = 100
REQUEST_LOG_SIZE: Final = 1_000_000
START_TIMEOUT_S: Final = 30.0
SETTLE_TIMEOUT_S: Final = 45.0
"""How long a scenario waits, after its load, for every change to be announced and delivered: a
job a killed worker held is free again after the delivery timeout + 10 s, an outbox entry without
a job is re-dispatched by the sweeper after 30 s (plus its 10 s period)."""
HTTP_TIMEOUT_S: Final = 30.0
SETTLE_POLL_S: Final = 0.25
STOP_GRACE_S: Final = 15.0
"""At the end: a worker's drain (at most 4 s here) and its exit margin fit."""

POLL_MIN_S: Final = 0.2
POLL_MAX_S: Final = 1.0
UPSTREAM_TIMEOUT_S: Final = 0.5
UPSTREAM_CONNECT_TIMEOUT_S: Final = 0.25
LEASE_S: Final = 2.0
"""Just above what the bridge requires (2 x (connect + read) timeouts): a killed worker's imports
come back quickly."""
DELIVERY_TIMEOUT_S: Final = 5.0
"""A delivery's ceiling: a killed worker's delivery stays leased this long plus its grace and 10 s."""
WEBHOOK_TIMEOUT_S: Final = 3.0
SLACK_POST_INTERVAL_S: Final = 0.05
WEBHOOK_RETRY_SCHEDULE: Final = "0.5,1,1,2,2,3,5"

FLIP_GAP_MIN_S: Final = 2 * LEASE_S + 2 * POLL_MAX_S
"""Least time between two changes of one bulk: a killed worker's lease runs out and the import is
polled again before the bulk changes once more, so every change is observable."""
FINISH_P: Final = 0.45
"""A working bulk finishes (else it is retried, failing after the 5th retry)."""

REDIS_TUNING: Final = ("--hash-max-listpack-value", "1024")
TERMINAL: Final[tuple[BulkStatus, ...]] = ("finished", "failed")
EVENT_ID: Final = re.compile(r"evt_[0-9a-f]{32}")

SLACK_TOKEN: Final = "xoxb-chaos-" + secrets.token_hex(12)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


async def until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.1
) -> float:
    """Wait for ``predicate``; returns the seconds it took (TimeoutError after ``timeout_s``)."""
    started = time.monotonic()
    while True:
        if await predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(every_s)


def _ready_url(proc: Process) -> str:
    assert proc.popen is not None and proc.popen.stdout is not None
    line = proc.popen.stdout.readline().decode()
    if not line.strip():
        raise RuntimeError(f"{proc.argv[:4]} did not start: {proc.output()[-2000:]}")
    return line.split()[-1]


@dataclass
class ChaosStack:
    ctx: RunContext
    name: str
    procs: dict[str, Process] = field(default_factory=dict)
    redis_port: int = 0
    simulator_url: str = ""
    receiver_url: str = ""
    slack_url: str = ""
    api_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.ctx.scenario_dir(self.name)

    # ------------------------------------------------------------------ processes

    def start_redis(self, *, aof: bool) -> None:
        """Start Redis (on the same port and directory when it ran before)."""
        self.redis_port = self.redis_port or free_port()
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if aof else ["--appendonly", "no"]
        argv = [
            redis_server_binary(),
            "--port",
            str(self.redis_port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--dir",
            str(self.dir),
            *persistence,
            *REDIS_TUNING,
        ]
        self.procs["redis"] = Process(argv, self.dir / "redis.log").start()

    async def redis_up(self) -> None:
        await until(lambda: _async(redis_answers(self.redis_port)), START_TIMEOUT_S, "redis-server")

    def stop_redis(self) -> int | None:
        """Capture every value, then SIGTERM (Redis writes its AOF and exits); returns its exit code."""
        self.ctx.capture_redis(self.redis_port)
        return self.procs["redis"].stop(grace_s=START_TIMEOUT_S)

    def start_sidecars(self) -> None:
        """The simulator, the webhook receiver and the Slack stand-in, started together on ports
        chosen now (their URLs are known at once; :meth:`sidecars_ready` waits for them)."""
        ports = {name: free_port() for name in ("simulator", "receiver", "slack")}
        argv = {
            "simulator": python("-m", "bridge", "simulator", "--port", str(ports["simulator"]),
                                "--token", self.ctx.secrets.mpc_token,
                                "--request-log", str(REQUEST_LOG_SIZE)),
            "receiver": python("-m", "bridge_tools.webhook_receiver", "--port", str(ports["receiver"])),
            "slack": python("-m", "bridge_tools.slack_standin", "--port", str(ports["slack"]),
                            "--token", SLACK_TOKEN),
        }  # fmt: skip
        for name, args in argv.items():
            self.procs[name] = Process(args, self.dir / f"{name}.log").start(stdout_pipe=True)
        self.simulator_url = f"http://{LOOPBACK}:{ports['simulator']}"
        self.receiver_url = f"http://{LOOPBACK}:{ports['receiver']}"
        self.slack_url = f"http://{LOOPBACK}:{ports['slack']}"

    def sidecars_ready(self) -> None:
        """Each sidecar printed its READY line (with the URL it was given)."""
        for name, url in (
            ("simulator", self.simulator_url),
            ("receiver", self.receiver_url),
            ("slack", self.slack_url),
        ):
            ready = _ready_url(self.procs[name])
            if ready.rstrip("/") != url:
                raise RuntimeError(f"{name} listens on {ready}, not {url}")

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        env.update(
            {
                "BRIDGE_REDIS_URL": f"redis://{LOOPBACK}:{self.redis_port}/0",
                "BRIDGE_API_KEYS": self.ctx.secrets.api_key,
                "BRIDGE_SECRET_KEY": self.ctx.secrets.secret_key,
                "BRIDGE_MPC_BASE_URL": self.simulator_url,
                "BRIDGE_MPC_TOKEN": self.ctx.secrets.mpc_token,
                "BRIDGE_SLACK_BOT_TOKEN": SLACK_TOKEN,
                "BRIDGE_SLACK_API_URL": self.slack_url + "/api/",
                "BRIDGE_SLACK_POST_INTERVAL_S": str(SLACK_POST_INTERVAL_S),
                "BRIDGE_WEBHOOK_ALLOW_CIDRS": CHAOS_ALLOW_CIDRS,
                "BRIDGE_WEBHOOK_RETRY_SCHEDULE_S": WEBHOOK_RETRY_SCHEDULE,
                "BRIDGE_POLL_MIN_INTERVAL_S": str(POLL_MIN_S),
                "BRIDGE_POLL_MAX_INTERVAL_S": str(POLL_MAX_S),
                "BRIDGE_UPSTREAM_TIMEOUT_S": str(UPSTREAM_TIMEOUT_S),
                "BRIDGE_UPSTREAM_CONNECT_TIMEOUT_S": str(UPSTREAM_CONNECT_TIMEOUT_S),
                "BRIDGE_POLL_LEASE_S": str(LEASE_S),
                # Polls come far faster than MPC allows (a scaled clock): the clubs' request budget
                # would hold most back. Its own tests: tests/integration/test_upstream_budget.py.
                "BRIDGE_MPC_CLUB_RATE": "100000",
                "BRIDGE_MPC_CLUB_BURST": "100000",
                "BRIDGE_DELIVERY_TIMEOUT_S": str(DELIVERY_TIMEOUT_S),
                "BRIDGE_WEBHOOK_TIMEOUT_S": str(WEBHOOK_TIMEOUT_S),
                "BRIDGE_NOTIFY_LOG": "false",
                "BRIDGE_LOG_LEVEL": "info",
                "BRIDGE_LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://{LOOPBACK}:{port}"
        self.procs["api"] = Process(
            python("-m", "bridge", "api", "--host", LOOPBACK, "--port", str(port)),
            self.dir / "api.log",
            self.env(),
        ).start()

    async def api_ready(self) -> None:
        await until(self.ready, START_TIMEOUT_S, "the API")

    async def readyz(self) -> int:
        try:
            async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
                response = await client.get(self.api_url + "/readyz")
        except httpx.HTTPError:
            return 0
        self.ctx.record_response(response.content)
        return response.status_code

    async def ready(self) -> bool:
        return await self.readyz() == 200

    async def slow_sinks(self, delay_s: float, count: int) -> None:
        """The next ``count`` webhooks and Slack posts each take ``delay_s`` to be answered."""
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
            replies = [{"status": 204, "delay_s": delay_s}] * count
            answer = await client.put(
                f"{self.receiver_url}/_control/script/{RECEIVER_PATH}", json={"replies": replies}
            )
            answer.raise_for_status()
            for method in ("chat.postMessage", "chat.update"):
                fault = {"method": method, "status": 200, "delay_s": delay_s, "count": count}
                (await client.post(f"{self.slack_url}/_control/faults", json=fault)).raise_for_status()

    async def failing_receiver(self, status: int, count: int) -> None:
        """The next ``count`` webhooks are answered ``status``: retries pile up."""
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
            replies = [{"status": status}] * count
            answer = await client.put(
                f"{self.receiver_url}/_control/script/{RECEIVER_PATH}", json={"replies": replies}
            )
            answer.raise_for_status()

    def start_worker(self, name: str, **overrides: str) -> Process:
        old = self.procs.get(name)
        if old is not None:
            old.stop()
        argv = python(*WORKER_ENTRIES[self.ctx.worker_entry])
        proc = Process(argv, self.dir / f"{name}.log", self.env(**overrides))
        self.procs[name] = proc.start()
        return proc

    def output_of(self, *names: str) -> list[str]:
        """The log lines of these processes (every incarnation: logs are appended)."""
        return [line for name in names for line in self.procs[name].output().splitlines()]

    def kill(self, name: str) -> None:
        """SIGKILL by PID (its process group), then release its log file."""
        proc = self.procs[name]
        proc.signal(signal.SIGKILL)
        proc.stop()

    def close(self) -> None:
        """SIGTERM to every process but Redis at once, each waited for (SIGKILL after the grace),
        then Redis: workers hand back their work while it still answers."""
        others = [proc for name, proc in self.procs.items() if name != "redis"]
        for proc in others:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in others:
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            proc.stop()
        if "redis" in self.procs:
            self.procs["redis"].stop()


async def _async(value: bool) -> bool:
    return value


# ---------------------------------------------------------------------- API


class Api:
    """The bridge's API with the run's key; every body read goes to ``ctx.record_response``."""

    def __init__(self, ctx: RunContext, url: str) -> None:
        self.ctx = ctx
        self.http = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {ctx.secrets.api_key}"},
            timeout=HTTP_TIMEOUT_S,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, body: Any = None, *, record: bool = True) -> Any:
        response = await self.http.request(method, path, json=body)
        if record:
            self.ctx.record_response(response.content)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    async def setup(self, receiver_url: str) -> str:
        """The club's own MPC token, and a subscription to every event; returns its secret."""
        await self.call("PUT", f"/v1/clubs/{CLUB}/credentials", {"token": self.ctx.secrets.club_token})
        created = await self.call(
            "POST", "/v1/subscriptions", {"url": f"{receiver_url}/{RECEIVER_PATH}"}, record=False
        )
        secret = str(created["secret"])
        self.ctx.subscription_secrets.append(secret)
        async with httpx.AsyncClient(base_url=receiver_url, trust_env=False) as client:
            answer = await client.put(f"/_control/secrets/{RECEIVER_PATH}", json={"secrets": [secret]})
            answer.raise_for_status()
        return secret

    async def watch(self, import_id: str, channel: str) -> str:
        created = await self.call(
            "POST",
            "/v1/watches",
            {"loyalty_club_slug": CLUB, "import_id": import_id, "slack": {"channel": channel}},
        )
        return str(created["id"])

    async def timeline(self, watch_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = f"?limit=500&cursor={cursor}" if cursor else "?limit=500"
            page = await self.call("GET", f"/v1/watches/{watch_id}/events{params}")
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


# ---------------------------------------------------------------------- load


@dataclass
class Bulk:
    import_id: str
    bulk_id: int
    status: BulkStatus = "waiting"
    retries: int = 0
    next_at: float = 0.0
    last_at: float = float("-inf")


class Load:
    """``imports`` x 5 bulks in the simulator, each moved one valid step at a time at random
    instants (at least :data:`FLIP_GAP_MIN_S` apart for one bulk) through the control API."""

    def __init__(
        self,
        control: SimulatorControl,
        imports: int,
        seed: int,
        gap_max_s: float,
        gap_min_s: float = FLIP_GAP_MIN_S,
    ) -> None:
        self.control = control
        self.rng = random.Random(seed)
        self.import_ids = [f"imp-{seed}-{n:03d}" for n in range(imports)]
        self.gap_min_s = gap_min_s
        self.gap_max_s = max(gap_max_s, gap_min_s + 1)
        self.bulks: list[Bulk] = []
        self.flips = 0
        self.started_t = 0.0

    async def create(self, ctx: RunContext) -> None:
        batch = [
            (CLUB, import_id, [{"members_in_payload_number": MEMBERS_PER_BULK}] * BULKS_PER_IMPORT)
            for import_id in self.import_ids
        ]
        await self.control.put_imports(batch)
        await self.control.set_club_token(CLUB, ctx.secrets.club_token)
        for import_id in self.import_ids:
            detail = await self.control.get_import(CLUB, import_id)
            self.bulks += [Bulk(import_id, b.id) for b in detail.bulks]

    async def run(self, seconds: float) -> None:
        """Move bulks for ``seconds``; the first change of each bulk comes within the first gap."""
        self.started_t = time.time()
        start = time.monotonic()
        deadline = start + seconds
        for bulk in self.bulks:
            bulk.next_at = start + self.rng.uniform(0, self.gap_max_s)
        while True:
            live = [b for b in self.bulks if b.status not in TERMINAL]
            if not live:
                return
            bulk = min(live, key=lambda b: b.next_at)
            if bulk.next_at > deadline:
                return
            await asyncio.sleep(max(0.0, bulk.next_at - time.monotonic()))
            if bulk.next_at > time.monotonic():
                continue  # a burst moved it meanwhile
            await self.step(bulk)

    async def burst(self, count: int) -> int:
        """Move up to ``count`` bulks now (those not changed within the least gap); returns how many."""
        now = time.monotonic()
        ready = [b for b in self.bulks if b.status not in TERMINAL and b.last_at + self.gap_min_s <= now]
        chosen = self.rng.sample(ready, min(count, len(ready)))
        await asyncio.gather(*(self.step(b) for b in chosen))
        return len(chosen)

    async def step(self, bulk: Bulk) -> None:
        step = next_transition(bulk.status, bulk.retries, self.rng, finish_p=FINISH_P)
        if step is None:
            return
        # Taken before the change is sent: a burst meanwhile leaves this bulk alone.
        bulk.last_at = time.monotonic()
        bulk.next_at = bulk.last_at + self.rng.uniform(self.gap_min_s, self.gap_max_s)
        status, retries = step
        if status == "finished":
            patch = outcome_patch(
                self.rng, MEMBERS_PER_BULK, error_rate=0.02, nothing_p=0.05, retries=retries
            )
        else:
            patch = BulkPatch(status=status, retries=retries)
        await self.control.patch_bulk(CLUB, bulk.import_id, bulk.bulk_id, **msgspec.to_builtins(patch))
        bulk.status, bulk.retries = status, retries
        self.flips += 1


# ---------------------------------------------------------------------- verification


@dataclass
class Evidence:
    """What the outside world saw: the simulator's changes, the API's timelines, the sinks."""

    flips: list[FlipEntry]
    served: list[RequestLogEntry]
    timelines: dict[str, list[dict[str, Any]]]
    """watch id → its events."""
    watch_imports: dict[str, str]
    """watch id → import id."""
    webhooks: list[dict[str, Any]]
    slack: dict[str, Any]
    final: dict[tuple[str, int], tuple[str, int]]
    """(import, bulk) → the simulator's final (status, retries)."""
    channels: dict[str, str]
    """watch id → its Slack channel."""


async def gather_evidence(
    ctx: RunContext,
    stack: ChaosStack,
    api: Api,
    control: SimulatorControl,
    load: Load,
    watches: dict[str, str],
    channels: dict[str, str],
) -> Evidence:
    flips = [f for f in await control.all_flips() if f.source == "control" and f.t >= load.started_t]
    served = await control.all_requests()
    timelines = {wid: await api.timeline(wid) for wid in watches}
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
        webhooks = (
            await client.get(f"{stack.receiver_url}/_control/requests", params={"path": RECEIVER_PATH})
        ).json()
        slack = (await client.get(f"{stack.slack_url}/_control/messages")).json()
    for item in webhooks:
        ctx.record_event(item["body"].encode())
    for card in slack["messages"]:
        ctx.record_event(msgspec.json.encode({k: v for k, v in card.items() if k != "replies"}))
        for reply in card["replies"]:
            ctx.record_event(msgspec.json.encode(reply))
    final: dict[tuple[str, int], tuple[str, int]] = {}
    for import_id in load.import_ids:
        detail = await control.get_import(CLUB, import_id)
        for bulk in detail.bulks:
            final[(import_id, bulk.id)] = (bulk.status, bulk.retries)
    return Evidence(flips, served, timelines, watches, webhooks, slack, final, channels)


async def settle(stack: ChaosStack, api: Api, watches: dict[str, str], load: Load, timeout_s: float) -> float:
    """Wait until every bulk's final state is in its watch and every event reached both sinks."""

    async def done() -> bool:
        expected: set[str] = set()
        for wid in watches:
            expected |= {e["event_id"] for e in await api.timeline(wid)}
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
            hooks = (
                await client.get(f"{stack.receiver_url}/_control/requests", params={"path": RECEIVER_PATH})
            ).json()
            slack = (await client.get(f"{stack.slack_url}/_control/messages")).json()
        got_hooks = {h["webhook_id"] for h in hooks if h["status"] < 300}
        got_slack = {m for card in slack["messages"] for r in card["replies"] for m in _event_ids(r)}
        if not expected <= got_hooks or not expected <= got_slack:
            return False
        for wid, import_id in watches.items():
            shown = await api.call("GET", f"/v1/watches/{wid}")
            for bulk in shown["bulks"]:
                target = next(
                    b for b in load.bulks if b.import_id == import_id and b.bulk_id == bulk["bulk_id"]
                )
                if (bulk["status"], bulk["retries"]) != (target.status, target.retries):
                    return False
        return True

    return await until(done, timeout_s, "every change announced and delivered", every_s=SETTLE_POLL_S * 4)


def _event_ids(message: dict[str, Any]) -> set[str]:
    return set(EVENT_ID.findall(msgspec.json.encode(message).decode()))


def verify(outcome: Outcome, ev: Evidence, *, strict_slack: bool) -> dict[str, Any]:
    """Figures and checks every scenario shares; returns details for scenario-specific checks."""
    # The simulator's changes, bulk by bulk, against the status events of each bulk's watch.
    watch_of = {imp: wid for wid, imp in ev.watch_imports.items()}
    shown: dict[tuple[int, str], list[float]] = {}
    for request in ev.served:
        for bulk_id, status in request.shown.items():
            shown.setdefault((int(bulk_id), status), []).append(request.t)
    flips_by_bulk: dict[tuple[str, int], list[FlipEntry]] = {}
    for flip in ev.flips:
        flips_by_bulk.setdefault((flip.import_id, flip.bulk_id), []).append(flip)
    events_by_bulk: dict[tuple[str, int], list[dict[str, Any]]] = {}
    all_events: list[dict[str, Any]] = []
    for wid, items in ev.timelines.items():
        all_events += items
        for item in items:
            if item["bulk_id"] is not None and item["type"] != "bulk.discovered":
                events_by_bulk.setdefault((ev.watch_imports[wid], item["bulk_id"]), []).append(item)
    lost: list[str] = []
    unobservable = 0
    twice: list[str] = []
    # Status events matching no simulator change: a bulk that changed twice between two polls is
    # announced once, from where it was seen to where it is (one such event per unobservable change).
    unmatched: list[str] = []
    for key in set(flips_by_bulk) | set(events_by_bulk):
        flips = sorted(flips_by_bulk.get(key, []), key=lambda f: f.seq)
        events = sorted(events_by_bulk.get(key, []), key=lambda e: e["sequence"])
        changes = [
            (e["data"].get("previous_status"), e["data"].get("status"), e["data"].get("retries"))
            for e in events
        ]
        seen_changes: dict[tuple[Any, ...], str] = {}
        for event, change in zip(events, changes, strict=True):
            if change in seen_changes and seen_changes[change] != event["event_id"]:
                twice.append(f"{key}: {change}")
            seen_changes[change] = event["event_id"]
        remaining = list(changes)
        for index, flip in enumerate(flips):
            change = (flip.from_, flip.to, flip.retries)
            if change in remaining:
                remaining.remove(change)
                continue
            next_t = flips[index + 1].t if index + 1 < len(flips) else float("inf")
            if not any(flip.t <= t < next_t for t in shown.get((key[1], flip.to), [])):
                unobservable += 1  # changed again before any poll answer showed it
                continue
            lost.append(
                f"{key[0]}/{key[1]} {flip.from_}->{flip.to} r{flip.retries} (watch {watch_of.get(key[0])})"
            )
        unmatched += [
            f"{key[0]}/{key[1]} {before}->{after} r{retries}" for before, after, retries in remaining
        ]
    # Events: one id per change.
    ids = [e["event_id"] for e in all_events]
    # Webhooks: every event received, verified, duplicates only under the same webhook-id.
    hooks = [h for h in ev.webhooks if h["status"] < 300]
    hook_ids = [h["webhook_id"] for h in hooks]
    unverified = [h for h in ev.webhooks if h["verified"] is not True]
    by_change: dict[str, set[str]] = {}
    for hook in hooks:
        body = msgspec.json.decode(hook["body"])
        data = body["data"]
        what = (body["type"], data.get("watch_id"), data.get("bulk_id"), data.get("previous_status"))
        change_key = "|".join(str(v) for v in (*what, data.get("status"), data.get("retries")))
        by_change.setdefault(change_key, set()).add(hook["webhook_id"])
    hook_two_ids = [c for c, s in by_change.items() if len(s) > 1]
    missing_hooks = set(ids) - set(hook_ids)
    # Slack: one reply per event in its watch's thread; each card shows the simulator's final state.
    replies: list[str] = []
    cards_wrong: list[str] = []
    for card in ev.slack["messages"]:
        for reply in card["replies"]:
            replies += sorted(_event_ids(reply))
    for wid, import_id in ev.watch_imports.items():
        channel = ev.channels[wid]
        cards = [c for c in ev.slack["messages"] if c["channel"] == channel]
        if len(cards) != 1:
            cards_wrong.append(f"{wid}: {len(cards)} cards")
            continue
        text = msgspec.json.encode(cards[0]["blocks"]).decode()
        for (imp, bulk_id), (status, retries) in ev.final.items():
            if imp == import_id and f"*Bulk {bulk_id}* · {status_word(status)} · " not in text:
                cards_wrong.append(f"{wid} bulk {bulk_id}: card does not show {status}")
            elif imp == import_id and f"retries {retries}/" not in text:
                cards_wrong.append(f"{wid} bulk {bulk_id}: card does not show retries {retries}")
    reply_dupes = len(replies) - len(set(replies))
    missing_replies = set(ids) - set(replies)
    outcome.figures.update(
        {
            "transitions made by the simulator": len(ev.flips),
            "transitions not observable (changed again before a poll)": unobservable,
            "events recorded (API timelines)": len(ids),
            "webhooks received (unique ids)": len(set(hook_ids)),
            "webhook duplicates (same id)": len(hook_ids) - len(set(hook_ids)),
            "Slack replies (unique)": len(set(replies)),
            "Slack duplicate replies": reply_dupes,
            "cards": len(ev.slack["messages"]),
        }
    )
    outcome.check("0 lost (every observable transition announced)", not lost, _some(lost))
    outcome.check(
        "no event without a simulator change",
        len(unmatched) <= unobservable,
        f"{len(unmatched)} unmatched, {unobservable} unobservable: " + _some(unmatched),
    )
    outcome.check("0 changes announced under two ids", not twice and len(ids) == len(set(ids)), _some(twice))
    outcome.check(
        "every event delivered as a verified webhook",
        not missing_hooks and not unverified,
        f"{len(missing_hooks)} missing, {len(unverified)} unverified",
    )
    outcome.check("webhook duplicates only with identical webhook-id", not hook_two_ids, _some(hook_two_ids))
    allowed = 0 if strict_slack else int(len(ids) * 0.005)
    outcome.check(
        "every event replied in Slack",
        not missing_replies,
        f"{len(missing_replies)} missing",
    )
    outcome.check(
        f"Slack duplicate replies <= {'0' if strict_slack else '0.5 % of events'}",
        reply_dupes <= allowed,
        f"{reply_dupes} (allowed {allowed})",
    )
    outcome.check("every card shows the simulator's final state", not cards_wrong, _some(cards_wrong))
    return {"lost": lost, "ids": ids}


def channel_for(index: int) -> str:
    """A Slack channel id per watch (each card's thread paced on its own)."""
    return f"C{index:09d}"


def _some(items: list[str], shown: int = 3) -> str:
    if not items:
        return "0"
    return f"{len(items)}: " + "; ".join(items[:shown]) + (" ..." if len(items) > shown else "")


# ---------------------------------------------------------------------- one scenario's rig


@dataclass
class Rig:
    """A started stack with its load, subscription and watches (one per import, each with its
    own Slack channel)."""

    ctx: RunContext
    stack: ChaosStack
    api: Api
    control: SimulatorControl
    load: Load
    watches: dict[str, str] = field(default_factory=dict)
    """watch id → import id."""
    channels: dict[str, str] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)

    async def baseline(self) -> float:
        """Until every watch has seen every bulk once (waiting): changes start after that.
        Returns the seconds since the rig began starting (processes, imports, watches, first polls)."""

        async def seen() -> bool:
            for wid in self.watches:
                shown = await self.api.call("GET", f"/v1/watches/{wid}")
                if len(shown["bulks"]) < BULKS_PER_IMPORT or any(b["status"] is None for b in shown["bulks"]):
                    return False
            return True

        await until(seen, START_TIMEOUT_S, "every bulk seen once", every_s=SETTLE_POLL_S)
        return time.monotonic() - self.began

    async def settle(self, timeout_s: float) -> float:
        return await settle(self.stack, self.api, self.watches, self.load, timeout_s)

    async def settled_evidence(self, timeout_s: float = SETTLE_TIMEOUT_S) -> tuple[str, Evidence]:
        """Wait for everything to settle after the load (how long it took, as a figure), then
        gather the evidence."""
        try:
            settled = f"{await self.settle(timeout_s):.1f} s"
        except TimeoutError:
            settled = f"not within {timeout_s:g} s"
        return settled, await self.evidence()

    async def evidence(self) -> Evidence:
        return await gather_evidence(
            self.ctx, self.stack, self.api, self.control, self.load, self.watches, self.channels
        )


@contextlib.asynccontextmanager
async def rig(
    ctx: RunContext,
    name: str,
    *,
    imports: int,
    seed: int,
    gap_max_s: float,
    gap_min_s: float = FLIP_GAP_MIN_S,
    aof: bool = False,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Rig]:
    """Redis, simulator, receiver, Slack stand-in and API started, the imports and watches created;
    workers are the scenario's to start. Everything is stopped by PID on exit, Redis captured first."""
    began = time.monotonic()
    stack = ChaosStack(ctx, name, extra_env=dict(env or {}))
    api: Api | None = None
    control: SimulatorControl | None = None
    try:
        stack.start_redis(aof=aof)
        stack.start_sidecars()
        stack.start_api()
        stack.sidecars_ready()
        await stack.redis_up()
        control = SimulatorControl(stack.simulator_url)
        load = Load(control, imports, seed, gap_max_s, gap_min_s)
        await load.create(ctx)
        await stack.api_ready()
        api = Api(ctx, stack.api_url)
        await api.setup(stack.receiver_url)
        running = Rig(ctx, stack, api, control, load, began=began)
        for index, import_id in enumerate(load.import_ids):
            channel = channel_for(index)
            wid = await api.watch(import_id, channel)
            running.watches[wid] = import_id
            running.channels[wid] = channel
        yield running
    finally:
        if api is not None:
            await api.aclose()
        if control is not None:
            await control.aclose()
        redis = stack.procs.get("redis")
        if redis is not None and redis.alive():
            with contextlib.suppress(Exception):
                ctx.capture_redis(stack.redis_port)
        stack.close()
