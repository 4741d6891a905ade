"""Webhook delivery over real HTTP (our receiver on 127.0.0.1) with a real Redis.

Each test runs a delivery the way the delivery loop does (``Deliveries.run``); the retry schedule
is compressed through configuration. The loop itself (postponed retries) is in
``test_webhook_worker.py``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest
import standardwebhooks
import structlog
import svix.webhooks
from redis.asyncio import Redis

from bridge.delivery.model import SendResult
from bridge.delivery.service import RetryLater
from bridge.store import keys
from bridge.store.redis_store import resolved
from bridge.webhooks.actions import redeliver, send_test_event
from bridge.webhooks.guard import REFUSAL_MESSAGE
from bridge.webhooks.index import SubscriptionIndex
from bridge.webhooks.model import destination, event_delivery_id
from bridge.webhooks.sender import RESPONSE_BODY_MAX_BYTES
from bridge_tools.processes import free_port
from bridge_tools.tls import ThrowawayCa, server_context
from bridge_tools.webhook_receiver import Reply, WebhookReceiver
from tests.integration.webhooks_helpers import Webhooks, make_event

HOOK = "hooks/crm"
RECHECK_S = 0.3


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as running:
        yield running


@pytest.fixture
def webhooks(webhooks_factory: Callable[..., Webhooks]) -> Webhooks:
    return webhooks_factory()


def verify_with_reference_packages(secret: str, headers: dict[str, str], body: bytes) -> None:
    standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)
    svix.webhooks.Webhook(secret).verify(body, headers)


async def test_a_2xx_delivers_the_stored_body_byte_for_byte_signed_with_the_event_id(
    webhooks: Webhooks, receiver: WebhookReceiver, redis: Redis
) -> None:
    sid, secret = await webhooks.subscribe(receiver.url(HOOK))
    receiver.set_secrets(HOOK, [secret])
    event = make_event()
    body = await webhooks.record(event, destination(sid))
    result = await webhooks.run(event.id, destination(sid))
    assert result == SendResult.delivered()
    [got] = receiver.requests(HOOK)
    assert got.body == body
    assert got.webhook_id == event.id
    assert got.verified is True
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 5
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("mpc-import-bridge/")
    verify_with_reference_packages(secret, got.headers, got.body)
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.state == "delivered" and record.kind == "event"
    [attempt] = record.attempts
    assert (attempt.status_code, attempt.error, attempt.next_attempt_at) == (204, None, None)
    assert attempt.duration_ms >= 0
    assert await redis.zcard(keys.OUTBOX) == 0
    assert await webhooks.events.was_delivered(event.id, destination(sid))
    sub = await webhooks.store.get(sid)
    assert sub is not None and sub.last_success_at is not None and sub.failing_since is None


async def test_a_run_repeated_after_success_sends_nothing_again(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    event = make_event()
    assert await webhooks.deliver(event, sid) == SendResult.delivered()
    assert await webhooks.run(event.id, destination(sid)) == SendResult.delivered()
    assert len(receiver.requests(HOOK)) == 1


async def test_a_redirect_is_a_failure_and_is_not_followed(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=302, location=receiver.url("elsewhere"))])
    event = make_event()
    result = await webhooks.deliver(event, sid)
    assert isinstance(result, RetryLater)
    assert len(receiver.requests()) == 1  # nothing reached /elsewhere
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.state == "pending"
    [attempt] = record.attempts
    assert (attempt.status_code, attempt.error) == (302, "redirect")
    assert "/elsewhere" in attempt.detail


async def test_a_500_is_retried_on_the_schedule_with_the_same_id_and_body(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    webhooks = webhooks_factory(schedule_s=(0.2, 0.4), draw=0.5)
    sid, secret = await webhooks.subscribe(receiver.url(HOOK))
    receiver.set_secrets(HOOK, [secret])
    receiver.script(HOOK, [Reply(status=500, body="boom"), Reply(status=503)])
    event = make_event()
    first = await webhooks.deliver(event, sid)
    assert isinstance(first, RetryLater) and first.defer_s == pytest.approx(0.2)
    second = await webhooks.run(event.id, destination(sid))
    assert isinstance(second, RetryLater) and second.defer_s == pytest.approx(0.4)
    assert await webhooks.run(event.id, destination(sid)) == SendResult.delivered()
    got = receiver.requests(HOOK)
    assert [r.status for r in got] == [500, 503, 204]
    assert {r.webhook_id for r in got} == {event.id}
    assert len({r.body for r in got}) == 1
    assert all(r.verified for r in got)
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.state == "delivered"
    assert [(a.status_code, a.response_body) for a in record.attempts] == [
        (500, "boom"),
        (503, ""),
        (204, ""),
    ]
    first_attempt = record.attempts[0]
    assert first_attempt.next_attempt_at == pytest.approx(first_attempt.at + 0.2)
    assert record.attempts[-1].next_attempt_at is None


async def test_the_delivery_gives_up_when_the_schedule_is_used_up(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver, redis: Redis
) -> None:
    webhooks = webhooks_factory(schedule_s=(0.01,))
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=500), Reply(status=502)])
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    result = await webhooks.run(event.id, destination(sid))
    assert isinstance(result, SendResult) and result.outcome == "failed"
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.state == "failed" and "gave up after 2 attempts" in record.detail
    assert await redis.zcard(keys.OUTBOX) == 0
    sub = await webhooks.store.get(sid)
    assert sub is not None and sub.enabled  # a failed delivery alone does not disable


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured_within_the_schedules_bounds(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver, status: int
) -> None:
    webhooks = webhooks_factory(schedule_s=(1.0, 1.0), draw=0.5)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=status, retry_after="1"), Reply(status=status, retry_after="3600")])
    event = make_event()
    wished = await webhooks.deliver(event, sid)
    capped = await webhooks.run(event.id, destination(sid))
    assert isinstance(wished, RetryLater) and wished.defer_s == pytest.approx(1.0)
    assert isinstance(capped, RetryLater) and capped.defer_s == pytest.approx(2.0)  # 2 x scheduled
    receiver.script(HOOK, [Reply(status=429, retry_after="1.5")])  # not delta-seconds: ignored
    webhooks = webhooks_factory(schedule_s=(1.0,), draw=0.9)
    other = make_event()
    result = await webhooks.deliver(other, sid)
    assert isinstance(result, RetryLater) and result.defer_s == pytest.approx(1.16)


@pytest.mark.parametrize(
    "header",
    [
        "4" * 400,
        "Mon, 01 Jan 10000000000000000000 00:00:00 GMT",
        "nan",
        "-7",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ],
)
async def test_a_hostile_retry_after_is_bounded_and_the_attempt_is_saved(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver, header: str
) -> None:
    webhooks = webhooks_factory(schedule_s=(1.0, 1.0), draw=0.5)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=429, retry_after=header)])
    event = make_event()
    result = await webhooks.deliver(event, sid)
    assert isinstance(result, RetryLater) and 1.0 <= result.defer_s <= 2.0
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.state == "pending"
    assert [a.status_code for a in record.attempts] == [429] and record.next_attempt_at is not None


async def test_a_retry_after_on_a_500_is_not_honoured(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    webhooks = webhooks_factory(schedule_s=(1.0,), draw=0.5)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=500, retry_after="2")])
    result = await webhooks.deliver(make_event(), sid)
    assert isinstance(result, RetryLater) and result.defer_s == pytest.approx(1.0)


async def test_a_410_disables_the_subscription_and_its_pending_deliveries_stop(
    webhooks: Webhooks, receiver: WebhookReceiver, redis: Redis
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    index = SubscriptionIndex(webhooks.store, check_every_s=0)
    pending = make_event()
    receiver.script(HOOK, [Reply(status=500), Reply(status=410)])
    assert isinstance(await webhooks.deliver(pending, sid), RetryLater)
    assert await index.matching(pending) == [destination(sid)]
    gone = make_event()
    result = await webhooks.deliver(gone, sid)
    assert isinstance(result, SendResult) and result.outcome == "failed"
    sub = await webhooks.store.get(sid)
    assert sub is not None and not sub.enabled and sub.disabled_reason == "gone"
    assert await index.matching(make_event()) == []  # new events no longer go there
    later = await webhooks.run(pending.id, destination(sid))  # the pending retry gives up unsent
    assert isinstance(later, SendResult) and later.outcome == "failed"
    assert len(receiver.requests(HOOK)) == 2
    record = await webhooks.store.get_delivery(event_delivery_id(pending.id, sid))
    assert record is not None and record.state == "failed" and "disabled" in record.detail
    assert await redis.zcard(keys.OUTBOX) == 0


async def test_failing_continuously_for_the_configured_time_disables_the_subscription(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    webhooks = webhooks_factory(schedule_s=(0.01,) * 5, disable_after_s=0.3)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=500)] * 3)
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    sub = await webhooks.store.get(sid)
    assert sub is not None and sub.failing_since is not None and sub.enabled
    await asyncio.sleep(0.35)
    result = await webhooks.run(event.id, destination(sid))
    assert isinstance(result, SendResult) and result.outcome == "failed"
    sub = await webhooks.store.get(sid)
    assert sub is not None and not sub.enabled and sub.disabled_reason == "failing"


async def test_a_success_ends_the_failure_streak(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    webhooks = webhooks_factory(schedule_s=(0.01,) * 5, disable_after_s=0.3)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=500), Reply(status=200)])
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    assert await webhooks.run(event.id, destination(sid)) == SendResult.delivered()
    await asyncio.sleep(0.35)
    receiver.script(HOOK, [Reply(status=500)])
    assert isinstance(await webhooks.deliver(make_event(), sid), RetryLater)
    sub = await webhooks.store.get(sid)
    assert sub is not None and sub.enabled


async def test_no_answer_within_the_timeout_is_a_timeout(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    webhooks = webhooks_factory(timeout_s=0.3)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=200, delay_s=3)])
    event = make_event()
    started = time.monotonic()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    assert time.monotonic() - started < 2
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None
    [attempt] = record.attempts
    assert (attempt.status_code, attempt.error) == (None, "timeout")
    assert 250 <= attempt.duration_ms < 2000


async def test_a_receiver_closing_the_connection_is_a_failed_attempt_then_retried(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(close=True)])
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    assert await webhooks.run(event.id, destination(sid)) == SendResult.delivered()
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None
    closed, delivered = record.attempts
    assert (closed.status_code, closed.error) == (None, "connect")
    assert closed.next_attempt_at is not None
    assert (delivered.status_code, delivered.error) == (204, None)
    assert [r.webhook_id for r in receiver.requests(HOOK)] == [event.id, event.id]


async def test_a_closed_port_is_a_connect_error(webhooks: Webhooks) -> None:
    sid, _ = await webhooks.subscribe(f"http://127.0.0.1:{free_port()}/hook")
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.attempts[0].error == "connect"


async def test_the_attempt_log_keeps_at_most_4_kb_of_the_answer(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=500, body="é" * 20_000)])
    event = make_event()
    await webhooks.deliver(event, sid)
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None
    kept = record.attempts[0].response_body
    assert 0 < len(kept.encode()) <= RESPONSE_BODY_MAX_BYTES and set(kept) == {"é"}


async def test_an_address_refused_at_send_time_is_a_blocked_attempt_and_nothing_is_sent(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    creating = webhooks_factory()  # the allow-list held when the subscription was made
    sid, _ = await creating.subscribe(receiver.url(HOOK))
    sending = webhooks_factory(allow=())  # ... and no longer holds
    event = make_event()
    with structlog.testing.capture_logs() as logs:
        assert isinstance(await sending.deliver(event, sid), RetryLater)
    assert receiver.requests() == []
    record = await sending.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None
    [attempt] = record.attempts
    # The attempt log (API callers read it) says the one generic message; the worker's log says why.
    assert (attempt.error, attempt.detail, attempt.status_code) == ("blocked", REFUSAL_MESSAGE, None)
    [line] = [entry for entry in logs if entry["event"] == "webhook attempt failed, will retry"]
    assert "loopback" in line["refused"]


async def test_a_name_is_checked_then_pinned_and_checked_again_before_a_kept_connection_is_reused(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    answers = {"hooks.test": ["127.0.0.1"]}
    asked: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    webhooks = webhooks_factory(lookup=lookup, recheck_s=RECHECK_S)
    sid, _ = await webhooks.subscribe(f"http://hooks.test:{receiver.port}/{HOOK}")
    assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    [got] = receiver.requests(HOOK)
    assert got.headers["host"] == f"hooks.test:{receiver.port}"  # the original Host header
    assert asked == ["hooks.test"]
    # The name now points somewhere private (DNS rebinding). Within the recheck interval the
    # kept connection to the checked address carries the next delivery; nothing goes to 10.0.0.7.
    answers["hooks.test"] = ["10.0.0.7"]
    assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    first, second = receiver.requests(HOOK)
    assert second.peer == first.peer and asked == ["hooks.test"]
    # Past the interval the name is checked again before anything is sent: refused, unsent.
    await asyncio.sleep(RECHECK_S)
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    assert len(receiver.requests()) == 2 and asked == ["hooks.test", "hooks.test"]
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and record.attempts[0].error == "blocked"


async def test_deliveries_to_one_host_share_a_kept_alive_connection(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    for _ in range(5):
        assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    assert len({got.peer for got in receiver.requests(HOOK)}) == 1


async def test_each_host_name_has_connections_of_its_own_even_on_one_address(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    async def lookup(host: str, port: int) -> list[str]:
        return {"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}[host]

    webhooks = webhooks_factory(lookup=lookup)
    sid_a, _ = await webhooks.subscribe(f"http://a.test:{receiver.port}/{HOOK}")
    sid_b, _ = await webhooks.subscribe(f"http://b.test:{receiver.port}/{HOOK}")
    for sid in (sid_a, sid_b, sid_a, sid_b):
        assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    a1, b1, a2, b2 = receiver.requests(HOOK)
    assert (a1.peer == a2.peer, b1.peer == b2.peer, a1.peer == b1.peer) == (True, True, False)
    assert [got.headers["host"].split(":")[0] for got in (a1, b1, a2, b2)] == ["a.test", "b.test"] * 2


async def test_a_new_connection_on_a_cached_check_resolves_the_name_again(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver
) -> None:
    answers = {"hooks.test": ["127.0.0.1"]}
    asked: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[host]

    webhooks = webhooks_factory(lookup=lookup)
    sid, _ = await webhooks.subscribe(f"http://hooks.test:{receiver.port}/{HOOK}")
    assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    answers["hooks.test"] = ["10.0.0.7"]
    # Two at once: one takes the kept connection, the other needs a new one, which is checked.
    receiver.script(HOOK, [Reply(delay_s=0.3), Reply(delay_s=0.3)])
    results = await asyncio.gather(webhooks.deliver(make_event(), sid), webhooks.deliver(make_event(), sid))
    assert sorted(isinstance(result, RetryLater) for result in results) == [False, True]
    assert len(receiver.requests(HOOK)) == 2 and asked == ["hooks.test", "hooks.test"]


async def test_a_kept_connection_the_receiver_closes_is_one_failed_attempt_never_a_second_post(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(), Reply(close=True)])
    assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    assert await webhooks.run(event.id, destination(sid)) == SendResult.delivered()
    first, closed, again = receiver.requests(HOOK)
    assert closed.peer == first.peer != again.peer and closed.webhook_id == again.webhook_id == event.id
    record = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert record is not None and len(record.attempts) == 2  # one per request the receiver saw


async def test_an_answer_longer_than_what_is_kept_closes_its_connection(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=200, body="x" * 100), Reply(status=200, body="y" * 100_000)])
    for _ in range(3):
        assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    short, long, after = receiver.requests(HOOK)
    assert short.peer == long.peer != after.peer


async def test_tls_uses_the_original_host_name_for_sni_and_verification(
    webhooks_factory: Callable[..., Webhooks], tmp_path: Path
) -> None:
    ca = ThrowawayCa()
    server_names: list[str | None] = []
    serving = server_context(ca.issue(tmp_path, ("hooks.test",)))

    def sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        server_names.append(name)

    serving.sni_callback = sni
    trusting = ssl.create_default_context(cafile=str(ca.write_bundle(tmp_path / "ca.pem")))

    async def lookup(host: str, port: int) -> list[str]:
        return {"hooks.test": ["127.0.0.1"]}[host]

    async with WebhookReceiver(ssl_context=serving) as receiver:
        url = f"https://hooks.test:{receiver.port}/{HOOK}"
        webhooks = webhooks_factory(lookup=lookup, ssl_context=trusting)
        sid, _ = await webhooks.subscribe(url)
        assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
        assert server_names == ["hooks.test"]
        assert receiver.requests(HOOK)[0].headers["host"] == f"hooks.test:{receiver.port}"

        untrusting = webhooks_factory(lookup=lookup)  # the system's CAs: our certificate is unknown
        event = make_event()
        assert isinstance(await untrusting.deliver(event, sid), RetryLater)
        record = await untrusting.store.get_delivery(event_delivery_id(event.id, sid))
        assert record is not None and record.attempts[0].error == "tls"


async def test_after_rotation_both_secrets_sign_and_each_verifies(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, old = await webhooks.subscribe(receiver.url(HOOK))
    new = "whsec_" + "A" * 43 + "="
    until = await webhooks.store.rotate(sid, new, now=time.time())
    assert until == pytest.approx(time.time() + 86_400, abs=5)
    assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    [got] = receiver.requests(HOOK)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify_with_reference_packages(old, got.headers, got.body)
    verify_with_reference_packages(new, got.headers, got.body)


async def test_the_previous_secret_stops_signing_after_24_hours(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    await webhooks.store.rotate(sid, "whsec_" + "B" * 43 + "=", now=time.time() - 86_401)
    assert await webhooks.deliver(make_event(), sid) == SendResult.delivered()
    assert len(receiver.requests(HOOK)[0].headers["webhook-signature"].split(" ")) == 1


async def test_redeliver_sends_the_same_event_again_with_the_same_webhook_id(
    webhooks: Webhooks, receiver: WebhookReceiver, redis: Redis
) -> None:
    sid, secret = await webhooks.subscribe(receiver.url(HOOK))
    receiver.set_secrets(HOOK, [secret])
    event = make_event()
    assert await webhooks.deliver(event, sid) == SendResult.delivered()
    original = await webhooks.store.get_delivery(event_delivery_id(event.id, sid))
    assert original is not None
    dispatched: list[tuple[str, list[str]]] = []

    async def dispatch(eid: str, dests: Iterable[str]) -> int:
        dispatched.append((eid, list(dests)))
        return 1

    again = await redeliver(webhooks.store, webhooks.events, dispatch, original, time.time())
    [(eid, [dest])] = dispatched
    assert eid == event.id and dest == destination(sid, again.id)
    assert await redis.zscore(keys.OUTBOX, keys.outbox_entry(eid, dest)) is not None  # sweeper-safe
    assert await webhooks.run(eid, dest) == SendResult.delivered()
    first, second = receiver.requests(HOOK)
    assert first.webhook_id == second.webhook_id == event.id
    assert first.body == second.body and second.verified
    record = await webhooks.store.get_delivery(again.id)
    assert record is not None and record.state == "delivered"
    assert (record.kind, record.redelivery_of) == ("redelivery", original.id)
    assert await redis.zcard(keys.OUTBOX) == 0
    listed, _ = await webhooks.store.list_deliveries(sid, 0, 10)
    assert [d.id for d in listed] == [again.id, original.id]  # newest first


async def test_a_test_event_goes_even_to_a_disabled_subscription(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    sid, secret = await webhooks.subscribe(receiver.url(HOOK))
    receiver.set_secrets(HOOK, [secret])
    await webhooks.store.disable(sid, "api", time.time())
    sub = await webhooks.store.get(sid)
    assert sub is not None
    dests: list[str] = []

    async def dispatch(eid: str, given: Iterable[str]) -> int:
        dests.extend(given)
        return 1

    delivery = await send_test_event(webhooks.store, webhooks.events, dispatch, sub, time.time())
    assert await webhooks.run(delivery.event_id, dests[0]) == SendResult.delivered()
    [got] = receiver.requests(HOOK)
    payload = got.json()
    assert payload["type"] == "webhook.test" and payload["data"]["event_id"] == got.webhook_id
    assert got.verified
    # ... while an event for a disabled subscription is dropped unsent
    result = await webhooks.deliver(make_event(), sid)
    assert isinstance(result, SendResult) and result.outcome == "failed"
    assert len(receiver.requests()) == 1


async def test_a_deleted_subscription_drops_its_deliveries_and_logs(
    webhooks: Webhooks, receiver: WebhookReceiver, redis: Redis
) -> None:
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    event = make_event()
    receiver.script(HOOK, [Reply(status=500)])
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    assert await webhooks.store.delete(sid)
    result = await webhooks.run(event.id, destination(sid))
    assert isinstance(result, SendResult) and result.outcome == "failed"
    assert await redis.zcard(keys.OUTBOX) == 0
    assert await webhooks.store.get_delivery(event_delivery_id(event.id, sid)) is None
    assert [k async for k in redis.scan_iter(match=f"{keys.SUBSCRIPTION_PREFIX}{sid}*")] == []


async def test_no_secret_ever_reaches_the_logs(webhooks: Webhooks, receiver: WebhookReceiver) -> None:
    sid, secret = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=500), Reply(status=410)])
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            await webhooks.deliver(make_event(), sid)
    assert logs and secret not in repr(logs) and secret.removeprefix("whsec_") not in repr(logs)
    record = await resolved(webhooks.redis.hgetall(keys.subscription(sid)))
    assert secret.encode() not in b"".join(record.values())  # sealed at rest


async def test_routing_sees_a_new_subscription_at_once_and_caches_between_changes(
    webhooks: Webhooks,
) -> None:
    index = SubscriptionIndex(webhooks.store, check_every_s=0)
    event = make_event("bulk.failed")
    assert await index.matching(event) == []
    sid, _ = await webhooks.subscribe("https://hooks.example.com/all")
    club, _ = await webhooks.subscribe("https://hooks.example.com/club", loyalty_club_slug="other-mall")
    finished, _ = await webhooks.subscribe("https://hooks.example.com/f", event_types=("bulk.finished",))
    bulk, _ = await webhooks.subscribe("https://hooks.example.com/b", event_types=("bulk.*",))
    assert sorted(await index.matching(event)) == sorted([destination(sid), destination(bulk)])
    reloads = index.reloads
    for _ in range(5):
        await index.matching(event)
    assert index.reloads == reloads  # unchanged: no reload, one version read each
    await webhooks.store.disable(bulk, "api", time.time())
    assert await index.matching(event) == [destination(sid)]
    assert club and finished


async def test_a_delivery_waiting_for_its_retry_is_left_alone_by_the_sweeper_until_due(
    webhooks_factory: Callable[..., Webhooks], receiver: WebhookReceiver, redis: Redis
) -> None:
    webhooks = webhooks_factory(schedule_s=(3600.0,), draw=0.5)
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=500)])
    event = make_event()
    assert isinstance(await webhooks.deliver(event, sid), RetryLater)
    entry = keys.outbox_entry(event.id, destination(sid))
    score = await redis.zscore(keys.OUTBOX, entry)
    assert score is not None and score / 1000 == pytest.approx(time.time() + 3600, abs=5)
    assert await webhooks.events.outbox_older_than(time.time() + 60, 10) == []


async def test_a_job_cancelled_mid_send_records_the_send_so_its_next_run_sends_nothing(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    """A worker's drain ran out on SIGTERM while the receiver was answering: arq cancels the job
    and runs it again elsewhere. Before, the cancelled send was never recorded and went out twice."""
    sid, _ = await webhooks.subscribe(receiver.url(HOOK))
    receiver.script(HOOK, [Reply(status=204, delay_s=0.5)])
    event = make_event()
    await webhooks.record(event, destination(sid))
    job = asyncio.get_running_loop().create_task(webhooks.run(event.id, destination(sid)))
    await receiver.wait_for(1, HOOK)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert await webhooks.run(event.id, destination(sid)) == SendResult.delivered()
    assert len(receiver.requests(HOOK)) == 1
