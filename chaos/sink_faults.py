"""Scenario 5, sinks: webhook receivers and Slack misbehave while an import moves on.

Five subscriptions get every event: one healthy receiver, and receivers that first answer 500,
429 with ``Retry-After``, too slowly (past the webhook timeout, compressed by configuration) or
close the connection without an answer. The Slack stand-in answers ``chat.postMessage`` with 500s
and 429s and ``chat.update`` with 429s. The retry schedule is compressed by configuration.

Passes when, afterwards: every event reached every receiver with a valid signature and every
delivery is ``delivered``; each delivery's attempt log matches what its receiver really answered,
attempt by attempt (status or error class, a next attempt time on every failed attempt and none
after the success, and no retry earlier than that time); Slack got one reply per event under one
card whose final state shows every bulk's final status; after a 429 nothing was sent to that
channel before its ``Retry-After`` ran out; every message fit Slack's limits.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec
import redis

from bridge.store import keys
from bridge_tools import slack_standin
from bridge_tools.payload_contract import PayloadContract
from bridge_tools.slack_standin import RunningStandin
from bridge_tools.webhook_receiver import Received, Reply, WebhookReceiver
from chaos._faultstack import ApiClient, FaultStack, fault_stack, wait_for, write_log
from chaos.model import Outcome, RunContext, Size

NAME: Final = "sinks"
WORKERS_FULL: Final = 2
"""Worker processes at full size (the Redis-shared pauses, holds and card lock between them)."""
SEED: Final = 5
SLUG: Final = "snk-club"
CHANNEL: Final = "C0CHAOSSINK"
POLL_MIN_S: Final = 0.2
POLL_MAX_S: Final = 1.0
WEBHOOK_TIMEOUT_S: Final = 1.0
"""The 15 s a receiver has to answer, compressed: a receiver slower than this is a timeout."""
SLOW_S: Final = 2.0
RETRY_SCHEDULE_S: Final = (0.5, 1.0, 1.0, 2.0, 2.0, 3.0)
RETRY_AFTER: Final = "1"
SLACK_POST_INTERVAL_S: Final = 0.2
SLACK_RETRY_AFTER_S: Final = 1.0
HOLD_S: Final = 1.0
SETTLE_TIMEOUT_S: Final = 90.0
STAMP_S: Final = 0.002
"""API times are cut to the millisecond; a request can be logged a hair before the time it was due."""
HOLD_GRACE_S: Final = 0.1
"""A Slack call already on its way when the 429 was answered."""

SCRIPTS: Final[dict[str, list[Reply]]] = {
    "ok": [],
    "r500": [Reply(status=500, body="down"), Reply(status=500), Reply(status=503)],
    "r429": [Reply(status=429, retry_after=RETRY_AFTER), Reply(status=429, retry_after=RETRY_AFTER)],
    "slow": [Reply(status=204, delay_s=SLOW_S), Reply(status=204, delay_s=SLOW_S)],
    "close": [Reply(close=True), Reply(close=True), Reply(close=True)],
}
SLACK_FAULTS: Final[list[dict[str, Any]]] = [
    {"method": "chat.postMessage", "status": 500, "count": 1},
    {"method": "chat.update", "status": 429, "retry_after": SLACK_RETRY_AFTER_S, "count": 2},
    {"method": "chat.update", "status": 500, "count": 1},
    {"method": "chat.postMessage", "status": 429, "retry_after": SLACK_RETRY_AFTER_S, "count": 2},
    {"method": "chat.postMessage", "status": 503, "count": 1},
]
PLANS: Final[dict[int, list[tuple[str, dict[str, Any]]]]] = {
    7101: [("working", {}), ("finished", {"members_created_number": 10, "members_updated_number": 3})],
    7102: [
        ("working", {}),
        ("waiting_for_retry", {"retries": 1}),
        ("working", {}),
        ("finished", {"members_created_number": 4, "members_with_validation_errors_number": 1}),
    ],
    7103: [("working", {}), ("waiting_for_retry", {"retries": 5}), ("failed", {})],
}
FINAL: Final = {bulk_id: plan[-1][0] for bulk_id, plan in PLANS.items()}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class Sub:
    path: str
    sid: str = ""


def expected_attempt(reply: Reply) -> tuple[int | None, str | None]:
    """What the bridge should log for an answer: (status, error class)."""
    if reply.close:
        return None, "connect"
    if reply.delay_s >= WEBHOOK_TIMEOUT_S:
        return None, "timeout"
    return reply.status, None


def check_delivery(delivery: dict[str, Any], requests: list[tuple[Received, Reply]]) -> list[str]:
    """One delivery's attempt log against what its receiver got and answered."""
    problems: list[str] = []
    attempts = delivery["attempts"]
    did = delivery["id"]
    if len(attempts) != len(requests):
        return [f"{did}: {len(attempts)} attempts logged, {len(requests)} received"]
    for index, (attempt, (received, reply)) in enumerate(zip(attempts, requests, strict=True)):
        status, error = expected_attempt(reply)
        if (attempt["status_code"], attempt["error"]) != (status, error):
            problems.append(
                f"{did} #{index + 1}: logged {attempt['status_code']}/{attempt['error']}, "
                f"was {status}/{error}"
            )
        last = index == len(attempts) - 1
        if last:
            if attempt["next_attempt_at"] is not None:
                problems.append(f"{did} #{index + 1}: a next attempt after the last one")
            continue
        if attempt["next_attempt_at"] is None:
            problems.append(f"{did} #{index + 1}: failed without a next attempt time")
            continue
        due = epoch(attempt["next_attempt_at"])
        came = requests[index + 1][0].at
        if came + STAMP_S < due:
            problems.append(f"{did} #{index + 2}: came {due - came:.2f}s before its time")
        if reply.retry_after is not None and came - received.at + STAMP_S < min(
            float(reply.retry_after), 2 * RETRY_SCHEDULE_S[index] * 0.8
        ):
            problems.append(f"{did} #{index + 2}: Retry-After not honoured")
    if delivery["state"] != "delivered" or delivery["next_attempt_at"] is not None:
        problems.append(f"{did}: state {delivery['state']}, next {delivery['next_attempt_at']}")
    return problems


def slack_hold_violations(standin: RunningStandin) -> tuple[int, list[str]]:
    """Calls to a channel made while a 429's ``Retry-After`` for it ran."""
    calls = [c for c in standin.slack.calls if c.method in ("chat.postMessage", "chat.update")]
    limited = [c for c in calls if c.http_status == 429]
    bad: list[str] = []
    for hit in limited:
        channel = hit.payload.get("channel")
        for call in calls:
            if (
                call.payload.get("channel") == channel
                and hit.at + HOLD_GRACE_S < call.at < hit.at + SLACK_RETRY_AFTER_S
            ):
                bad.append(f"#{call.seq} {call.method} {call.at - hit.at:.2f}s after the 429 of #{hit.seq}")
    return len(limited), bad


async def run(ctx: RunContext, size: Size) -> Outcome:
    outcome = Outcome(NAME)
    received: list[Received] = []
    contract = PayloadContract()

    def on_receive(item: Received) -> None:
        ctx.record_event(item.body)
        contract.observe(item.headers, item.body)
        received.append(item)

    receiver = WebhookReceiver(on_receive=on_receive)
    await receiver.start()
    standin = await slack_standin.start(token="xoxb-chaos-" + secrets.token_hex(12))
    # Not one of the run's known secrets, but one all the same: searched for everywhere too.
    ctx.subscription_secrets.append(standin.slack.token)
    try:
        async with fault_stack(ctx, NAME) as running:
            await scenario(ctx, size, running, receiver, standin, received, outcome)
    finally:
        for call in standin.slack.calls:
            ctx.record_event(json.dumps(call.payload).encode())
        await standin.stop()
        await receiver.stop()
    failure = contract.failure()
    outcome.check("every payload matches its published schema", failure is None, failure or "")
    return outcome


async def drive(running: FaultStack, rounds: int) -> None:
    control = running.control
    assert control is not None

    async def one(
        import_id: str, bulk_id: int, steps: list[tuple[str, dict[str, Any]]], start_s: float
    ) -> None:
        await asyncio.sleep(start_s)
        for status, fields in steps:
            await control.patch_bulk(SLUG, import_id, bulk_id, status=status, **fields)
            await asyncio.sleep(HOLD_S)

    await asyncio.gather(
        *(
            one(f"imp-sinks-{r}", b + 10 * r, p, 0.3 * i + r)
            for r in range(rounds)
            for i, (b, p) in enumerate(PLANS.items())
        )
    )


async def scenario(
    ctx: RunContext,
    size: Size,
    running: FaultStack,
    receiver: WebhookReceiver,
    standin: RunningStandin,
    received: list[Received],
    outcome: Outcome,
) -> None:
    stack = running.stack
    stack.start_redis()
    control = running.start_simulator(SEED)
    env = running.env(
        BRIDGE_POLL_MIN_INTERVAL_S=str(POLL_MIN_S),
        BRIDGE_POLL_MAX_INTERVAL_S=str(POLL_MAX_S),
        BRIDGE_WEBHOOK_TIMEOUT_S=str(WEBHOOK_TIMEOUT_S),
        BRIDGE_WEBHOOK_RETRY_SCHEDULE_S=",".join(str(s) for s in RETRY_SCHEDULE_S),
        BRIDGE_SLACK_BOT_TOKEN=standin.slack.token,
        BRIDGE_SLACK_API_URL=standin.api_url,
        BRIDGE_SLACK_POST_INTERVAL_S=str(SLACK_POST_INTERVAL_S),
    )
    api = running.start_api(env)
    for n in range(1 if size.short else WORKERS_FULL):
        stack.start_worker(f"worker-{n}", env)
    rounds = 1 if size.short else 3
    await control.set_club_token(SLUG, ctx.secrets.club_token)  # MPC accepts only the club's own
    await api.put_club_token(SLUG, ctx.secrets.club_token)
    subs = [Sub(path) for path in SCRIPTS]
    for sub in subs:
        sub.sid = await api.subscribe(receiver.url(sub.path))
        receiver.set_secrets(sub.path, [api.secret_of(sub.sid)])
        receiver.script(sub.path, list(SCRIPTS[sub.path]))
    for fault in SLACK_FAULTS:
        standin.slack.inject(**fault)
    watch_ids = []
    for r in range(rounds):
        import_id = f"imp-sinks-{r}"
        await control.put_import(SLUG, import_id, bulks=[{"id": b + 10 * r} for b in PLANS])
        body = {"loyalty_club_slug": SLUG, "import_id": import_id, "slack": {"channel": f"{CHANNEL}{r}"}}
        watch_ids.append((await api.create_watch(body))["id"])
    await drive(running, rounds)

    timelines = {wid: await api.timeline(wid) for wid in watch_ids}

    async def done() -> bool:
        states = [(await api.watch(wid))["state"] for wid in watch_ids]
        for wid in watch_ids:
            timelines[wid] = await api.timeline(wid)
        events = {e["event_id"] for t in timelines.values() for e in t}
        ok = {(r.path, r.webhook_id) for r in received if r.verified and 200 <= r.status < 300}
        hooks = all((sub.path, eid) in ok for sub in subs for eid in events)
        replies = sum(len(standin.slack.replies(c)) for c in standin.slack.cards())
        return all(s != "active" for s in states) and hooks and replies >= len(events)

    settled = await wait_for(done, SETTLE_TIMEOUT_S, 0.5)
    await asyncio.sleep(SLACK_RETRY_AFTER_S)  # a card update still on its way
    events = {e["event_id"]: e for t in timelines.values() for e in t}
    outcome.figures.update(
        {
            "watches": len(watch_ids),
            "events": len(events),
            "webhook requests": len(received),
            "slack calls": len(standin.slack.calls),
        }
    )
    outcome.check("every event delivered to every receiver", settled, "" if settled else "timed out")
    problems = await check_webhooks(api, subs, received, events)
    outcome.figures["attempts checked"] = sum(1 for r in received if r.path != "ok")
    outcome.check("attempt logs match the receivers", not problems, "; ".join(problems[:4]))
    unsigned = [r.seq for r in received if not r.verified]
    outcome.check("every webhook signed", not unsigned, f"{len(unsigned)} unverified" if unsigned else "")
    slack_problems = check_slack(standin, timelines)
    outcome.check(
        "slack: one card per watch, final state, one reply per event",
        not slack_problems,
        "; ".join(slack_problems[:4]),
    )
    outcome.figures["thread reply order inversions"] = reply_inversions(stack.redis_port, timelines)
    limited, held = slack_hold_violations(standin)
    outcome.figures["slack 429s"] = limited
    outcome.check("slack: Retry-After holds the channel", not held, "; ".join(held[:3]))
    invalid = standin.slack.problems()
    outcome.check("slack: every message within limits", not invalid, "; ".join(invalid[:3]))
    write_log(running.workdir / "findings.log", [*problems, *slack_problems, *held, *invalid])


async def check_webhooks(
    api: ApiClient, subs: list[Sub], received: list[Received], events: dict[str, Any]
) -> list[str]:
    problems: list[str] = []
    for sub in subs:
        script = SCRIPTS[sub.path]
        on_path = sorted((r for r in received if r.path == sub.path), key=lambda r: r.seq)
        by_event: dict[str, list[tuple[Received, Reply]]] = defaultdict(list)
        for index, item in enumerate(on_path):
            by_event[item.webhook_id or ""].append((item, script[index] if index < len(script) else Reply()))
        deliveries = await api.deliveries(sub.sid)
        found = {d["event_id"]: d for d in deliveries if d["kind"] == "event"}
        missing = set(events) - set(found)
        if missing:
            problems.append(f"{sub.path}: {len(missing)} events without a delivery")
        for event_id, delivery in found.items():
            problems += [f"{sub.path} {p}" for p in check_delivery(delivery, by_event[event_id])]
    return problems


def reply_inversions(port: int, timelines: dict[str, list[dict[str, Any]]]) -> int:
    """Replies posted before the reply of an event that came earlier in the same timeline (the
    ``ts`` each event's reply got is in Redis; the stand-in's ``ts`` grow with every post)."""
    client: Any = redis.Redis(host="127.0.0.1", port=port)
    try:
        inversions = 0
        for events in timelines.values():
            posted = [client.get(keys.slack_reply(e["event_id"])) for e in events]
            order = [int(ts.split(b".")[1]) for ts in posted if ts is not None]
            inversions += sum(1 for i, a in enumerate(order) for b in order[i + 1 :] if b < a)
        return inversions
    finally:
        client.close()


def check_slack(standin: RunningStandin, timelines: dict[str, list[dict[str, Any]]]) -> list[str]:
    problems: list[str] = []
    for r, (_wid, events) in enumerate(timelines.items()):
        cards = standin.slack.cards(f"{CHANNEL}{r}")
        if len(cards) != 1:
            problems.append(f"{CHANNEL}{r}: {len(cards)} cards")
            continue
        card = cards[0]
        shown = json.dumps(msgspec.to_builtins(card.blocks), ensure_ascii=False) + card.text
        for bulk_id, status in FINAL.items():
            if f"Bulk {bulk_id + 10 * r}* · {status}" not in shown:
                problems.append(f"{CHANNEL}{r}: the card does not show bulk {bulk_id + 10 * r} {status}")
        replies = standin.slack.replies(card)
        if len(replies) != len(events):
            problems.append(f"{CHANNEL}{r}: {len(replies)} replies for {len(events)} events")
    if standin.slack.orphans():
        problems.append(f"{len(standin.slack.orphans())} replies outside a thread")
    return problems
