"""Webhook delivery throughput of one worker process, against bare aiohttp POST loops (same run).

1. Redis, the simulator, the API and a counting receiver (:mod:`bench.receiver`, its own
   process) start; ``subscriptions`` webhook subscriptions to the receiver (one path each, every
   event type) and one whole-import watch per import are created through the API.
2. The backlog: every import has ``bulks`` bulks, all ``finished``. The worker's own runtime
   (:class:`bridge.worker.runtime.Runtime`: the poller, the diff, the atomic commit of the events
   with their outbox entries), its poll loop only, run in this process with no delivery loop,
   polls each import once: ``bulk.discovered`` and ``bulk.finished`` per bulk and
   ``import.completed`` per import, in the outbox, due now. It stops once
   the outbox holds them all (the watches are then completed: nothing is polled again).
3. One ``bridge worker`` starts and drains the outbox into the receiver. Deliveries per second
   run from the first to the last webhook received; CPU of the worker, Redis and the receiver is
   read over that window, and Redis commands per delivery over the whole drain (the worker's
   start and its idle polling of the queue included). Then: the outbox is empty, every
   subscription got each event exactly once (no ``webhook-id`` twice), and a sample of the
   requests verifies with the ``standardwebhooks`` package and the subscription's secret.
4. Baselines, with the worker stopped: the bare aiohttp POST loop (:mod:`bench.load`) sends the
   same event bodies (in turn) at the worker's job concurrency for ``baseline_s``, to the same
   receiver — with keep-alive, as the bridge's sender does (pooled per checked address: the SSRF
   guard), and with a new connection per request.
5. The same again over https (steps 1 to 3, fresh imports and subscriptions; the http ones are
   deleted first): a second counting receiver serves a certificate from a throwaway CA
   (:class:`bridge_tools.tls.ThrowawayCa`, made for this run), and the worker trusts it through
   ``BRIDGE_WEBHOOK_CA_BUNDLE``: certificates verified, host names checked, as in production.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, NamedTuple

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

from bench.harness import API_KEY, CpuMeter, Stack, redis_command_counts
from bench.load import measure
from bench.throughput import SLUG
from bridge import wiring
from bridge.config import load_settings
from bridge.logs import configure_logging
from bridge.redis_url import connect
from bridge.store import keys
from bridge_tools.processes import Process
from bridge_tools.tls import ServerFiles, ThrowawayCa
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
WORKER: Final = "worker-1"
COMMAND_SHOWN_MIN: Final = 0.01
"""Redis commands are listed by name when a delivery costs at least this many of them on average."""
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


class Receiver(NamedTuple):
    """A counting receiver process: its name in the stack, its URL, and the CA bundle that
    verifies it (https)."""

    name: str
    url: str
    ca_bundle: Path | None = None

    def client(self, timeout: httpx.Timeout) -> httpx.AsyncClient:
        verify = True if self.ca_bundle is None else ssl.create_default_context(cafile=str(self.ca_bundle))
        return httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=verify)


def start_receiver(stack: Stack, name: str = "receiver", tls: ServerFiles | None = None) -> str:
    argv = [sys.executable, "-m", "bench.receiver", "--port", "0", "--sample-every", str(SAMPLE_EVERY)]
    if tls is not None:
        argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    proc = Process(argv, stack.workdir / f"{name}.log").start(stdout_pipe=True)
    stack.procs[name] = proc
    assert proc.popen is not None and proc.popen.stdout is not None
    return proc.popen.stdout.readline().decode().split()[-1]


def sub_path(index: int) -> str:
    return f"sub-{index}"


def import_id(round_name: str, number: int) -> str:
    return f"imp-{round_name}-{number}"


async def setup(
    stack: Stack, receiver: str, round_name: str, *, imports: int, bulks: int, subscriptions: int
) -> tuple[dict[str, str], list[str]]:
    """The imports in the simulator; subscriptions and watches through the API. Returns each
    subscription path's secret, and the subscriptions' ids."""
    async with SimulatorControl(stack.simulator_url) as control:
        await control.put_imports(
            [
                (
                    SLUG,
                    import_id(round_name, n),
                    [
                        {"id": b + 1, "status": "finished", "members_in_payload_number": MEMBERS_PER_BULK}
                        for b in range(bulks)
                    ],
                )
                for n in range(imports)
            ]
        )
    secrets: dict[str, str] = {}
    ids: list[str] = []
    async with api_client(stack) as api:
        for index in range(subscriptions):
            created = await api.post("/v1/subscriptions", json={"url": f"{receiver}/{sub_path(index)}"})
            created.raise_for_status()
            secrets[sub_path(index)] = created.json()["secret"]
            ids.append(created.json()["id"])
        for n in range(imports):
            watch = await api.post(
                "/v1/watches", json={"loyalty_club_slug": SLUG, "import_id": import_id(round_name, n)}
            )
            watch.raise_for_status()
    return secrets, ids


def api_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    )


async def unsubscribe(stack: Stack, ids: list[str]) -> None:
    """A round's subscriptions go before the next round: its events are not theirs."""
    async with api_client(stack) as api:
        for sid in ids:
            (await api.delete(f"/v1/subscriptions/{sid}")).raise_for_status()


async def produce(env: dict[str, str], expected: int) -> dict[str, Any]:
    """Run the worker's runtime here (poll loop only, no arq) until the outbox holds ``expected``
    entries; returns the backlog's size and one body per event."""
    settings = load_settings(env)
    configure_logging(settings.log_level, settings.log_format)
    redis = connect(settings.redis_url)
    runtime = wiring.build_runtime(settings, redis)
    started = time.monotonic()
    polling = asyncio.get_running_loop().create_task(runtime.poller.run())  # no delivery loop

    async def produced() -> bool:
        return await runtime.store.outbox_size() >= expected

    try:
        await poll_until(produced, PRODUCE_TIMEOUT_S)
    finally:
        await runtime.close()
        await asyncio.gather(polling, return_exceptions=True)
    seconds = time.monotonic() - started
    outbox = await redis.zrange(keys.OUTBOX, 0, -1)
    # The outbox is the delivery queue: every entry is due now (nothing has claimed it yet).
    queued = int(await redis.zcount(keys.OUTBOX, "-inf", int(time.time() * 1000)))
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
    stack: Stack, receiver: Receiver, env: dict[str, str], paths: list[str], per_path: int
) -> dict[str, Any]:
    """Start one worker; wait for every webhook; CPU over first → last webhook."""
    started = time.time()
    stack.start_worker(WORKER, env)
    meter = CpuMeter(
        {"worker": stack.pid(WORKER), "redis": stack.pid("redis"), "receiver": stack.pid(receiver.name)}
    )
    timeout = httpx.Timeout(DRAIN_TIMEOUT_S + SETTLE_TIMEOUT_S)
    async with receiver.client(timeout) as client:
        await client.get("/_wait", params={"path": paths[0], "count": 1, "timeout": DRAIN_TIMEOUT_S})
        meter.start()
        stats = {}
        for path in paths:
            answer = await client.get(
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


async def deliver_round(
    stack: Stack,
    receiver: Receiver,
    env: dict[str, str],
    round_name: str,
    *,
    imports: int,
    bulks: int,
    subscriptions: int,
) -> dict[str, Any]:
    """Steps 1 to 3 against ``receiver``: the backlog, one worker draining it, the checks."""
    secrets, ids = await setup(
        stack, receiver.url, round_name, imports=imports, bulks=bulks, subscriptions=subscriptions
    )
    events = imports * (bulks * EVENTS_PER_BULK + EVENTS_PER_IMPORT)
    expected = events * subscriptions
    backlog = await produce(env, expected)
    bodies: list[bytes] = backlog.pop("bodies")
    if backlog["outbox"] != expected or backlog["queued_jobs"] != expected:
        raise RuntimeError(f"backlog: expected {expected} deliveries, got {backlog}")
    paths = [sub_path(i) for i in range(subscriptions)]
    before = redis_command_counts(stack.redis_port)
    drained = await drain(stack, receiver, env, paths, events)
    left_in_outbox = await settle(stack)
    counted = redis_command_counts(stack.redis_port)
    counted.subtract(before)
    counted["info"] -= 1  # the reading above
    commands = counted.total()
    stack.procs.pop(WORKER).stop()
    await unsubscribe(stack, ids)
    stats = drained.pop("stats")
    sizes = [len(body) for body in bodies]
    return {
        "events": events,
        "deliveries": expected,
        "body_bytes": {"min": min(sizes), "mean": round(sum(sizes) / len(sizes)), "max": max(sizes)},
        "backlog": backlog,
        **drained,
        "redis_commands_per_delivery": round(commands / expected, 2),
        "redis_commands_by_name_per_delivery": {
            name: round(count / expected, 2)
            for name, count in counted.most_common()
            if count / expected >= COMMAND_SHOWN_MIN
        },
        "left_in_outbox": left_in_outbox,
        "duplicate_webhook_ids": {path: doc["count"] - doc["distinct_ids"] for path, doc in stats.items()},
        "missing_events": {path: events - doc["distinct_ids"] for path, doc in stats.items()},
        "signatures_checked": check_signatures(stats, secrets),
        "bodies": bodies,
    }


async def run(
    stack: Stack, *, imports: int, bulks: int, subscriptions: int, baseline_s: float
) -> dict[str, Any]:
    stack.start_redis()
    stack.start_simulator()
    plain = Receiver("receiver", start_receiver(stack))
    env = stack.bridge_env(BRIDGE_WORKER_MAX_JOBS=str(CONCURRENCY))
    stack.start_api(env)
    shape = {"imports": imports, "bulks": bulks, "subscriptions": subscriptions}
    result = await deliver_round(stack, plain, env, "http", **shape)
    bodies: list[bytes] = result.pop("bodies")
    assert all(b"\n" not in body for body in bodies)
    bodies_file = stack.workdir / "bodies.txt"
    bodies_file.write_bytes(b"\n".join(bodies))
    baselines = {
        "keep_alive": baseline(stack, plain.url, str(bodies_file), baseline_s, keep_alive=True),
        "new_connection": baseline(stack, plain.url, str(bodies_file), baseline_s, keep_alive=False),
    }
    ca = ThrowawayCa()
    bundle = ca.write_bundle(stack.workdir / "webhook-ca.pem")
    name = "receiver-https"
    tls = Receiver(name, start_receiver(stack, name, ca.issue(stack.workdir)), bundle)
    https = await deliver_round(stack, tls, env | {"BRIDGE_WEBHOOK_CA_BUNDLE": str(bundle)}, "https", **shape)
    https.pop("bodies")
    rate = result["deliveries_per_s"]
    return {
        "imports": imports,
        "bulks_per_import": bulks,
        "subscriptions": subscriptions,
        "concurrency": CONCURRENCY,
        **result,
        "baselines": baselines,
        "ratio_to_keep_alive": round(rate / baselines["keep_alive"]["requests_per_s"], 3),
        "ratio_to_new_connection": round(rate / baselines["new_connection"]["requests_per_s"], 3),
        "https": https,
    }
