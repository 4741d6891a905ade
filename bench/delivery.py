"""Webhook delivery throughput of one worker process, against bare aiohttp POST loops (same run).

1. Redis, the simulator, the API and a counting receiver (:mod:`bench.receiver`, its own
   process) start; ``subscriptions`` webhook subscriptions to the receiver (one path each, every
   event type) and one whole-import watch per import are created through the API.
2. The backlog: every import has ``bulks`` bulks, all ``finished``. The worker's own runtime
   (:class:`bridge.worker.runtime.Runtime`: the poller, the diff, the atomic commit and the dispatch of
   one arq job per event and destination), run in this process with no arq worker beside it,
   polls each import once: ``bulk.discovered`` and ``bulk.finished`` per bulk and
   ``import.completed`` per import, in the outbox and as queued delivery jobs. It stops once
   the outbox holds them all (the watches are then completed: nothing is polled again).
3. One ``bridge worker`` starts and drains the queue into the receiver. Deliveries per second
   run from the first to the last webhook received; CPU of the worker, Redis and the receiver is
   read over that window, and Redis commands per delivery over the whole drain (the worker's
   start and its idle polling of the queue included). Then: the outbox is empty, every
   subscription got each event exactly once (no ``webhook-id`` twice), and a sample of the
   requests verifies with the ``standardwebhooks`` package and the subscription's secret.
4. Baselines, with the worker stopped: the bare aiohttp POST loop (:mod:`bench.load`) sends the
   same event bodies (in turn) at the worker's job concurrency for ``baseline_s``, to the same
   receiver — with keep-alive, as the bridge's sender does (pooled per checked address: the SSRF
   guard), and with a new connection per request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

from bench.harness import API_KEY, CpuMeter, Stack, redis_commands
from bench.load import measure
from bench.throughput import SLUG
from bridge import wiring
from bridge.config import load_settings
from bridge.logs import configure_logging
from bridge.redis_url import connect
from bridge.store import keys
from bridge_tools.processes import Process
from mpc_simulator import SimulatorControl

CONCURRENCY: Final = 100
"""The worker's ``BRIDGE_WORKER_MAX_JOBS`` (its default), and the baselines' concurrency."""
EVENTS_PER_BULK: Final = 2
"""``bulk.discovered`` and ``bulk.finished``: a finished bulk seen for the first time."""
EVENTS_PER_IMPORT: Final = 1
"""``import.completed``."""
MEMBERS_PER_BULK: Final = 100
SAMPLE_EVERY: Final = 50
"""The receiver keeps one request in this many for the signature check."""
PRODUCE_TIMEOUT_S: Final = 120.0
DRAIN_TIMEOUT_S: Final = 300.0
SETTLE_TIMEOUT_S: Final = 10.0
SETTLE_STEP_S: Final = 0.05
BASELINE_WARMUP_S: Final = 1.0
BASELINE_PATH: Final = "baseline"
STATIC_WEBHOOK_HEADERS: Final = (
    "webhook-id: evt_00000000000000000000000000000000",
    f"webhook-timestamp: {int(time.time())}",
    "webhook-signature: v1," + "A" * 44,
)
"""Headers of a webhook's size on the baseline requests (not signed: the loop does no work)."""


async def poll_until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """Whether ``check`` came true within ``timeout_s`` (asked every :data:`SETTLE_STEP_S`)."""
    for _ in range(int(timeout_s / SETTLE_STEP_S)):
        if await check():
            return True
        await asyncio.sleep(SETTLE_STEP_S)
    return await check()


def start_receiver(stack: Stack) -> str:
    argv = [sys.executable, "-m", "bench.receiver", "--port", "0", "--sample-every", str(SAMPLE_EVERY)]
    proc = Process(argv, stack.workdir / "receiver.log").start(stdout_pipe=True)
    stack.procs["receiver"] = proc
    assert proc.popen is not None and proc.popen.stdout is not None
    return proc.popen.stdout.readline().decode().split()[-1]


def sub_path(index: int) -> str:
    return f"sub-{index}"


async def setup(
    stack: Stack, receiver: str, *, imports: int, bulks: int, subscriptions: int
) -> dict[str, str]:
    """The imports in the simulator; subscriptions and watches through the API. Returns each
    subscription path's secret."""
    async with SimulatorControl(stack.simulator_url) as control:
        await control.put_imports(
            [
                (
                    SLUG,
                    f"imp-{n}",
                    [
                        {"id": b + 1, "status": "finished", "members_in_payload_number": MEMBERS_PER_BULK}
                        for b in range(bulks)
                    ],
                )
                for n in range(imports)
            ]
        )
    secrets: dict[str, str] = {}
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as api:
        for index in range(subscriptions):
            created = await api.post("/v1/subscriptions", json={"url": f"{receiver}/{sub_path(index)}"})
            created.raise_for_status()
            secrets[sub_path(index)] = created.json()["secret"]
        for n in range(imports):
            watch = await api.post("/v1/watches", json={"loyalty_club_slug": SLUG, "import_id": f"imp-{n}"})
            watch.raise_for_status()
    return secrets


async def produce(env: dict[str, str], expected: int) -> dict[str, Any]:
    """Run the worker's runtime here (poll loop only, no arq) until the outbox holds ``expected``
    entries; returns the backlog's size and one body per event."""
    settings = load_settings(env)
    configure_logging(settings.log_level, settings.log_format)
    redis = connect(settings.redis_url)
    runtime = wiring.build_runtime(settings, redis)
    started = time.monotonic()
    runtime.start()

    async def produced() -> bool:
        return await runtime.store.outbox_size() >= expected

    try:
        await poll_until(produced, PRODUCE_TIMEOUT_S)
    finally:
        await runtime.close()
    seconds = time.monotonic() - started
    outbox = await redis.zrange(keys.OUTBOX, 0, -1)
    queued = int(await redis.zcard(keys.QUEUE))
    event_ids = sorted({entry.decode().split(keys.OUTBOX_SEPARATOR)[0] for entry in outbox})
    bodies = [body for body in await redis.mget([keys.event(eid) for eid in event_ids]) if body]
    await redis.aclose(close_connection_pool=True)
    return {
        "outbox": len(outbox),
        "queued_jobs": queued,
        "events": len(event_ids),
        "seconds": round(seconds, 2),
        "bodies": bodies,
    }


async def drain(
    stack: Stack, receiver_url: str, env: dict[str, str], paths: list[str], per_path: int
) -> dict[str, Any]:
    """Start one worker; wait for every webhook; CPU over first → last webhook."""
    started = time.time()
    stack.start_worker("worker-1", env)
    meter = CpuMeter(
        {"worker": stack.pid("worker-1"), "redis": stack.pid("redis"), "receiver": stack.pid("receiver")}
    )
    timeout = httpx.Timeout(DRAIN_TIMEOUT_S + SETTLE_TIMEOUT_S)
    async with httpx.AsyncClient(base_url=receiver_url, timeout=timeout) as receiver:
        await receiver.get("/_wait", params={"path": paths[0], "count": 1, "timeout": DRAIN_TIMEOUT_S})
        meter.start()
        stats = {}
        for path in paths:
            answer = await receiver.get(
                "/_wait", params={"path": path, "count": per_path, "timeout": DRAIN_TIMEOUT_S}
            )
            stats[path] = answer.json()
        cpu = meter.stop()
    first = min(s["first_at"] for s in stats.values())
    last = max(s["last_at"] for s in stats.values())
    received = sum(s["count"] for s in stats.values())
    return {
        "stats": stats,
        "received": received,
        "window_s": round(last - first, 3),
        "deliveries_per_s": round((received - 1) / (last - first), 1) if last > first else float("nan"),
        "worker_start_to_last_s": round(last - started, 3),
        "cpu_percent": cpu,
        "worker_cpu_ms_per_delivery": round(10 * cpu["worker"] * (last - first) / max(1, received), 3),
    }


async def settle(stack: Stack) -> int:
    """Wait for the outbox to empty (a delivery is recorded just after its answer); what is left."""
    redis = connect(f"redis://127.0.0.1:{stack.redis_port}/0")

    async def empty() -> bool:
        return int(await redis.zcard(keys.OUTBOX)) == 0

    try:
        await poll_until(empty, SETTLE_TIMEOUT_S)
        return int(await redis.zcard(keys.OUTBOX))
    finally:
        await redis.aclose(close_connection_pool=True)


def check_signatures(stats: dict[str, Any], secrets: dict[str, str]) -> dict[str, int]:
    verified = failed = 0
    for path, doc in stats.items():
        webhook = Webhook(secrets[path])
        for sample in doc["samples"]:
            try:
                webhook.verify(sample["body"], sample["headers"])
            except WebhookVerificationError:
                failed += 1
            else:
                verified += 1
    return {"verified": verified, "failed": failed}


def baseline(
    stack: Stack, receiver: str, bodies_file: str, seconds: float, keep_alive: bool
) -> dict[str, Any]:
    args = [
        "post",
        "--url",
        f"{receiver}/{BASELINE_PATH}",
        "--bodies",
        bodies_file,
        "--concurrency",
        str(CONCURRENCY),
        "--seconds",
        str(seconds),
        "--warmup",
        str(BASELINE_WARMUP_S),
    ]
    for header in STATIC_WEBHOOK_HEADERS:
        args += ["--header", header]
    if not keep_alive:
        args.append("--force-close")
    result, cpu = measure(args, {"receiver": stack.pid("receiver")})
    result["receiver_cpu_percent"] = cpu["receiver"]
    return result


async def run(
    stack: Stack, *, imports: int, bulks: int, subscriptions: int, baseline_s: float
) -> dict[str, Any]:
    stack.start_redis()
    stack.start_simulator()
    receiver = start_receiver(stack)
    env = stack.bridge_env(BRIDGE_WORKER_MAX_JOBS=str(CONCURRENCY))
    stack.start_api(env)
    secrets = await setup(stack, receiver, imports=imports, bulks=bulks, subscriptions=subscriptions)
    events = imports * (bulks * EVENTS_PER_BULK + EVENTS_PER_IMPORT)
    expected = events * subscriptions
    backlog = await produce(env, expected)
    bodies: list[bytes] = backlog.pop("bodies")
    if backlog["outbox"] != expected or backlog["queued_jobs"] != expected:
        raise RuntimeError(f"backlog: expected {expected} deliveries, got {backlog}")
    assert all(b"\n" not in body for body in bodies)
    bodies_file = stack.workdir / "bodies.txt"
    bodies_file.write_bytes(b"\n".join(bodies))
    paths = [sub_path(i) for i in range(subscriptions)]
    commands = redis_commands(stack.redis_port)
    drained = await drain(stack, receiver, env, paths, events)
    left_in_outbox = await settle(stack)
    commands = redis_commands(stack.redis_port) - commands - 1
    stack.procs.pop("worker-1").stop()
    stats = drained.pop("stats")
    duplicates = {path: doc["count"] - doc["distinct_ids"] for path, doc in stats.items()}
    missing = {path: events - doc["distinct_ids"] for path, doc in stats.items()}
    signatures = check_signatures(stats, secrets)
    baselines = {
        "keep_alive": baseline(stack, receiver, str(bodies_file), baseline_s, keep_alive=True),
        "new_connection": baseline(stack, receiver, str(bodies_file), baseline_s, keep_alive=False),
    }
    rate = drained["deliveries_per_s"]
    sizes = [len(body) for body in bodies]
    return {
        "imports": imports,
        "bulks_per_import": bulks,
        "subscriptions": subscriptions,
        "events": events,
        "deliveries": expected,
        "concurrency": CONCURRENCY,
        "body_bytes": {"min": min(sizes), "mean": round(sum(sizes) / len(sizes)), "max": max(sizes)},
        "backlog": backlog,
        **drained,
        "redis_commands_per_delivery": round(commands / expected, 2),
        "left_in_outbox": left_in_outbox,
        "duplicate_webhook_ids": duplicates,
        "missing_events": missing,
        "signatures_checked": signatures,
        "baselines": baselines,
        "ratio_to_keep_alive": round(rate / baselines["keep_alive"]["requests_per_s"], 3),
        "ratio_to_new_connection": round(rate / baselines["new_connection"]["requests_per_s"], 3),
    }
